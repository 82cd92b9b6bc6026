//! SQLite state: tasks, their transitions, and browser sessions.
//!
//! One connection in WAL mode with `synchronous=FULL`, behind a mutex and
//! used from blocking threads, so async handlers never block the runtime.
//! Every state change is one transaction with its transition row, and final
//! states are terminal: the `UPDATE … WHERE state IN (live)` guard makes a
//! kill racing an exit resolve to exactly one outcome.

use std::path::Path;
use std::sync::{Arc, Mutex};

use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use std::os::unix::fs::OpenOptionsExt;

use crate::clock::now_ms;
use crate::secret_box::SecretBox;

use crate::task_state::TaskState;

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
}

const SCHEMA: &[&str] = &[
    // v1
    "CREATE TABLE tasks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT,
        assistant TEXT NOT NULL,
        prompt TEXT,
        workdir TEXT NOT NULL,
        env_keys TEXT NOT NULL DEFAULT '[]',
        state TEXT NOT NULL,
        exit_code INTEGER,
        error TEXT,
        tmux_session TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        updated_at INTEGER NOT NULL
     );
     CREATE INDEX tasks_state ON tasks(state);
     CREATE TABLE task_transitions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id TEXT NOT NULL REFERENCES tasks(id),
        from_state TEXT,
        to_state TEXT NOT NULL,
        at INTEGER NOT NULL,
        reason TEXT
     );
     CREATE INDEX task_transitions_task ON task_transitions(task_id);
     CREATE TABLE sessions (
        digest TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
     );",
    // v2: completion hooks and their durable outbox
    "ALTER TABLE tasks ADD COLUMN hook_url TEXT;
     ALTER TABLE tasks ADD COLUMN hook_secret TEXT;
     CREATE TABLE hook_deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        task_id TEXT NOT NULL REFERENCES tasks(id),
        url TEXT NOT NULL,
        secret TEXT,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        finished_at INTEGER
     );
     CREATE INDEX hook_deliveries_due ON hook_deliveries(state, next_attempt_at);
     CREATE INDEX hook_deliveries_task ON hook_deliveries(task_id);
     CREATE TABLE hook_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id TEXT NOT NULL REFERENCES hook_deliveries(id),
        at INTEGER NOT NULL,
        status INTEGER,
        error TEXT,
        duration_ms INTEGER NOT NULL
     );
     CREATE INDEX hook_attempts_delivery ON hook_attempts(delivery_id);",
    // v3: inbound webhooks and what they received
    "CREATE TABLE webhooks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        secret TEXT NOT NULL,
        prompt_template TEXT NOT NULL,
        assistant TEXT,
        workdir TEXT,
        hook_url TEXT,
        hook_secret TEXT,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE webhook_receipts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        task_id TEXT,
        UNIQUE (webhook_id, delivery_id)
     );",
    // v4: schedules and every firing, missed ones included
    "CREATE TABLE schedules (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        cron TEXT NOT NULL,
        timezone TEXT NOT NULL,
        prompt TEXT,
        assistant TEXT,
        workdir TEXT,
        hook_url TEXT,
        hook_secret TEXT,
        missed_policy TEXT NOT NULL,
        next_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE schedule_firings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule_id TEXT NOT NULL,
        due_at INTEGER NOT NULL,
        fired_at INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        task_id TEXT,
        error TEXT
     );
     CREATE INDEX schedule_firings_schedule ON schedule_firings(schedule_id);",
];

/// One task as stored.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub seq: i64,
    pub id: String,
    pub name: Option<String>,
    pub assistant: String,
    pub prompt: Option<String>,
    pub workdir: String,
    pub env_keys: Vec<String>,
    pub state: TaskState,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub tmux_session: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
    pub hook_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Transition {
    pub from: Option<TaskState>,
    pub to: TaskState,
    pub at: i64,
    pub reason: Option<String>,
}

