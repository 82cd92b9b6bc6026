//! Inbound webhook definitions and their receipts (replay protection).

use rusqlite::{params, OptionalExtension, Row};

use super::{Store, StoreError};
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

impl Store {
    fn unseal_webhook(&self, mut w: Webhook) -> Result<Webhook, StoreError> {
        w.secret = self.secrets.open(&w.secret)?;
        w.hook_secret = self.unseal(w.hook_secret)?;
        Ok(w)
    }
}
