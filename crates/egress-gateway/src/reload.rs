//! The allow list follows its file: the operator keeps it in a ConfigMap
//! mounted into the gateway, and a change to the Workspace's list reaches
//! the running gateway without a restart. inotify on the file's directory
//! (ConfigMap volumes swap a `..data` link), content changes only, as for
//! the workspace's token file; a list that does not parse is logged and
//! the one in force stays. The model settings and keys follow theirs the
//! same way.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};
use tokio_util::sync::CancellationToken;

use crate::allow_list::AllowList;
use crate::{Gateway, GatewayError};

const VOLUME_DATA: &str = "..data";

const MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CREATE)
    .union(WatchMask::ONLYDIR);

/// Reads and parses the list at `path`.
pub fn load(path: &Path) -> Result<AllowList, GatewayError> {
    let text = std::fs::read_to_string(path).map_err(|e| GatewayError::ReadList {
        path: path.to_path_buf(),
        source: e,
    })?;
    AllowList::parse(&text).map_err(|e| GatewayError::BadList {
        path: path.to_path_buf(),
        source: e,
    })
}

/// The directory holding `path` (`.` for a bare file name).
pub fn dir_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Calls `changed` after each change to a file in `dirs` (a file written,
/// created or moved in, which is how a volume's `..data` link swaps),
/// until `shutdown`. Whoever reloads decides what changed for it.
pub fn watch<F>(
    dirs: &[PathBuf],
    shutdown: CancellationToken,
    changed: F,
) -> Result<(), GatewayError>
where
    F: Fn(&OsStr) + Send + 'static,
{
    let inotify = Inotify::init().map_err(|source| GatewayError::Watch {
        path: dirs.first().cloned().unwrap_or_default(),
        source,
    })?;
    for dir in dirs {
        inotify
            .watches()
            .add(dir, MASK)
            .map_err(|source| GatewayError::Watch {
                path: dir.clone(),
                source,
            })?;
    }
    let mut events =
        inotify
            .into_event_stream([0u8; 1024])
            .map_err(|source| GatewayError::Watch {
                path: dirs.first().cloned().unwrap_or_default(),
                source,
            })?;
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                _ = shutdown.cancelled() => return,
            };
            let Some(Ok(event)) = event else { return };
            if let Some(name) = event.name.as_deref() {
                changed(name);
            }
        }
    });
    Ok(())
}

/// Whether a change to `changed` in its directory may have changed `path`.
pub fn touches(path: &Path, changed: &OsStr) -> bool {
    path.file_name() == Some(changed) || changed == VOLUME_DATA
}

/// Replace the gateway's list whenever `path` changes, until `shutdown`.
pub fn watch_list(
    path: &Path,
    gw: Arc<Gateway>,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let path = path.to_path_buf();
    watch(&[dir_of(&path)], shutdown, move |changed| {
        if !touches(&path, changed) {
            return;
        }
        match load(&path) {
            Ok(list) => {
                tracing::info!(entries = list.len(), path = %path.display(), "egress allow list reloaded");
                gw.replace_list(list);
            }
            Err(e) => tracing::warn!(error = %e, "keeping the egress allow list in force"),
        }
    })
}
