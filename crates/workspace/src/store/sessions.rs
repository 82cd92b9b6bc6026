//! Browser sessions (token mode): digests of session ids with an expiry.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::clock::now_ms;

/// Schema v1: browser sessions.
pub(super) const SCHEMA_V1: &str = "CREATE TABLE sessions (
        digest TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
     )";

impl Store {
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