/// A new task row, written in state `starting`.
pub struct NewTask {
    pub id: String,
    pub name: Option<String>,
    pub assistant: String,
    pub prompt: Option<String>,
    pub workdir: String,
    pub env_keys: Vec<String>,
    pub tmux_session: String,
    pub hook_url: Option<String>,
    /// Kept to sign deliveries; never returned by any read.
    pub hook_secret: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct TaskFilter {
    pub states: Vec<TaskState>,
    pub assistant: Option<String>,
    /// Substring of the name.
    pub name: Option<String>,
    /// Only tasks older than this sequence number (pagination cursor).
    pub before: Option<i64>,
    pub limit: usize,
}

/// The body of a completion hook's delivery, made from the task as it is
/// after its final transition and the new delivery's id. The caller knows
/// the format; the store only writes what it is handed, in the same
/// transaction as the state.
pub type CompletionPayload = Box<dyn FnOnce(&TaskRecord, &str) -> String + Send>;

/// What a transition changes besides the state.
#[derive(Default)]
pub struct TransitionInfo {
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub reason: Option<String>,
    /// For a final state of a task with a hook: its delivery's body.
    pub completion: Option<CompletionPayload>,
}

/// What a transition did.
#[derive(Debug, Clone)]
pub struct Moved {
    pub from: TaskState,
    pub task: TaskRecord,
    /// The outbox row written with a final state, if the task has a hook.
    pub delivery: Option<String>,
}

/// A completion-hook delivery in the outbox.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub task_id: String,
    pub url: String,
    pub secret: Option<String>,
    pub payload: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// One try at delivering.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(i64),
    Dead,
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
        migrate(&conn)?;
        owner_only(path)?;
        seal_plain_secrets(&conn, &secrets)?;
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

    fn unseal_delivery(&self, mut d: Delivery) -> Result<Delivery, StoreError> {
        d.secret = self.unseal(d.secret)?;
        Ok(d)
    }

