//! Cron schedules and their firings.

use rusqlite::{params, OptionalExtension, Row};

use super::{name_free, Store, StoreError};

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

/// Schema v5: a schedule can be paused (it keeps its definition and
/// history, and fires nothing until resumed).
pub(super) const SCHEMA_V5: &str =
    "ALTER TABLE schedules ADD COLUMN paused INTEGER NOT NULL DEFAULT 0";

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
    /// The next due time; `i64::MAX` when it never fires again or is paused.
    pub next_at: i64,
    pub created_at: i64,
    pub paused: bool,
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
     hook_secret, missed_policy, next_at, created_at, paused";

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
        paused: r.get(12)?,
    })
}

/// A schedule's columns, in `SCHEDULE_COLUMNS` order, as `?1`…`?13`.
fn schedule_params(s: &Schedule) -> [&dyn rusqlite::ToSql; 13] {
    [
        &s.id,
        &s.name,
        &s.cron,
        &s.timezone,
        &s.prompt,
        &s.assistant,
        &s.workdir,
        &s.hook_url,
        &s.hook_secret,
        &s.missed_policy,
        &s.next_at,
        &s.created_at,
        &s.paused,
    ]
}

const SCHEDULE_VALUES: &str = "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

impl Store {
    /// Store a new schedule (`update`: replace the one with its id, whose
    /// firings stay; false when there is none). Its name must be free.
    /// Store a new schedule; its name must be free.
    pub async fn insert_schedule(&self, x: Schedule) -> Result<(), StoreError> {
        self.save_schedule(x, false).await.map(|_| ())
    }

    /// Replace the schedule with this id (false when there is none); its
    /// name must be free.
    pub async fn update_schedule(&self, x: Schedule) -> Result<bool, StoreError> {
        self.save_schedule(x, true).await
    }

    async fn save_schedule(&self, mut s: Schedule, update: bool) -> Result<bool, StoreError> {
        s.hook_secret = self.seal(s.hook_secret.take());
        self.call(move |c| {
            let tx = c.transaction()?;
            name_free(&tx, "schedules", &s.id, &s.name)?;
            let sql = if update {
                format!(
                    "UPDATE schedules SET ({SCHEDULE_COLUMNS}) = {SCHEDULE_VALUES} WHERE id = ?1"
                )
            } else {
                format!("INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES {SCHEDULE_VALUES}")
            };
            let n = tx.execute(&sql, &schedule_params(&s)[..])?;
            tx.commit()?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn get_schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let id = id.to_string();
        let found = self
            .read(move |c| {
                Ok(c.query_row(
                    &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1"),
                    [id],
                    schedule_from_row,
                )
                .optional()?)
            })
            .await?;
        found
            .map(|mut s| {
                s.hook_secret = self.unseal(s.hook_secret)?;
                Ok(s)
            })
            .transpose()
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

    /// Record firings and move the schedule's next time (when given: a run
    /// on demand leaves it), together.
    pub async fn record_firings(
        &self,
        id: &str,
        firings: Vec<Firing>,
        next_at: Option<i64>,
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
            if let Some(next_at) = next_at {
                tx.execute(
                    "UPDATE schedules SET next_at = ?2 WHERE id = ?1",
                    params![id, next_at],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A schedule's firings, newest first.
    pub async fn firings(&self, id: &str, limit: usize) -> Result<Vec<Firing>, StoreError> {
        self.history(
            "SELECT due_at, fired_at, outcome, task_id, error FROM schedule_firings
             WHERE schedule_id = ?1 ORDER BY id DESC LIMIT ?2",
            id,
            limit,
            |r| {
                Ok(Firing {
                    due_at: r.get(0)?,
                    fired_at: r.get(1)?,
                    outcome: r.get(2)?,
                    task_id: r.get(3)?,
                    error: r.get(4)?,
                })
            },
        )
        .await
    }
}
