//! The file API's operations, confined to the workspace home.
//!
//! **Only this module opens user paths**, and only through one
//! `cap_std::fs::Dir` opened on the home at start: every path resolves
//! beneath it (openat2 `RESOLVE_BENEATH` where the kernel has it, manual
//! no-follow resolution otherwise), so no spelling, symlink or race leads
//! outside. Writes are atomic: a temp file in the target directory, fsync,
//! rename. The HTTP handlers live in `http/routes/files.rs`.

mod batch_writer;
mod buffer_pool;
pub mod download;
pub mod upload;
pub mod user_path;
pub mod watch;
pub mod zip_extract;

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use cap_std::fs::{Dir, MetadataExt, OpenOptionsExt};
use serde::Serialize;

use crate::error::ApiError;
pub use user_path::UserPath;

#[derive(Debug, Clone)]
pub struct FileLimits {
    /// Largest upload body (413 above it).
    pub upload_bytes: u64,
    /// Entries returned by one listing.
    pub list_entries: usize,
    pub zip_entries: usize,
    /// Total uncompressed bytes one archive may expand to.
    pub zip_bytes: u64,
    /// Largest uncompressed/compressed ratio of an entry or the whole archive.
    pub zip_ratio: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            upload_bytes: 10 * 1024 * 1024 * 1024,
            list_entries: 10_000,
            zip_entries: 10_000,
            zip_bytes: 1024 * 1024 * 1024,
            zip_ratio: 100,
        }
    }
}

#[derive(Clone)]
pub struct Files {
    root: Arc<Dir>,
    /// The home's real path (links resolved), to tell where an opened file
    /// really is; only read-only mode asks.
    real_home: Arc<std::path::PathBuf>,
    read_only: bool,
    pub limits: FileLimits,
}

#[derive(Debug, Serialize)]
pub struct Entry {
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: &'static str,
    pub size: u64,
    pub mtime: String,
    /// Permission bits in octal, e.g. `0644`.
    pub mode: String,
}

#[derive(Debug, Serialize)]
pub struct Listing {
    pub path: String,
    pub entries: Vec<Entry>,
    /// More entries exist than the listing limit returned.
    pub truncated: bool,
}

/// Map an I/O error on `path` to a client answer.
pub fn io_error(path: &UserPath, e: io::Error) -> ApiError {
    let p = path.display();
    match e.kind() {
        io::ErrorKind::NotFound => ApiError::not_found(format!("`{p}` does not exist")),
        io::ErrorKind::PermissionDenied => ApiError::forbidden(
            "forbidden_path",
            format!("`{p}` is outside the workspace home or not accessible"),
        ),
        io::ErrorKind::AlreadyExists => {
            ApiError::conflict("exists", format!("`{p}` already exists"))
        }
        io::ErrorKind::NotADirectory => ApiError::bad_request(
            "not_a_directory",
            format!("a part of `{p}` is not a directory"),
        ),
        io::ErrorKind::IsADirectory => {
            ApiError::bad_request("is_a_directory", format!("`{p}` is a directory"))
        }
        io::ErrorKind::DirectoryNotEmpty => ApiError::conflict(
            "dir_not_empty",
            format!("`{p}` is a directory that is not empty; pass recursive=true to delete it"),
        ),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => {
            ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                format!("no space left to write `{p}`"),
            )
        }
        io::ErrorKind::InvalidFilename => {
            ApiError::bad_request("invalid_path", format!("`{p}` is not a valid name"))
        }
        _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            ApiError::forbidden(
                "forbidden_path",
                format!("`{p}` is outside the workspace home or not accessible"),
            )
        }
        _ => ApiError::internal("a file operation failed", e),
    }
}

/// Refuse a special file (pipe, socket, device): reading one blocks or
/// never ends, and none is something to download, unpack or replace.
pub fn require_regular(path: &UserPath, meta: &cap_std::fs::Metadata) -> Result<(), ApiError> {
    use cap_std::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_file() || ft.is_dir() {
        return Ok(());
    }
    let what = if ft.is_fifo() {
        "a named pipe"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "a special file"
    };
    Err(ApiError::bad_request(
        "special_file",
        format!(
            "`{}` is {what}; only regular files and directories can be used here",
            path.display()
        ),
    ))
}

