//! File-system notifications for live tasks' directories (inotify).
//!
//! Output arriving in a task's log and the exit record appearing are pushed
//! to the task manager as they happen; nothing polls the log. Only live
//! tasks' directories are watched, so the number of watches stays small
//! however long the history grows.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::output_log;

pub const EXIT_FILE: &str = "exit_code";

/// What happened in a task directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirEvent {
    Output(String),
    Exited(String),
}

pub struct DirWatcher {
    // notify's watcher is not Sync; the lock only guards watch/unwatch calls.
    inner: Mutex<notify::RecommendedWatcher>,
}

impl DirWatcher {
    /// Events for `<tasks_dir>/<id>/…` arrive on the returned channel.
    pub fn new(tasks_dir: PathBuf) -> notify::Result<(Self, mpsc::UnboundedReceiver<DirEvent>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if matches!(ev.kind, EventKind::Access(_)) {
                return;
            }
            for path in &ev.paths {
                if let Some(e) = classify(&tasks_dir, path) {
                    let _ = tx.send(e);
                }
            }
        })?;
        Ok((
            Self {
                inner: Mutex::new(watcher),
            },
            rx,
        ))
    }

    pub fn watch(&self, dir: &Path) -> notify::Result<()> {
        match self.inner.lock() {
            Ok(mut w) => w.watch(dir, RecursiveMode::NonRecursive),
            Err(_) => Err(notify::Error::generic("watcher lock poisoned")),
        }
    }

    pub fn unwatch(&self, dir: &Path) {
        if let Ok(mut w) = self.inner.lock() {
            let _ = w.unwatch(dir);
        }
    }
}

fn classify(tasks_dir: &Path, path: &Path) -> Option<DirEvent> {
    let rel = path.strip_prefix(tasks_dir).ok()?;
    let mut parts = rel.components();
    let id = parts.next()?.as_os_str().to_str()?.to_string();
    let file = parts.next()?.as_os_str().to_str()?;
    match file {
        output_log::LOG | output_log::OLD_LOG | output_log::OFFSET => Some(DirEvent::Output(id)),
        EXIT_FILE => Some(DirEvent::Exited(id)),
        _ => None,
    }
}
