//! A root filesystem as one reproducible tar layer.
//!
//! The same tree gives the same bytes whatever the disk's order or times:
//! entries are written in byte order of their paths, every time is the
//! build's epoch, owners are numeric only, and a file with several names is
//! stored once with hard links for the others. Device nodes, sockets and
//! FIFOs are left out: the container runtime provides `/dev`.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::PackError;

/// What went into a layer, for the build's summary line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Device nodes, sockets and FIFOs that were left out.
    pub skipped: u64,
    pub bytes: u64,
}

/// Writes `root` as a tar stream into `out`, every time set to `epoch`;
/// gives the writer back to be finished.
pub fn write_layer<W: Write>(
    root: &Path,
    epoch: u64,
    out: W,
) -> Result<(LayerStats, W), PackError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut walk = Walk {
        builder: &mut builder,
        epoch,
        seen: HashMap::new(),
        stats: LayerStats::default(),
    };
    walk.dir(root, Path::new(""))?;
    let stats = walk.stats;
    let out = builder
        .into_inner()
        .map_err(|e| PackError::io("finishing the layer", e))?;
    Ok((stats, out))
}

struct Walk<'a, W: Write> {
    builder: &'a mut tar::Builder<W>,
    epoch: u64,
    /// (device, inode) of files with several links → the first path written.
    seen: HashMap<(u64, u64), PathBuf>,
    stats: LayerStats,
}

impl<W: Write> Walk<'_, W> {
    fn dir(&mut self, dir: &Path, rel: &Path) -> Result<(), PackError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(|e| PackError::io(dir.display().to_string(), e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| PackError::io(dir.display().to_string(), e))?;
        // Byte order of names: the same on every machine and locale.
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            let path = dir.join(&name);
            let rel = rel.join(&name);
            self.entry(&path, &rel)?;
        }
        Ok(())
    }

    fn header(&self, meta: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid().into());
        h.set_gid(meta.gid().into());
        h.set_mtime(self.epoch);
        h.set_size(0);
        h
    }

    fn entry(&mut self, path: &Path, rel: &Path) -> Result<(), PackError> {
        let io_err = |e| PackError::io(path.display().to_string(), e);
        let meta = fs::symlink_metadata(path).map_err(io_err)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut h = self.header(&meta, tar::EntryType::Directory);
            self.builder
                .append_data(&mut h, rel, io::empty())
                .map_err(io_err)?;
            self.stats.dirs += 1;
            return self.dir(path, rel);
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err)?;
            let mut h = self.header(&meta, tar::EntryType::Symlink);
            self.builder
                .append_link(&mut h, rel, &target)
                .map_err(io_err)?;
            self.stats.symlinks += 1;
            return Ok(());
        }
        if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
            self.stats.skipped += 1;
            return Ok(());
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.seen.get(&key) {
                let first = first.clone();
                let mut h = self.header(&meta, tar::EntryType::Link);
                self.builder
                    .append_link(&mut h, rel, &first)
                    .map_err(io_err)?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.seen.insert(key, rel.to_path_buf());
        }
        let mut h = self.header(&meta, tar::EntryType::Regular);
        h.set_size(meta.len());
        let file = fs::File::open(path).map_err(io_err)?;
        self.builder
            .append_data(&mut h, rel, file)
            .map_err(io_err)?;
        self.stats.files += 1;
        self.stats.bytes += meta.len();
        Ok(())
    }
}