    fn unseal_webhook(&self, mut w: Webhook) -> Result<Webhook, StoreError> {
        w.secret = self.secrets.open(&w.secret)?;
        w.hook_secret = self.unseal(w.hook_secret)?;
        Ok(w)
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

    /// Run `f` with the connection on a blocking thread.
    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Poisoned)?;
            f(&mut guard)
        })
        .await?
    }

    pub async fn insert_task(&self, mut t: NewTask) -> Result<TaskRecord, StoreError> {
        t.hook_secret = self.seal(t.hook_secret.take());
        self.call(move |c| {
            let now = now_ms();
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO tasks (id, name, assistant, prompt, workdir, env_keys, state,
                                    tmux_session, created_at, updated_at, hook_url, hook_secret)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11)",
                params![
                    t.id,
                    t.name,
                    t.assistant,
                    t.prompt,
                    t.workdir,
                    serde_json::to_string(&t.env_keys).unwrap_or_else(|_| "[]".into()),
                    TaskState::Starting.as_str(),
                    t.tmux_session,
                    now,
                    t.hook_url,
                    t.hook_secret
                ],
            )?;
            tx.execute(
                "INSERT INTO task_transitions (task_id, from_state, to_state, at, reason)
                 VALUES (?1, NULL, ?2, ?3, 'created')",
                params![t.id, TaskState::Starting.as_str(), now],
            )?;
            let rec = get_task(&tx, &t.id)?
                .ok_or_else(|| StoreError::Corrupt("inserted task vanished".into()))?;
            tx.commit()?;
            Ok(rec)
        })
        .await
    }

    pub async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |c| get_task(c, &id)).await
    }

    /// Move a task to `to` if it is currently in one of `from`. Returns the
    /// updated task, or `None` when the task was not in an allowed state.
    pub async fn transition(
        &self,
        id: &str,
        from: &'static [TaskState],
        to: TaskState,
        info: TransitionInfo,
    ) -> Result<Option<Moved>, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            let tx = c.transaction()?;
            let Some(current) = get_task(&tx, &id)? else {
                return Ok(None);
            };
            if !from.contains(&current.state) || current.state == to {
                return Ok(None);
            }
            let now = now_ms();
            tx.execute(
                "UPDATE tasks SET state = ?2, updated_at = ?3,
                    started_at = CASE WHEN ?2 = 'running' AND started_at IS NULL THEN ?3 ELSE started_at END,
                    finished_at = CASE WHEN ?4 THEN ?3 ELSE finished_at END,
                    exit_code = COALESCE(?5, exit_code),
                    error = COALESCE(?6, error)
                 WHERE id = ?1",
                params![id, to.as_str(), now, to.is_final(), info.exit_code, info.error],
            )?;
            tx.execute(
                "INSERT INTO task_transitions (task_id, from_state, to_state, at, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, current.state.as_str(), to.as_str(), now, info.reason],
            )?;
            let rec = get_task(&tx, &id)?
                .ok_or_else(|| StoreError::Corrupt("updated task vanished".into()))?;
            // The hook's outbox row commits with the final state, or not at all.
            let mut delivery = None;
            let render = info.completion.filter(|_| to.is_final());
            if let (Some(url), Some(render)) = (&rec.hook_url, render) {
                let secret: Option<String> =
                    tx.query_row("SELECT hook_secret FROM tasks WHERE id = ?1", [&id], |r| r.get(0))?;
                let delivery_id = crate::secrets::generate_token()[..24].to_string();
                let payload = render(&rec, &delivery_id);
                tx.execute(
                    "INSERT INTO hook_deliveries (id, task_id, url, secret, payload, state,
                                                  next_attempt_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)",
                    params![delivery_id, id, url, secret, payload, now],
                )?;
                delivery = Some(delivery_id);
            }
            tx.commit()?;
            Ok(Some(Moved {
                from: current.state,
                task: rec,
                delivery,
            }))
        })
        .await
    }

    pub async fn list_tasks(&self, f: TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.read(move |c| {
            let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if !f.states.is_empty() {
                sql.push_str(" AND state IN (");
                for (i, st) in f.states.iter().enumerate() {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push('?');
                    args.push(st.as_str().to_string().into());
                }
                sql.push(')');
            }
            if let Some(a) = &f.assistant {
                sql.push_str(" AND assistant = ?");
                args.push(a.clone().into());
            }
            if let Some(n) = &f.name {
                sql.push_str(" AND instr(name, ?) > 0");
                args.push(n.clone().into());
            }
            if let Some(b) = f.before {
                sql.push_str(" AND seq < ?");
                args.push(b.into());
            }
            sql.push_str(" ORDER BY seq DESC LIMIT ?");
            args.push((f.limit as i64).into());
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), task_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
        .await
    }

    pub async fn live_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.list_tasks(TaskFilter {
            states: TaskState::LIVE.to_vec(),
            limit: usize::MAX >> 2,
            ..Default::default()
        })
        .await
    }

    pub async fn count_by_state(&self) -> Result<Vec<(TaskState, i64)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT state, COUNT(*) FROM tasks GROUP BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for r in rows {
                let (s, n) = r?;
                if let Some(st) = TaskState::parse(&s) {
                    out.push((st, n));
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn transitions(&self, id: &str) -> Result<Vec<Transition>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT from_state, to_state, at, reason FROM task_transitions
                 WHERE task_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (from, to, at, reason) = r?;
                out.push(Transition {
                    from: from.as_deref().and_then(TaskState::parse),
                    to: TaskState::parse(&to)
                        .ok_or_else(|| StoreError::Corrupt(format!("state `{to}`")))?,
                    at,
                    reason,
                });
            }
            Ok(out)
        })
        .await
    }

    pub async fn create_session(&self, digest: String, ttl_ms: i64) -> Result<(), StoreError> {
        self.call(move |c| {
            let now = now_ms();
            c.execute("DELETE FROM sessions WHERE expires_at < ?1", [now])?;
            c.execute(
                "INSERT INTO sessions (digest, created_at, expires_at) VALUES (?1, ?2, ?3)",
                params![digest, now, now + ttl_ms],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn session_valid(&self, digest: String) -> Result<bool, StoreError> {
        self.read(move |c| {
            let found: Option<i64> = c
                .query_row(
                    "SELECT expires_at FROM sessions WHERE digest = ?1",
                    [digest],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(found.is_some_and(|exp| exp > now_ms()))
        })
        .await
    }

    pub async fn delete_session(&self, digest: String) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute("DELETE FROM sessions WHERE digest = ?1", [digest])?;
            Ok(())
        })
        .await
    }

    pub async fn delete_all_sessions(&self) -> Result<(), StoreError> {
        self.call(|c| {
            c.execute("DELETE FROM sessions", [])?;
            Ok(())
        })
        .await
    }
}

impl Store {
    /// Pending deliveries due by `now`, oldest first.
    pub async fn due_deliveries(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM hook_deliveries
                 WHERE state = 'pending' AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now, limit as i64], delivery_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?
        .into_iter()
        .map(|d| self.unseal_delivery(d))
        .collect()
    }

    /// When the next pending delivery is due, if any.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT MIN(next_attempt_at) FROM hook_deliveries WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Record one attempt and where the delivery goes next, together.
    pub async fn record_attempt(
        &self,
        id: &str,
        attempt: Attempt,
        next: AfterAttempt,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO hook_attempts (delivery_id, at, status, error, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, attempt.at, attempt.status, attempt.error, attempt.duration_ms],
            )?;
            let (state, next_at, finished) = match next {
                AfterAttempt::Delivered => ("delivered", attempt.at, Some(attempt.at)),
                AfterAttempt::RetryAt(t) => ("pending", t, None),
                AfterAttempt::Dead => ("dead", attempt.at, Some(attempt.at)),
            };
            tx.execute(
                "UPDATE hook_deliveries SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3,
                    last_status = ?4, last_error = ?5, finished_at = ?6
                 WHERE id = ?1",
                params![id, state, next_at, attempt.status, attempt.error, finished],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn list_deliveries(
        &self,
        state: Option<String>,
        task_id: Option<String>,
        limit: usize,
    ) -> Result<Vec<(Delivery, Vec<Attempt>)>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM hook_deliveries
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR task_id = ?2)
                 ORDER BY seq DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![state, task_id, limit as i64], delivery_from_row)?;
            let deliveries = rows.collect::<Result<Vec<_>, _>>()?;
            let mut attempts = c.prepare_cached(
                "SELECT at, status, error, duration_ms FROM hook_attempts
                 WHERE delivery_id = ?1 ORDER BY id",
            )?;
            let mut out = Vec::with_capacity(deliveries.len());
            for d in deliveries {
                let a = attempts
                    .query_map([&d.id], |r| {
                        Ok(Attempt {
                            at: r.get(0)?,
                            status: r.get(1)?,
                            error: r.get(2)?,
                            duration_ms: r.get(3)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                out.push((d, a));
            }
            Ok(out)
        })
        .await?
        .into_iter()
        .map(|(d, a)| Ok((self.unseal_delivery(d)?, a)))
        .collect()
    }

    pub async fn count_dead_deliveries(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM hook_deliveries WHERE state = 'dead'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Put a delivered or dead delivery back in the queue, due now.
    pub async fn redeliver(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            let n = c.execute(
                "UPDATE hook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?2,
                    finished_at = NULL
                 WHERE id = ?1",
                params![id, now_ms()],
            )?;
            Ok(n == 1)
        })
        .await
    }
}

