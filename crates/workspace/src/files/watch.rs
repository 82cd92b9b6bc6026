//! Live change notices for directories of the home that someone is viewing.
//!
//! `GET /api/files/watch?path=DIR` holds a [`Subscription`]: the Files view
//! learns that an agent (or anything else) changed the directory it shows,
//! not only changes made through the file API.
//!
//! Confinement: the directory is opened through the confined root, and
//! inotify watches that open descriptor through `/proc/self/fd/N` rather
//! than a path, so a directory swapped for a symlink between the check and
//! the watch cannot point the watch outside the home. The descriptor is
//! closed right after (an open one would keep a deleted directory's inode
//! alive and hide its deletion). inotify gives one watch per inode, shared
//! by every viewer and removed with the last one: a directory nobody looks
//! at costs nothing, however busy it is.
//!
//! The `inotify` crate directly rather than `notify`: we need the watch
//! descriptor of each event, which `notify` turns back into a path (and a
//! `/proc/self/fd/N` path does not stay unique once the descriptor closes).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, Weak};

use cap_std::fs::Dir;
use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What a viewer of one directory is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirState {
    /// Bumped on every change inside the directory.
    pub changes: u64,
    /// The directory itself was deleted or moved away.
    pub gone: bool,
}

/// Changes that alter a listing (names, sizes, times, modes); not opens or reads.
const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MODIFY)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

pub struct DirWatches {
    shared: Arc<Shared>,
}

struct Shared {
    /// The inotify instance, made with the first subscription. Its lock is
    /// held across add/remove and the table update, so a watch being
    /// removed is never joined at the same moment.
    watches: Mutex<Option<Watches>>,
    table: Mutex<HashMap<i32, Watched>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Read-only mode: dot-entries do not exist, so their changes are not news.
    hide_dot: bool,
    shutdown: CancellationToken,
}

struct Watched {
    /// Tells a subscription apart from a later watch that got the same number.
    id: u64,
    wd: WatchDescriptor,
    tx: watch::Sender<DirState>,
    viewers: usize,
}

/// One viewer's hold on a directory watch; dropping it lets the watch go.
pub struct Subscription {
    pub changes: watch::Receiver<DirState>,
    wd: i32,
    id: u64,
    shared: Weak<Shared>,
}

impl DirWatches {
    /// The reader of inotify events ends with `shutdown`.
    pub fn new(hide_dot: bool, shutdown: CancellationToken) -> Self {
        Self {
            shared: Arc::new(Shared {
                watches: Mutex::new(None),
                table: Mutex::new(HashMap::new()),
                next_id: 0.into(),
                hide_dot,
                shutdown,
            }),
        }
    }

    /// Watch `dir` (opened beneath the home) until the subscription is
    /// dropped. Needs a Tokio runtime (the first call starts the reader).
    pub fn subscribe(&self, dir: Dir) -> std::io::Result<Subscription> {
        let shared = &self.shared;
        let mut guard = lock(&shared.watches);
        let watches = match guard.as_mut() {
            Some(watches) => watches,
            None => {
                let inotify = Inotify::init()?;
                let handle = inotify.watches();
                let events = inotify.into_event_stream([0u8; 4096])?;
                tokio::spawn(read_events(
                    events,
                    Arc::downgrade(shared),
                    shared.shutdown.clone(),
                ));
                guard.insert(handle)
            }
        };
        let wd = watches.add(format!("/proc/self/fd/{}", dir.as_raw_fd()), MASK)?;
        drop(dir);
        let key = wd.get_watch_descriptor_id();
        let mut table = lock(&shared.table);
        let w = table.entry(key).or_insert_with(|| Watched {
            id: shared
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            wd,
            tx: watch::channel(DirState {
                changes: 0,
                gone: false,
            })
            .0,
            viewers: 0,
        });
        w.viewers += 1;
        Ok(Subscription {
            changes: w.tx.subscribe(),
            wd: key,
            id: w.id,
            shared: Arc::downgrade(shared),
        })
    }

    /// Directories watched now.
    pub fn watched(&self) -> usize {
        lock(&self.shared.table).len()
    }
}

async fn read_events(
    mut events: inotify::EventStream<[u8; 4096]>,
    shared: Weak<Shared>,
    shutdown: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = shutdown.cancelled() => return,
        };
        let Some(Ok(ev)) = ev else { return };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.on_event(&ev);
    }
}

