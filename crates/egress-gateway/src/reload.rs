//! The allow list follows its file: the operator keeps it in a ConfigMap
//! mounted into the gateway, and a change to the Workspace's list reaches
//! the running gateway without a restart. inotify on the file's directory
//! (ConfigMap volumes swap a `..data` link), content changes only, as for
//! the workspace's token file; a list that does not parse is logged and
//! the one in force stays.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchMask};
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

/// Replace the gateway's list whenever `path` changes, until `shutdown`.
pub fn watch(
    path: &Path,
    gw: Arc<Gateway>,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_default();
    let watch_err = |source| GatewayError::Watch {
        path: dir.clone(),
        source,
    };
    let inotify = Inotify::init().map_err(watch_err)?;
    inotify.watches().add(&dir, MASK).map_err(watch_err)?;
    let mut events = inotify.into_event_stream([0u8; 1024]).map_err(watch_err)?;
    let path: PathBuf = path.to_path_buf();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                _ = shutdown.cancelled() => return,
            };
            let Some(Ok(event)) = event else { return };
            let ours = event.name.as_deref().is_some_and(|n| {
                n == name.as_os_str()
                    || (n == VOLUME_DATA && event.mask.contains(EventMask::MOVED_TO))
            });
            if !ours {
                continue;
            }
            match load(&path) {
                Ok(list) => {
                    tracing::info!(entries = list.len(), path = %path.display(), "egress allow list reloaded");
                    gw.replace_list(list);
                }
                Err(e) => tracing::warn!(error = %e, "keeping the egress allow list in force"),
            }
        }
    });
    Ok(())
}