/// An inbound webhook definition (its secret verifies signatures).
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub secret: String,
    pub prompt_template: String,
    pub assistant: Option<String>,
    pub workdir: Option<String>,
    pub hook_url: Option<String>,
    pub hook_secret: Option<String>,
    pub created_at: i64,
}

const WEBHOOK_COLUMNS: &str =
    "id, name, secret, prompt_template, assistant, workdir, hook_url, hook_secret, created_at";

fn webhook_from_row(r: &Row<'_>) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        id: r.get(0)?,
        name: r.get(1)?,
        secret: r.get(2)?,
        prompt_template: r.get(3)?,
        assistant: r.get(4)?,
        workdir: r.get(5)?,
        hook_url: r.get(6)?,
        hook_secret: r.get(7)?,
        created_at: r.get(8)?,
    })
}

impl Store {
    pub async fn insert_webhook(&self, mut w: Webhook) -> Result<(), StoreError> {
        w.secret = self.secrets.seal(&w.secret);
        w.hook_secret = self.seal(w.hook_secret.take());
        self.call(move |c| {
            c.execute(
                &format!("INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    w.id,
                    w.name,
                    w.secret,
                    w.prompt_template,
                    w.assistant,
                    w.workdir,
                    w.hook_url,
                    w.hook_secret,
                    w.created_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn get_webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1"),
                [id],
                webhook_from_row,
            )
            .optional()?)
        })
        .await?
        .map(|w| self.unseal_webhook(w))
        .transpose()
    }

    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY seq DESC"
            ))?;
            let rows = stmt.query_map([], webhook_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?
        .into_iter()
        .map(|w| self.unseal_webhook(w))
        .collect()
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.call(move |c| Ok(c.execute("DELETE FROM webhooks WHERE id = ?1", [id])? == 1))
            .await
    }

    /// Record a receipt; false when this delivery id was seen before (a replay).
    pub async fn claim_receipt(
        &self,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        let (w, d) = (webhook_id.to_string(), delivery_id.to_string());
        self.call(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO webhook_receipts (webhook_id, delivery_id, received_at)
                 VALUES (?1, ?2, ?3)",
                params![w, d, now_ms()],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn set_receipt_task(
        &self,
        webhook_id: &str,
        delivery_id: &str,
        task_id: &str,
    ) -> Result<(), StoreError> {
        let (w, d, t) = (
            webhook_id.to_string(),
            delivery_id.to_string(),
            task_id.to_string(),
        );
        self.call(move |c| {
            c.execute(
                "UPDATE webhook_receipts SET task_id = ?3 WHERE webhook_id = ?1 AND delivery_id = ?2",
                params![w, d, t],
            )?;
            Ok(())
        })
        .await
    }
}

/// A cron schedule that starts tasks.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub prompt: Option<String>,
    pub assistant: Option<String>,
    pub workdir: Option<String>,
    pub hook_url: Option<String>,
    pub hook_secret: Option<String>,
    /// `run_once` or `skip`: what to do about firings missed while down.
    pub missed_policy: String,
    pub next_at: i64,
    pub created_at: i64,
}

