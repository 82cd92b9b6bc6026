//! Rotation of the API token by its file: when `--api-token-file` changes
//! on disk (an admin rewrote it, or the kubelet refreshed a mounted
//! Secret), the server takes the new token at once and ends every browser
//! session, as `POST /api/token` does. No restart, no polling.
//!
//! inotify on the file's directory (Secret mounts swap a `..data` symlink,
//! so the file itself is never modified in place), with a mask of content
//! changes only: a finished write, a rename into place, a new link. Opens
//! and reads are not in it, nor is anything about other files of the
//! directory (the data dir also holds the database): an earlier version
//! listened to every event, so its own read of the file caused the next
//! read, and an idle server spent most of a core re-reading its token.
//!
//! The `inotify` crate directly rather than `notify`, which always asks for
//! open and access events.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchMask};

use super::Auth;

/// A Secret volume's current version is the `..data` link, replaced by a
/// rename on every update.
const SECRET_VOLUME_DATA: &str = "..data";

/// What counts as a change of the token: a write finished, something
/// renamed into place, a new file or link made.
const MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CREATE)
    .union(WatchMask::ONLYDIR);

/// Rotation runs while this is held; dropping it stops the watch.
pub struct TokenFileWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenFileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watch `path` and rotate the token whenever its content changes.
/// Needs a Tokio runtime.
pub fn watch(path: &Path, auth: Arc<Auth>) -> std::io::Result<TokenFileWatch> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().map(OsStr::to_os_string).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the API token file path has no file name",
        )
    })?;
    let inotify = Inotify::init()?;
    inotify.watches().add(dir, MASK)?;
    let mut events = inotify.into_event_stream([0u8; 1024])?;
    let path: PathBuf = path.to_path_buf();
    let task = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let Ok(event) = event else { break };
            let ours = event.name.as_deref().is_some_and(|n| {
                n == name.as_os_str()
                    || (n == SECRET_VOLUME_DATA && event.mask.contains(EventMask::MOVED_TO))
            });
            if ours {
                reload(&path, &auth).await;
            }
        }
    });
    Ok(TokenFileWatch { task })
}

async fn reload(path: &Path, auth: &Auth) {
    let _rotation = auth.rotation().await;
    let Ok(text) = tokio::fs::read_to_string(path).await else {
        return; // Mid-swap or removed: the next event brings the new file.
    };
    let token = text.trim();
    if token.is_empty() {
        return; // Just created; its write's end is the next event.
    }
    if token.len() < 16 {
        tracing::warn!(path = %path.display(), "ignoring an API token file shorter than 16 characters");
        return;
    }
    if auth.token_is(token) {
        return;
    }
    // Sessions first: no request may find the old token refused and an old
    // session still good (logins wait for the rotation lock).
    if let Err(e) = auth.store().delete_all_sessions().await {
        tracing::error!(error = %e, "could not end browser sessions after a token rotation");
    }
    auth.replace_token(token);
    tracing::info!(path = %path.display(), "API token rotated from its file");
}
