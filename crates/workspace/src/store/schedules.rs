//! Cron schedules and their firings.

use rusqlite::{params, Row};

use super::{Store, StoreError};

/// Schema v4: schedules and every firing, missed ones included.
pub(super) const SCHEMA_V4: &str = "CREATE TABLE schedules (
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
     CREATE INDEX schedule_firings_schedule ON schedule_firings(schedule_id);";

text_enum! {
    /// What a schedule does about firings missed while the server was down.
    MissedPolicy {
        /// Fire once now for all of them.
        RunOnce => "run_once",
        /// Record them as missed; fire none.
        Skip => "skip",
    }
}

text_enum! {
    /// How one due time of a schedule went.
    FiringOutcome {
        Fired => "fired",
        /// Due while the server was down, and not run.
        Missed => "missed",
        /// The task could not be started.
        Failed => "failed",
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
    /// What to do about firings missed while down.
    pub missed_policy: MissedPolicy,
    pub next_at: i64,
    pub created_at: i64,
}

/// One firing (or missed firing) of a schedule.
#[derive(Debug, Clone)]
pub struct Firing {
    pub due_at: i64,
    pub fired_at: i64,
    /// `fired`, `missed` or `failed`.
    pub outcome: FiringOutcome,
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