/// One firing (or missed firing) of a schedule.
#[derive(Debug, Clone)]
pub struct Firing {
    pub due_at: i64,
    pub fired_at: i64,
    /// `fired`, `missed` or `failed`.
    pub outcome: String,
    pub task_id: Option<String>,
    pub error: Option<String>,
}

const SCHEDULE_COLUMNS: &str = "id, name, cron, timezone, prompt, assistant, workdir, hook_url, \
     hook_secret, missed_policy, next_at, created_at";

fn schedule_from_row(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        id: r.get(0)?,
        name: r.get(1)?,
        cron: r.get(2)?,
        timezone: r.get(3)?,
        prompt: r.get(4)?,
        assistant: r.get(5)?,
        workdir: r.get(6)?,
        hook_url: r.get(7)?,
        hook_secret: r.get(8)?,
        missed_policy: r.get(9)?,
        next_at: r.get(10)?,
        created_at: r.get(11)?,
    })
}

impl Store {
    pub async fn insert_schedule(&self, mut s: Schedule) -> Result<(), StoreError> {
        s.hook_secret = self.seal(s.hook_secret.take());
        self.call(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO schedules ({SCHEDULE_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    s.id,
                    s.name,
                    s.cron,
                    s.timezone,
                    s.prompt,
                    s.assistant,
                    s.workdir,
                    s.hook_url,
                    s.hook_secret,
                    s.missed_policy,
                    s.next_at,
                    s.created_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY seq DESC"
            ))?;
            let rows = stmt.query_map([], schedule_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?
        .into_iter()
        .map(|mut s| {
            s.hook_secret = self.unseal(s.hook_secret)?;
            Ok(s)
        })
        .collect()
    }

    pub async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.call(move |c| Ok(c.execute("DELETE FROM schedules WHERE id = ?1", [id])? == 1))
            .await
    }

    /// Record firings and move the schedule's next time, together.
    pub async fn record_firings(
        &self,
        id: &str,
        firings: Vec<Firing>,
        next_at: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            let tx = c.transaction()?;
            for f in &firings {
                tx.execute(
                    "INSERT INTO schedule_firings (schedule_id, due_at, fired_at, outcome, task_id, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, f.due_at, f.fired_at, f.outcome, f.task_id, f.error],
                )?;
            }
            tx.execute("UPDATE schedules SET next_at = ?2 WHERE id = ?1", params![id, next_at])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn firings(&self, id: &str, limit: usize) -> Result<Vec<Firing>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT due_at, fired_at, outcome, task_id, error FROM schedule_firings
                 WHERE schedule_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id, limit as i64], |r| {
                Ok(Firing {
                    due_at: r.get(0)?,
                    fired_at: r.get(1)?,
                    outcome: r.get(2)?,
                    task_id: r.get(3)?,
                    error: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

const DELIVERY_COLUMNS: &str =
    "id, task_id, url, secret, payload, state, attempts, next_attempt_at, \
     last_status, last_error, created_at, finished_at";

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        task_id: r.get(1)?,
        url: r.get(2)?,
        secret: r.get(3)?,
        payload: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt_at: r.get(7)?,
        last_status: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
        finished_at: r.get(11)?,
    })
}

/// The database and its -wal/-shm files: readable by the owner only.
fn owner_only(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Mode(e)),
        }
    }
    Ok(())
}

