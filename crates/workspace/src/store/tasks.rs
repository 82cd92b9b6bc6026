//! Tasks and their transitions: rows, columns and queries.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{Durability, Store, StoreError};
use crate::clock::now_ms;
use crate::task_state::TaskState;

/// Schema v1: tasks and their transitions.
pub(super) const SCHEMA_V1: &str = "CREATE TABLE tasks (
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
     CREATE INDEX task_transitions_task ON task_transitions(task_id)";

/// What became of a request to forget a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRemoval {
    Removed,
    /// No such task, or it is still live.
    NotFinished,
    /// Its completion hook is still being delivered.
    DeliveryPending,
}

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

impl Store {
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

    /// Forget a finished task with its transitions and its hook
    /// deliveries (each delivered or dead: one still pending keeps it).
    pub async fn delete_finished_task(&self, id: &str) -> Result<TaskRemoval, StoreError> {
        let id = id.to_string();
        let finals: Vec<&str> = TaskState::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect();
        let finals = format!("'{}'", finals.join("','"));
        self.call(move |c| {
            let tx = c.transaction()?;
            let finished: bool = tx.query_row(
                &format!("SELECT EXISTS (SELECT 1 FROM tasks WHERE id = ?1 AND state IN ({finals}))"),
                [&id],
                |r| r.get(0),
            )?;
            if !finished {
                return Ok(TaskRemoval::NotFinished);
            }
            let pending: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM hook_deliveries WHERE task_id = ?1 AND state = 'pending')",
                [&id],
                |r| r.get(0),
            )?;
            if pending {
                return Ok(TaskRemoval::DeliveryPending);
            }
            tx.execute(
                "DELETE FROM hook_attempts WHERE delivery_id IN
                   (SELECT id FROM hook_deliveries WHERE task_id = ?1)",
                [&id],
            )?;
            tx.execute("DELETE FROM hook_deliveries WHERE task_id = ?1", [&id])?;
            tx.execute("DELETE FROM task_transitions WHERE task_id = ?1", [&id])?;
            tx.execute("DELETE FROM tasks WHERE id = ?1", [&id])?;
            tx.commit()?;
            Ok(TaskRemoval::Removed)
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
        // A live state is derived again from tmux at every start (a task
        // left `starting` whose session runs is `running`), and a power loss
        // ends every session anyway: such a commit need not wait for the
        // disk (the next synced commit carries it there). Final states do.
        let durability = if to.is_final() {
            Durability::Synced
        } else {
            Durability::Relaxed
        };
        self.call_with(durability, move |c| {
            let tx = c.transaction()?;
            let Some(current) = get_task(&tx, &id)? else {
                return Ok(None);
            };
            if !from.contains(&current.state) || current.state == to {
                return Ok(None);
            }
            let now = now_ms();
            // A command that ended (it has an exit code) ran, even when it
            // ended before its running was recorded: it has a start then.
            tx.execute(
                "UPDATE tasks SET state = ?2, updated_at = ?3,
                    started_at = CASE WHEN started_at IS NULL AND (?2 = 'running' OR (?4 AND ?5 IS NOT NULL))
                        THEN ?3 ELSE started_at END,
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