fn kind_of(ft: cap_std::fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    }
}

fn rfc3339_secs(secs: i64, nanos: i64) -> String {
    crate::clock::rfc3339(secs * 1000 + nanos / 1_000_000)
}

/// Run blocking file work off the async runtime.
pub async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("a file operation failed", e))?
}

impl Files {
    pub fn open(home: &Path, read_only: bool, limits: FileLimits) -> io::Result<Self> {
        let root = Dir::open_ambient_dir(home, cap_std::ambient_authority())?;
        let real_home = std::fs::canonicalize(home)?;
        Ok(Self {
            root: Arc::new(root),
            real_home: Arc::new(real_home),
            read_only,
            limits,
        })
    }

    pub fn root(&self) -> &Dir {
        &self.root
    }

    /// Parse a client path; in read-only mode dot-paths do not exist.
    pub fn path(&self, raw: &str) -> Result<UserPath, ApiError> {
        let p = UserPath::parse(raw)?;
        if self.read_only && p.is_hidden() {
            return Err(io_error(&p, io::ErrorKind::NotFound.into()));
        }
        Ok(p)
    }

    /// In read-only mode, a file or directory opened through links must
    /// not really be a hidden one (`key -> .ssh/id_rsa`, `cfg -> .git`):
    /// decided on where the open descriptor really is, every component
    /// below the home, not on the spelling asked for.
    fn refuse_hidden_target(&self, path: &UserPath, opened: &impl AsRawFd) -> Result<(), ApiError> {
        if !self.read_only {
            return Ok(());
        }
        let real = std::fs::read_link(format!("/proc/self/fd/{}", opened.as_raw_fd()))
            .map_err(|e| ApiError::internal("could not tell where an opened file is", e))?;
        let hidden = match real.strip_prefix(self.real_home.as_path()) {
            Ok(rel) => rel
                .components()
                .any(|c| c.as_os_str().as_encoded_bytes().starts_with(b".")),
            // Opened beneath the root, so this cannot happen; refuse anyway.
            Err(_) => true,
        };
        if hidden {
            return Err(io_error(path, io::ErrorKind::NotFound.into()));
        }
        Ok(())
    }