/// Columns that hold secrets, sealed at rest (table, column).
const SECRET_COLUMNS: &[(&str, &str)] = &[
    ("tasks", "hook_secret"),
    ("hook_deliveries", "secret"),
    ("webhooks", "secret"),
    ("webhooks", "hook_secret"),
    ("schedules", "hook_secret"),
];

/// Seal the secrets written before sealing existed, in one transaction.
fn seal_plain_secrets(conn: &Connection, secrets: &SecretBox) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    for (table, column) in SECRET_COLUMNS {
        let plain: Vec<(i64, String)> = tx
            .prepare(&format!(
                "SELECT rowid, {column} FROM {table}
                 WHERE {column} IS NOT NULL AND {column} NOT LIKE 'kcs1:%'"
            ))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (rowid, value) in plain {
            tx.execute(
                &format!("UPDATE {table} SET {column} = ?1 WHERE rowid = ?2"),
                params![secrets.seal(&value), rowid],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, step) in SCHEMA.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {step}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    Ok(())
}

fn get_task(c: &Connection, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let mut stmt = c.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?;
    match stmt.query_row([id], task_from_row).optional()? {
        Some(r) => Ok(Some(r?)),
        None => Ok(None),
    }
}

/// The columns `task_from_row` reads, by position (cheaper than by name).
const TASK_COLUMNS: &str =
    "seq, id, name, assistant, prompt, workdir, env_keys, state, exit_code, \
     error, tmux_session, created_at, started_at, finished_at, updated_at, hook_url";

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Result<TaskRecord, StoreError>> {
    let env_keys: String = r.get(6)?;
    let state: String = r.get(7)?;
    let Some(state) = TaskState::parse(&state) else {
        return Ok(Err(StoreError::Corrupt(format!("unknown state `{state}`"))));
    };
    Ok(Ok(TaskRecord {
        seq: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        assistant: r.get(3)?,
        prompt: r.get(4)?,
        workdir: r.get(5)?,
        env_keys: serde_json::from_str(&env_keys).unwrap_or_default(),
        state,
        exit_code: r.get(8)?,
        error: r.get(9)?,
        tmux_session: r.get(10)?,
        created_at: r.get(11)?,
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
        updated_at: r.get(14)?,
        hook_url: r.get(15)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_task(id: &str) -> NewTask {
        NewTask {
            id: id.into(),
            name: Some(format!("name-{id}")),
            assistant: "shell".into(),
            prompt: None,
            workdir: "/tmp".into(),
            env_keys: vec!["A".into()],
            tmux_session: format!("kc-{id}"),
            hook_url: None,
            hook_secret: None,
        }
    }

    #[tokio::test]
    async fn final_states_are_terminal_and_transitions_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite"), SecretBox::ephemeral()).unwrap();
        store.insert_task(new_task("a")).await.unwrap();
        let moved = store
            .transition(
                "a",
                &TaskState::LIVE,
                TaskState::Running,
                Default::default(),
            )
            .await
            .unwrap();
        assert!(moved.unwrap().task.started_at.is_some());
        let killed = store
            .transition("a", &TaskState::LIVE, TaskState::Killed, Default::default())
            .await
            .unwrap()
            .unwrap();
        assert!(killed.task.finished_at.is_some());
        // An exit arriving after the kill changes nothing.
        let late = store
            .transition(
                "a",
                &TaskState::LIVE,
                TaskState::Failed,
                TransitionInfo {
                    exit_code: Some(1),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(late.is_none());
        let t = store.get_task("a").await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Killed);
        assert_eq!(t.exit_code, None);
        let tr: Vec<_> = store
            .transitions("a")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.to)
            .collect();
        assert_eq!(
            tr,
            [TaskState::Starting, TaskState::Running, TaskState::Killed]
        );
    }

    #[tokio::test]
    async fn list_is_newest_first_filtered_and_paginated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(
            &path,
            SecretBox::load_or_create(&dir.path().join("k")).unwrap(),
        )
        .unwrap();
        for i in 0..5 {
            store.insert_task(new_task(&format!("t{i}"))).await.unwrap();
        }
        store
            .transition(
                "t1",
                &TaskState::LIVE,
                TaskState::Running,
                Default::default(),
            )
            .await
            .unwrap();
        let page = store
            .list_tasks(TaskFilter {
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["t4", "t3"]
        );
        let next = store
            .list_tasks(TaskFilter {
                limit: 2,
                before: Some(page[1].seq),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            next.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["t2", "t1"]
        );
        let running = store
            .list_tasks(TaskFilter {
                states: vec![TaskState::Running],
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(running.len(), 1);
        // Reopening the file keeps everything (a real file, not memory).
        drop(store);
        let again = Store::open(
            &path,
            SecretBox::load_or_create(&dir.path().join("k")).unwrap(),
        )
        .unwrap();
        assert_eq!(again.live_tasks().await.unwrap().len(), 5);
    }

    /// Secrets are sealed in the file (a copy of the database gives none
    /// away), plain ones from before are sealed at the next start, and the
    /// database is readable by its owner only.
    #[tokio::test]
    async fn secrets_are_sealed_at_rest_and_the_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let key = || SecretBox::load_or_create(&dir.path().join("k")).unwrap();
        let store = Store::open(&path, key()).unwrap();
        store
            .insert_webhook(Webhook {
                id: "w1".into(),
                name: "ci".into(),
                secret: "whsec-plain-1".into(),
                prompt_template: "p".into(),
                assistant: None,
                workdir: None,
                hook_url: Some("http://h.test/".into()),
                hook_secret: Some("hooksec-plain-2".into()),
                created_at: 0,
            })
            .await
            .unwrap();
        let w = store.get_webhook("w1").await.unwrap().unwrap();
        assert_eq!(w.secret, "whsec-plain-1");
        assert_eq!(w.hook_secret.as_deref(), Some("hooksec-plain-2"));
        // As a database written before sealing would hold it.
        let raw = Connection::open(&path).unwrap();
        raw.execute(
            "UPDATE webhooks SET hook_secret = 'legacy-plain-3' WHERE id = 'w1'",
            [],
        )
        .unwrap();
        drop(raw);
        drop(store);
        let store = Store::open(&path, key()).unwrap();
        let w = store.get_webhook("w1").await.unwrap().unwrap();
        assert_eq!(w.hook_secret.as_deref(), Some("legacy-plain-3"));
        drop(store);
        let raw = Connection::open(&path).unwrap();
        let (a, b): (String, String) = raw
            .query_row("SELECT secret, hook_secret FROM webhooks", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        for v in [&a, &b] {
            assert!(v.starts_with("kcs1:") && !v.contains("plain"), "{v}");
        }
        drop(raw);
        for f in ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm"] {
            if let Ok(m) = std::fs::metadata(dir.path().join(f)) {
                assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
            }
        }
        // Another key cannot open them: the answer says so, nothing panics.
        let other = Store::open(&path, SecretBox::ephemeral()).unwrap();
        assert!(matches!(
            other.get_webhook("w1").await,
            Err(StoreError::Sealed(_))
        ));
    }
}
