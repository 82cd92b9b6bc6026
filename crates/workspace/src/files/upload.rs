//! Streaming, atomic uploads.
//!
//! The body goes to a fresh temp file (`create_new`, never following a
//! link) in the target's own directory, chunk by chunk as it arrives
//! (through [`BatchWriter`], which keeps the disk busy meanwhile); only
//! a complete body under the cap is fsynced and renamed over the target.
//! The rename replaces whatever is at the name, a symlink included, without
//! following it. A disconnect, an oversize body or a full disk leaves the
//! old file untouched, and the [`TempGuard`] removes the temp file even if
//! the request future is dropped midway.
//!
//! A conditional upload (`If-Match: <ETag>`, `If-None-Match: *`) is checked
//! against the target when the upload starts and again just before the
//! rename, so an editor's save cannot silently overwrite a change made on
//! disk after it read the file.

use std::ffi::OsString;

use axum::body::Body;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use futures_util::StreamExt;

use super::batch_writer::BatchWriter;
use super::{io_error, sync_dir, Files, UserPath};
use crate::error::ApiError;
use crate::secrets::generate_id;

/// Removes the temp file unless the upload was committed.
struct TempGuard {
    dir: Option<Dir>,
    name: OsString,
}

impl TempGuard {
    fn dir(&self) -> Option<&Dir> {
        self.dir.as_ref()
    }

    fn commit(mut self) -> Option<Dir> {
        self.dir.take()
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = dir.remove_file(&self.name);
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Uploaded {
    pub path: String,
    pub size: u64,
    /// The new file's ETag (the next conditional save sends it).
    pub etag: Option<String>,
}

/// What the client expects to find at the target.
#[derive(Debug, Clone, Default)]
pub enum Precondition {
    #[default]
    Any,
    /// `If-Match`: one of these ETags (or `*`: any existing file).
    Matches(Vec<String>),
    /// `If-None-Match: *`: no file there yet.
    Absent,
}

impl Precondition {
    /// From the request's `If-Match` / `If-None-Match` headers.
    pub fn from_headers(if_match: Option<&str>, if_none_match: Option<&str>) -> Self {
        if let Some(m) = if_match {
            return Self::Matches(m.split(',').map(|t| t.trim().to_string()).collect());
        }
        if if_none_match.is_some_and(|v| v.trim() == "*") {
            return Self::Absent;
        }
        Self::Any
    }

    fn check(&self, dir: &Dir, name: &std::path::Path, p: &UserPath) -> Result<(), ApiError> {
        let current = dir
            .metadata(name)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| super::download::etag_of(&m));
        let ok = match (self, &current) {
            (Self::Any, _) => true,
            (Self::Absent, c) => c.is_none(),
            (Self::Matches(tags), Some(c)) => tags.iter().any(|t| t == "*" || t == c),
            (Self::Matches(_), None) => false,
        };
        if ok {
            return Ok(());
        }
        let why = match (self, current) {
            (Self::Absent, _) => format!("`{}` exists already", p.display()),
            (_, Some(now)) => format!(
                "`{}` changed since it was read (its ETag is now {now}); reload it, or save without If-Match to overwrite",
                p.display()
            ),
            (_, None) => format!("`{}` no longer exists", p.display()),
        };
        Err(ApiError::new(
            axum::http::StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            why,
        ))
    }
}

pub async fn upload(
    files: &Files,
    path: UserPath,
    declared_len: Option<u64>,
    expect: Precondition,
    body: Body,
) -> Result<Uploaded, ApiError> {
    let cap = files.limits.upload_bytes;
    let too_big = || {
        ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            format!("uploads are limited to {cap} bytes (--max-upload-bytes)"),
        )
    };
    if declared_len.is_some_and(|n| n > cap) {
        return Err(too_big());
    }
    // Open the parent and create the temp file beside the target.
    let f = files.clone();
    let p = path.clone();
    let first = expect.clone();
    let (guard, file) = super::blocking(move || {
        let (dir, name) = f.parent_of(&p)?;
        first.check(&dir, std::path::Path::new(&name), &p)?;
        if let Ok(m) = dir.symlink_metadata(name) {
            if m.is_dir() {
                return Err(ApiError::conflict(
                    "is_a_directory",
                    format!("`{}` is a directory", p.display()),
                ));
            }
            // A link is replaced itself (see above); a pipe or device is not
            // something an upload should silently take the place of.
            if !m.is_symlink() {
                super::require_regular(&p, &m)?;
            }
        }
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(format!(".kc-upload-{}", generate_id()));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true).mode(0o644);
        let file = dir.open_with(&tmp, &opts).map_err(|e| io_error(&p, e))?;
        Ok((
            TempGuard {
                dir: Some(dir),
                name: tmp,
            },
            file.into_std(),
        ))
    })
    .await?;
    let mut out = BatchWriter::new(file);
    let mut written: u64 = 0;
    // A write failure (full disk) is answered after the body has been read
    // to its end (within the cap), so the client sees the answer instead of
    // a reset connection.
    let mut failed: Option<ApiError> = None;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "upload_interrupted",
                format!("the upload body ended early: {e}"),
            )
        })?;
        written += chunk.len() as u64;
        if written > cap {
            return Err(too_big());
        }
        if failed.is_none() {
            if let Err(e) = out.push(&chunk).await {
                failed = Some(io_error(&path, e));
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if declared_len.is_some_and(|n| n != written) {
        return Err(ApiError::bad_request(
            "upload_interrupted",
            "the upload body is shorter than its Content-Length",
        ));
    }
    out.finish().await.map_err(|e| io_error(&path, e))?;
    let p = path.clone();
    let etag = super::blocking(move || {
        let (_, name) = p
            .split()
            .ok_or_else(|| ApiError::bad_request("is_root", "cannot upload onto the home root"))?;
        let dir = guard
            .dir()
            .ok_or_else(|| ApiError::internal("upload state lost", "no dir"))?;
        expect.check(dir, std::path::Path::new(name), &p)?;
        dir.rename(&guard.name, dir, name)
            .map_err(|e| io_error(&p, e))?;
        let etag = dir
            .metadata(name)
            .ok()
            .map(|m| super::download::etag_of(&m));
        if let Some(dir) = guard.commit() {
            sync_dir(&dir);
        }
        Ok(etag)
    })
    .await?;
    Ok(Uploaded {
        path: path.display(),
        size: written,
        etag,
    })
}