    /// Open the directory that holds `path`'s final component.
    pub fn parent_of<'a>(
        &self,
        path: &'a UserPath,
    ) -> Result<(Dir, &'a std::ffi::OsStr), ApiError> {
        let (parent, name) = path.split().ok_or_else(|| {
            ApiError::bad_request("is_root", "this operation needs a path below the home root")
        })?;
        let dir = self.root.open_dir(parent).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ApiError::not_found(format!(
                    "the directory of `{}` does not exist",
                    path.display()
                ))
            } else {
                io_error(path, e)
            }
        })?;
        Ok((dir, name))
    }

    /// Open a regular file beneath the home for reading. Never blocks: the
    /// open is non-blocking (a named pipe with no writer would otherwise
    /// hold a thread of the blocking pool forever), and anything that is
    /// not a regular file is refused before a byte is read.
    pub fn open_regular(
        &self,
        path: &UserPath,
    ) -> Result<(cap_std::fs::File, cap_std::fs::Metadata), ApiError> {
        if path.is_root() {
            return Err(io_error(path, io::ErrorKind::IsADirectory.into()));
        }
        // A socket cannot be opened at all (ENXIO): say what it is instead.
        if let Ok(meta) = self.root.metadata(path.as_path()) {
            if !meta.is_dir() {
                require_regular(path, &meta)?;
            }
        }
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
        let file = self
            .root
            .open_with(path.as_path(), &opts)
            .map_err(|e| io_error(path, e))?;
        self.refuse_hidden_target(path, &file)?;
        let meta = file.metadata().map_err(|e| io_error(path, e))?;
        if meta.is_dir() {
            return Err(io_error(path, io::ErrorKind::IsADirectory.into()));
        }
        require_regular(path, &meta)?;
        Ok((file, meta))
    }

    /// Open a directory beneath the home (the root included).
    pub fn open_dir(&self, path: &UserPath) -> Result<Dir, ApiError> {
        let opened = if path.is_root() {
            self.root.try_clone()
        } else {
            self.root.open_dir(path.as_path())
        };
        let dir = opened.map_err(|e| {
            let is_file = self
                .root
                .symlink_metadata(path.as_path())
                .is_ok_and(|m| m.is_file());
            if is_file {
                ApiError::bad_request(
                    "not_a_directory",
                    format!("`{}` is a file, not a directory", path.display()),
                )
            } else {
                io_error(path, e)
            }
        })?;
        self.refuse_hidden_target(path, &dir)?;
        Ok(dir)
    }

    pub fn list(&self, path: &UserPath) -> Result<Listing, ApiError> {
        let read = self
            .open_dir(path)?
            .entries()
            .map_err(|e| io_error(path, e))?;
        let mut entries = Vec::new();
        let mut truncated = false;
        for entry in read {
            let entry = entry.map_err(|e| io_error(path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.read_only && name.starts_with('.') {
                continue;
            }
            if entries.len() == self.limits.list_entries {
                truncated = true;
                break;
            }
            // The entry itself, not what a symlink points at.
            let Ok(meta) = entry.metadata() else { continue };
            entries.push(Entry {
                name,
                kind: kind_of(meta.file_type()),
                size: meta.len(),
                mtime: rfc3339_secs(meta.mtime(), meta.mtime_nsec()),
                mode: format!("{:04o}", meta.mode() & 0o7777),
            });
        }
        entries.sort_by(|a, b| {
            (a.kind != "dir")
                .cmp(&(b.kind != "dir"))
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(Listing {
            path: path.display(),
            entries,
            truncated,
        })
    }

    pub fn mkdir(&self, path: &UserPath, parents: bool) -> Result<(), ApiError> {
        if path.is_root() {
            return Err(io_error(path, io::ErrorKind::AlreadyExists.into()));
        }
        let r = if parents {
            self.root.create_dir_all(path.as_path())
        } else {
            self.root.create_dir(path.as_path())
        };
        r.map_err(|e| io_error(path, e))
    }

    /// Move `from` to `to`; refuses to replace `to` unless `overwrite`.
    pub fn rename(&self, from: &UserPath, to: &UserPath, overwrite: bool) -> Result<(), ApiError> {
        let (from_dir, from_name) = self.parent_of(from)?;
        let (to_dir, to_name) = self.parent_of(to)?;
        let flags = if overwrite {
            rustix::fs::RenameFlags::empty()
        } else {
            rustix::fs::RenameFlags::NOREPLACE
        };
        // Both names are single components inside directories opened
        // beneath the root, so the rename cannot reach outside it.
        rustix::fs::renameat_with(&from_dir, from_name, &to_dir, to_name, flags).map_err(|e| {
            let e = io::Error::from(e);
            if e.kind() == io::ErrorKind::AlreadyExists {
                io_error(to, e)
            } else {
                io_error(from, e)
            }
        })?;
        sync_dir(&to_dir);
        Ok(())
    }

    pub fn delete(&self, path: &UserPath, recursive: bool) -> Result<(), ApiError> {
        if path.is_root() {
            return Err(ApiError::bad_request(
                "is_root",
                "refusing to delete the workspace home itself",
            ));
        }
        let (dir, name) = self.parent_of(path)?;
        let meta = dir.symlink_metadata(name).map_err(|e| io_error(path, e))?;
        let r = if meta.is_dir() {
            if recursive {
                dir.remove_dir_all(name)
            } else {
                dir.remove_dir(name)
            }
        } else {
            // A symlink is removed itself, never what it points at.
            dir.remove_file(name)
        };
        r.map_err(|e| io_error(path, e))?;
        sync_dir(&dir);
        Ok(())
    }
}

/// Make a rename or unlink in `dir` durable.
pub fn sync_dir(dir: &Dir) {
    if let Ok(d) = dir.open(".") {
        let _ = d.sync_all();
    }
}
