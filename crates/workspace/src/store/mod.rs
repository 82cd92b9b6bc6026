//! SQLite state: tasks and their transitions, browser sessions, the hook
//! outbox, webhooks, schedules and image builds; one file per concern
//! (`tasks.rs`, `sessions.rs`, `outbox.rs`, `webhooks.rs`, `schedules.rs`,
//! `builds.rs`), each with
//! its rows, columns and queries; the schema and its migrations in
//! `schema.rs`.
//!
//! One connection in WAL mode with `synchronous=FULL`, behind a mutex and
//! used from blocking threads, so async handlers never block the runtime;
//! read-only connections beside it for queries. Every state change is one
//! transaction with its transition row, and final states are terminal: the
//! `UPDATE … WHERE state IN (live)` guard makes a kill racing an exit
//! resolve to exactly one outcome. Secret columns are sealed on write and
//! opened on read (`crate::secret_box`); the files are the owner's only.

/// An enum stored as TEXT and shown as the same word on the wire: one
/// definition gives the variants, their words, parsing, serde and SQLite.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The words, for error messages: `a`, `b` or `c`.
            pub fn words() -> String {
                let words: Vec<String> = Self::ALL.iter().map(|v| format!("`{}`", v.as_str())).collect();
                match words.split_last() {
                    Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                    _ => words.join(""),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                $name::parse(s).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} `{s}`", stringify!($name)).into(),
                    )
                })
            }
        }
    };
}

mod builds;
mod outbox;
mod schedules;
mod schema;
mod sessions;
mod tasks;
mod webhooks;

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use crate::secret_box::SecretBox;

pub use builds::{BuildEnd, BuildRecord, BuildState};
pub use outbox::{AfterAttempt, Attempt, Delivery, DeliveryState};
pub use schedules::{Firing, FiringOutcome, MissedPolicy, Schedule};
pub use tasks::{
    CompletionPayload, Moved, NewTask, TaskFilter, TaskRecord, TaskRemoval, Transition,
    TransitionInfo,
};
pub use webhooks::{Receipt, ReceiptOutcome, Webhook};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database worker stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the database lock was poisoned by a panic")]
    Poisoned,
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Sealed(#[from] crate::secret_box::SealError),
    #[error("cannot restrict the database file to its owner: {0}")]
    Mode(std::io::Error),
    /// Names of schedules and of webhooks are unique within their kind.
    #[error("the name `{0}` is taken")]
    NameTaken(String),
}

/// Within a transaction: is `name` free in `table` for the row `id`?
/// (Not a UNIQUE index: databases from before the rule may hold twins.)
pub(super) fn name_free(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    id: &str,
    name: &str,
) -> Result<(), StoreError> {
    let taken: bool = tx.query_row(
        &format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE name = ?1 AND id != ?2)"),
        rusqlite::params![name, id],
        |r| r.get(0),
    )?;
    if taken {
        return Err(StoreError::NameTaken(name.to_string()));
    }
    Ok(())
}

#[derive(Clone)]
pub struct Store {
    // One writer connection: SQLite serialises writers anyway, and one
    // connection keeps transactions simple.
    conn: Arc<Mutex<Connection>>,
    // Read-only connections: in WAL mode readers never wait for the writer,
    // so listing tasks does not queue behind state changes or each other.
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<AtomicUsize>,
    /// Seals hook and webhook secrets before they are written, opens them
    /// when read (see `secret_box`).
    secrets: Arc<SecretBox>,
}

const READERS: usize = 4;

/// When a write's commit returns.
#[derive(Debug, Clone, Copy)]
enum Durability {
    /// Once it is on disk (`synchronous=FULL`): the default.
    Synced,
    /// Once it is in the write-ahead log (`synchronous=NORMAL`): it
    /// survives a crash of this process, and reaches the disk with the next
    /// synced commit or checkpoint; a power loss may take it back.
    Relaxed,
}

impl Store {
    pub fn open(path: &Path, secrets: SecretBox) -> Result<Self, StoreError> {
        // Made 0600 before SQLite opens it (its -wal and -shm files take
        // the database file's mode); an existing one is restricted again.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(StoreError::Mode)?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&conn)?;
        schema::owner_only(path)?;
        schema::seal_plain_secrets(&conn, &secrets)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            r.busy_timeout(std::time::Duration::from_secs(5))?;
            readers.push(Mutex::new(r));
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(readers),
            next_reader: Arc::new(AtomicUsize::new(0)),
            secrets: Arc::new(secrets),
        })
    }

    fn seal(&self, secret: Option<String>) -> Option<String> {
        secret.map(|s| self.secrets.seal(&s))
    }

    fn unseal(&self, stored: Option<String>) -> Result<Option<String>, StoreError> {
        stored
            .map(|s| self.secrets.open(&s).map_err(StoreError::from))
            .transpose()
    }

    /// The rows of `sql` (one key `?1`, a `?2` limit) read with `row`: a
    /// history list (firings, receipts).
    async fn history<T: Send + 'static>(
        &self,
        sql: &'static str,
        key: &str,
        limit: usize,
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let key = key.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(rusqlite::params![key, limit as i64], row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Run a read-only `f` on one of the reader connections.
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            // Take the first idle reader, else wait for the one in turn.
            let n = readers.len();
            for i in 0..n {
                if let Ok(guard) = readers[(start + i) % n].try_lock() {
                    return f(&guard);
                }
            }
            let guard = readers[start % n]
                .lock()
                .map_err(|_| StoreError::Poisoned)?;
            f(&guard)
        })
        .await?
    }

    /// Run `f` with the connection on a blocking thread; its commits are
    /// synced to disk before they return.
    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.call_with(Durability::Synced, f).await
    }

    async fn call_with<R, F>(&self, durability: Durability, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Poisoned)?;
            match durability {
                Durability::Synced => f(&mut guard),
                Durability::Relaxed => {
                    guard.pragma_update(None, "synchronous", "NORMAL")?;
                    let out = f(&mut guard);
                    // Back before anyone else can write.
                    guard.pragma_update(None, "synchronous", "FULL")?;
                    out
                }
            }
        })
        .await?
    }
}

#[cfg(test)]
mod tests;
