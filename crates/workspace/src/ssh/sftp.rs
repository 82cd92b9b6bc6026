//! The `sftp` subsystem, so `sftp` and `scp` (which speaks SFTP since
//! OpenSSH 9) work: file operations as the workspace's user, relative
//! paths from the home. russh-sftp speaks the protocol; this answers it
//! with the file system.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// What a handle stands for.
enum Open {
    File(tokio::fs::File),
    /// A directory's entries, sent once.
    Dir(Option<Vec<File>>),
}

pub struct Sftp {
    home: PathBuf,
    open: HashMap<String, Open>,
    next: u64,
}

impl Sftp {
    pub fn new(home: PathBuf) -> Sftp {
        Sftp {
            home,
            open: HashMap::new(),
            next: 0,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        if p.is_empty() {
            self.home.clone()
        } else {
            self.home.join(p)
        }
    }

    fn handle(&mut self, open: Open) -> String {
        self.next += 1;
        let h = self.next.to_string();
        self.open.insert(h.clone(), open);
        h
    }

    fn file(&mut self, handle: &str) -> Result<&mut tokio::fs::File, StatusCode> {
        match self.open.get_mut(handle) {
            Some(Open::File(f)) => Ok(f),
            _ => Err(StatusCode::Failure),
        }
    }
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

fn status(e: std::io::Error) -> StatusCode {
    match e.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        std::io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    }
}

async fn set_attrs(path: &Path, attrs: &FileAttributes) -> Result<(), StatusCode> {
    if let Some(mode) = attrs.permissions {
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
            .await
            .map_err(status)?;
    }
    if let Some(size) = attrs.size {
        let f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .await
            .map_err(status)?;
        f.set_len(size).await.map_err(status)?;
    }
    Ok(())
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusCode;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let p = self.path(&path);
        let real = tokio::fs::canonicalize(&p).await.unwrap_or(p);
        Ok(Name {
            id,
            files: vec![File::dummy(real.to_string_lossy())],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let meta = tokio::fs::metadata(self.path(&path))
            .await
            .map_err(status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let meta = tokio::fs::symlink_metadata(self.path(&path))
            .await
            .map_err(status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let meta = self.file(&handle)?.metadata().await.map_err(status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let mut o = tokio::fs::OpenOptions::new();
        o.read(pflags.contains(OpenFlags::READ))
            .write(pflags.contains(OpenFlags::WRITE))
            .append(pflags.contains(OpenFlags::APPEND))
            .truncate(pflags.contains(OpenFlags::TRUNCATE));
        if pflags.contains(OpenFlags::EXCLUDE) {
            o.create_new(true);
        } else if pflags.contains(OpenFlags::CREATE) {
            o.create(true);
        }
        o.mode(attrs.permissions.map(|m| m & 0o7777).unwrap_or(0o644));
        let f = o.open(self.path(&filename)).await.map_err(status)?;
        let handle = self.handle(Open::File(f));
        Ok(Handle { id, handle })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let f = self.file(&handle)?;
        f.seek(SeekFrom::Start(offset)).await.map_err(status)?;
        let mut data = vec![0u8; len.min(256 << 10) as usize];
        let n = f.read(&mut data).await.map_err(status)?;
        if n == 0 {
            return Err(StatusCode::Eof);
        }
        data.truncate(n);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let f = self.file(&handle)?;
        f.seek(SeekFrom::Start(offset)).await.map_err(status)?;
        f.write_all(&data).await.map_err(status)?;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        if let Some(Open::File(mut f)) = self.open.remove(&handle) {
            f.flush().await.map_err(status)?;
        }
        Ok(ok(id))
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        set_attrs(&self.path(&path), &attrs).await?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let f = self.file(&handle)?;
        if let Some(mode) = attrs.permissions {
            f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
                .await
                .map_err(status)?;
        }
        if let Some(size) = attrs.size {
            f.set_len(size).await.map_err(status)?;
        }
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let mut dir = tokio::fs::read_dir(self.path(&path))
            .await
            .map_err(status)?;
        let mut files = Vec::new();
        while let Some(entry) = dir.next_entry().await.map_err(status)? {
            let attrs = match entry.metadata().await {
                Ok(m) => FileAttributes::from(&m),
                Err(_) => FileAttributes::default(),
            };
            files.push(File::new(entry.file_name().to_string_lossy(), attrs));
        }
        let handle = self.handle(Open::Dir(Some(files)));
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.open.get_mut(&handle) {
            Some(Open::Dir(files)) => match files.take() {
                Some(files) if !files.is_empty() => Ok(Name { id, files }),
                _ => Err(StatusCode::Eof),
            },
            _ => Err(StatusCode::Failure),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        tokio::fs::remove_file(self.path(&filename))
            .await
            .map_err(status)?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let p = self.path(&path);
        tokio::fs::create_dir(&p).await.map_err(status)?;
        if let Some(mode) = attrs.permissions {
            let _ = tokio::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))
                .await;
        }
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        tokio::fs::remove_dir(self.path(&path))
            .await
            .map_err(status)?;
        Ok(ok(id))
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        tokio::fs::rename(self.path(&oldpath), self.path(&newpath))
            .await
            .map_err(status)?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let target = tokio::fs::read_link(self.path(&path))
            .await
            .map_err(status)?;
        Ok(Name {
            id,
            files: vec![File::dummy(target.to_string_lossy())],
        })
    }

    async fn symlink(
        &mut self,
        id: u32,
        linkpath: String,
        targetpath: String,
    ) -> Result<Status, Self::Error> {
        tokio::fs::symlink(targetpath, self.path(&linkpath))
            .await
            .map_err(status)?;
        Ok(ok(id))
    }
}
