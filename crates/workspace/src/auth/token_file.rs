//! Rotation of the API token by its file: when `--api-token-file` changes
//! on disk (an admin rewrote it, or the kubelet refreshed a mounted
//! Secret), the server takes the new token at once and ends every browser
//! session, as `POST /api/token` does. No restart, no polling: inotify on
//! the file's directory (Secret mounts swap a `..data` symlink, so the
//! file itself is never modified in place).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Auth;

/// Keep the returned watcher alive for as long as rotation should work.
pub fn watch(path: &Path, auth: Arc<Auth>) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let path: PathBuf = path.to_path_buf();
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Coalesce a burst of events (write, rename, symlink swap).
            while rx.try_recv().is_ok() {}
            reload(&path, &auth).await;
        }
    });
    Ok(watcher)
}

async fn reload(path: &Path, auth: &Auth) {
    let _rotation = auth.rotation().await;
    let Ok(text) = tokio::fs::read_to_string(path).await else {
        return; // Mid-swap or removed: the next event brings the new file.
    };
    let token = text.trim();
    if token.len() < 16 {
        tracing::warn!(path = %path.display(), "ignoring an API token file shorter than 16 characters");
        return;
    }
    if auth.token_is(token) {
        return;
    }
    auth.replace_token(token);
    if let Err(e) = auth.store().delete_all_sessions().await {
        tracing::error!(error = %e, "could not end browser sessions after a token rotation");
    }
    tracing::info!(path = %path.display(), "API token rotated from its file");
}
