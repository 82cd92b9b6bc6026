//! The hook outbox: deliveries written with a task's final state, their
//! attempts, and redelivery.

use rusqlite::{params, Row};

use super::{Store, StoreError};
use crate::clock::now_ms;

/// Schema v2: completion hooks (on tasks) and their durable outbox.
pub(super) const SCHEMA_V2: &str = "ALTER TABLE tasks ADD COLUMN hook_url TEXT;
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
     CREATE INDEX hook_attempts_delivery ON hook_attempts(delivery_id);";

text_enum! {
    /// Where a delivery stands.
    DeliveryState {
        /// Waiting for its (next) attempt.
        Pending => "pending",
        Delivered => "delivered",
        /// Gave up; can be redelivered by hand.
        Dead => "dead",
    }
}

/// A completion-hook delivery in the outbox.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub task_id: String,
    pub url: String,
    pub secret: Option<String>,
    pub payload: String,
    pub state: DeliveryState,
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
        state: Option<DeliveryState>,
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

impl Store {
    fn unseal_delivery(&self, mut d: Delivery) -> Result<Delivery, StoreError> {
        d.secret = self.unseal(d.secret)?;
        Ok(d)
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
