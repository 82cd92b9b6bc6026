//! Inbound webhook definitions and their receipts (replay protection).

use rusqlite::{params, OptionalExtension, Row};

use super::{name_free, Store, StoreError};
use crate::clock::now_ms;

/// Schema v3: inbound webhooks and what they received.
pub(super) const SCHEMA_V3: &str = "CREATE TABLE webhooks (
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
     );";

/// Schema v5: a webhook can be paused, and each receipt says how its
/// delivery went (the webhook's delivery history) and the sender's own
/// delivery id (GitHub's receipts are keyed by the body's digest).
pub(super) const SCHEMA_V5: &str =
    "ALTER TABLE webhooks ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE webhook_receipts ADD COLUMN outcome TEXT NOT NULL DEFAULT 'started';
     ALTER TABLE webhook_receipts ADD COLUMN error TEXT;
     ALTER TABLE webhook_receipts ADD COLUMN sender_delivery TEXT;
     UPDATE webhook_receipts SET outcome = 'failed' WHERE task_id IS NULL;
     UPDATE webhook_receipts SET sender_delivery = delivery_id;
     CREATE INDEX webhook_receipts_webhook ON webhook_receipts(webhook_id, id)";

text_enum! {
    /// How one received delivery went.
    ReceiptOutcome {
        /// Claimed; its task is being started.
        Pending => "pending",
        Started => "started",
        /// The task could not be started (the error says why); the sender
        /// may deliver it again.
        Failed => "failed",
        /// Refused while the webhook was paused; may be delivered again.
        Paused => "paused",
    }
}

/// One delivery a webhook received.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The sender's delivery id.
    pub delivery_id: String,
    pub received_at: i64,
    pub outcome: ReceiptOutcome,
    pub task_id: Option<String>,
    pub error: Option<String>,
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
    /// Deliveries are refused (409) while paused.
    pub paused: bool,
}

const WEBHOOK_COLUMNS: &str =
    "id, name, secret, prompt_template, assistant, workdir, hook_url, hook_secret, created_at, paused";

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
        paused: r.get(9)?,
    })
}

impl Store {
    /// Store a new webhook (`update`: replace the definition with its id,
    /// whose receipts stay; false when there is none). Its name must be
    /// free.
    /// Store a new webhook; its name must be free.
    pub async fn insert_webhook(&self, x: Webhook) -> Result<(), StoreError> {
        self.save_webhook(x, false).await.map(|_| ())
    }

    /// Replace the webhook with this id (false when there is none); its
    /// name must be free.
    pub async fn update_webhook(&self, x: Webhook) -> Result<bool, StoreError> {
        self.save_webhook(x, true).await
    }

    async fn save_webhook(&self, mut w: Webhook, update: bool) -> Result<bool, StoreError> {
        w.secret = self.secrets.seal(&w.secret);
        w.hook_secret = self.seal(w.hook_secret.take());
        self.call(move |c| {
            let tx = c.transaction()?;
            name_free(&tx, "webhooks", &w.id, &w.name)?;
            let values = "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
            let sql = if update {
                format!("UPDATE webhooks SET ({WEBHOOK_COLUMNS}) = {values} WHERE id = ?1")
            } else {
                format!("INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES {values}")
            };
            let n = tx.execute(
                &sql,
                params![
                    w.id,
                    w.name,
                    w.secret,
                    w.prompt_template,
                    w.assistant,
                    w.workdir,
                    w.hook_url,
                    w.hook_secret,
                    w.created_at,
                    w.paused
                ],
            )?;
            tx.commit()?;
            Ok(n == 1)
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

    /// Claim a delivery by its replay key: false when it was received
    /// before (a replay) and did not end `failed` or `paused`, which the
    /// sender may deliver again.
    pub async fn claim_receipt(
        &self,
        webhook_id: &str,
        replay_key: &str,
        sender_delivery: &str,
    ) -> Result<bool, StoreError> {
        let (w, k, d) = (
            webhook_id.to_string(),
            replay_key.to_string(),
            sender_delivery.to_string(),
        );
        self.call(move |c| {
            let tx = c.transaction()?;
            let fresh = tx.execute(
                "INSERT OR IGNORE INTO webhook_receipts
                   (webhook_id, delivery_id, received_at, outcome, sender_delivery)
                 VALUES (?1, ?2, ?3, 'pending', ?4)",
                params![w, k, now_ms(), d],
            )? == 1;
            let again = !fresh
                && tx.execute(
                    "UPDATE webhook_receipts
                     SET outcome = 'pending', error = NULL, received_at = ?3, sender_delivery = ?4
                     WHERE webhook_id = ?1 AND delivery_id = ?2 AND outcome IN ('failed', 'paused')",
                    params![w, k, now_ms(), d],
                )? == 1;
            tx.commit()?;
            Ok(fresh || again)
        })
        .await
    }

    /// How a claimed delivery ended.
    pub async fn finish_receipt(
        &self,
        webhook_id: &str,
        replay_key: &str,
        outcome: ReceiptOutcome,
        task_id: Option<String>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let (w, k) = (webhook_id.to_string(), replay_key.to_string());
        self.call(move |c| {
            c.execute(
                "UPDATE webhook_receipts SET outcome = ?3, task_id = ?4, error = ?5
                 WHERE webhook_id = ?1 AND delivery_id = ?2",
                params![w, k, outcome, task_id, error],
            )?;
            Ok(())
        })
        .await
    }

    /// A webhook's receipts, newest first.
    pub async fn receipts(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<Receipt>, StoreError> {
        self.history(
            "SELECT COALESCE(sender_delivery, delivery_id), received_at, outcome, task_id, error
             FROM webhook_receipts WHERE webhook_id = ?1 ORDER BY id DESC LIMIT ?2",
            webhook_id,
            limit,
            |r| {
                Ok(Receipt {
                    delivery_id: r.get(0)?,
                    received_at: r.get(1)?,
                    outcome: r.get(2)?,
                    task_id: r.get(3)?,
                    error: r.get(4)?,
                })
            },
        )
        .await
    }
}

impl Store {
    fn unseal_webhook(&self, mut w: Webhook) -> Result<Webhook, StoreError> {
        w.secret = self.secrets.open(&w.secret)?;
        w.hook_secret = self.unseal(w.hook_secret)?;
        Ok(w)
    }
}