impl Shared {
    fn on_event(&self, ev: &inotify::Event<std::ffi::OsString>) {
        let mut table = lock(&self.table);
        // The kernel dropped events: every directory may have changed.
        if ev.mask.contains(EventMask::Q_OVERFLOW) {
            for w in table.values() {
                w.tx.send_modify(|s| s.changes += 1);
            }
            return;
        }
        let key = ev.wd.get_watch_descriptor_id();
        if ev.mask.contains(EventMask::IGNORED) {
            // The kernel ended this watch (directory deleted): forget it,
            // so a new directory that gets the number gets a new entry.
            table.remove(&key);
            return;
        }
        let Some(w) = table.get(&key) else { return };
        let hidden = ev
            .name
            .as_deref()
            .is_some_and(|n: &OsStr| n.as_encoded_bytes().first() == Some(&b'.'));
        if self.hide_dot && hidden {
            return;
        }
        let gone = ev
            .mask
            .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF);
        w.tx.send_modify(|s| {
            s.changes += 1;
            s.gone |= gone;
        });
    }

    fn release(&self, key: i32, id: u64) {
        let mut guard = lock(&self.watches);
        let ended = {
            let mut table = lock(&self.table);
            match table.get_mut(&key) {
                Some(w) if w.id == id => {
                    w.viewers -= 1;
                    if w.viewers == 0 {
                        table.remove(&key)
                    } else {
                        None
                    }
                }
                _ => None,
            }
        };
        if let (Some(w), Some(watches)) = (ended, guard.as_mut()) {
            // Fails harmlessly when the kernel already ended the watch.
            let _ = watches.remove(w.wd);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.release(self.wd, self.id);
        }
    }
}

/// A poisoned lock only means a panic elsewhere; the table stays usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn open(path: &Path) -> Dir {
        Dir::open_ambient_dir(path, cap_std::ambient_authority()).expect("open dir")
    }

    async fn next_change(sub: &mut Subscription) -> DirState {
        tokio::time::timeout(Duration::from_secs(5), sub.changes.changed())
            .await
            .expect("a change within 5 s")
            .expect("watch alive");
        *sub.changes.borrow_and_update()
    }

    #[tokio::test]
    async fn a_file_written_by_anyone_is_a_change_and_viewers_share_a_watch() {
        let home = tempfile::tempdir().expect("tempdir");
        let watches = DirWatches::new(false, CancellationToken::new());
        let mut a = watches.subscribe(open(home.path())).expect("subscribe");
        let mut b = watches.subscribe(open(home.path())).expect("subscribe");
        assert_eq!(watches.watched(), 1, "one watch per directory");

        std::fs::write(home.path().join("notes.txt"), b"hi").expect("write");
        assert!(next_change(&mut a).await.changes > 0);
        assert!(next_change(&mut b).await.changes > 0);

        drop(a);
        assert_eq!(watches.watched(), 1, "b still views it");
        drop(b);
        assert_eq!(watches.watched(), 0, "the last viewer ends the watch");
    }

    #[tokio::test]
    async fn reading_the_directory_is_not_a_change() {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::write(home.path().join("a"), b"1").expect("write");
        let watches = DirWatches::new(false, CancellationToken::new());
        let mut sub = watches.subscribe(open(home.path())).expect("subscribe");
        for _ in 0..3 {
            let _ = std::fs::read_dir(home.path()).expect("list").count();
            let _ = std::fs::read(home.path().join("a")).expect("read");
        }
        let quiet = tokio::time::timeout(Duration::from_millis(300), sub.changes.changed()).await;
        assert!(
            quiet.is_err(),
            "listing and reading must not count as changes"
        );
    }

    #[tokio::test]
    async fn a_deleted_directory_is_gone_and_a_new_one_gets_its_own_watch() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("d");
        std::fs::create_dir(&dir).expect("mkdir");
        let watches = DirWatches::new(false, CancellationToken::new());
        let mut sub = watches.subscribe(open(&dir)).expect("subscribe");
        std::fs::remove_dir(&dir).expect("rmdir");
        let mut state = next_change(&mut sub).await;
        while !state.gone {
            state = next_change(&mut sub).await;
        }

        std::fs::create_dir(&dir).expect("mkdir again");
        let mut again = watches.subscribe(open(&dir)).expect("subscribe");
        std::fs::write(dir.join("x"), b"").expect("write");
        assert!(!next_change(&mut again).await.gone);
    }

    #[tokio::test]
    async fn read_only_mode_ignores_dot_entries() {
        let home = tempfile::tempdir().expect("tempdir");
        let watches = DirWatches::new(true, CancellationToken::new());
        let mut sub = watches.subscribe(open(home.path())).expect("subscribe");
        std::fs::write(home.path().join(".secret"), b"x").expect("write");
        let quiet = tokio::time::timeout(Duration::from_millis(300), sub.changes.changed()).await;
        assert!(quiet.is_err(), "a hidden entry's change is not shown");
        std::fs::write(home.path().join("visible"), b"x").expect("write");
        assert!(next_change(&mut sub).await.changes > 0);
    }
}
