//! The database schema, as the migrations that build it (one per version,
//! applied in order, the version kept in `user_version`), and what is made
//! right at every open: the files' modes and secrets still in plain text.

use std::path::Path;

use rusqlite::{params, Connection};

use super::StoreError;
use crate::secret_box::SecretBox;

/// The migrations, one per schema version, in order; each version's
/// statements live beside the queries of their concern.
const SCHEMA: &[&[&str]] = &[
    &[super::tasks::SCHEMA_V1, super::sessions::SCHEMA_V1],
    &[super::outbox::SCHEMA_V2],
    &[super::webhooks::SCHEMA_V3],
    &[super::schedules::SCHEMA_V4],
    &[super::schedules::SCHEMA_V5, super::webhooks::SCHEMA_V5],
    &[super::builds::SCHEMA_V6],
    &[super::builds::SCHEMA_V7],
];

/// The database and its -wal/-shm files: readable by the owner only.
pub(super) fn owner_only(path: &Path) -> Result<(), StoreError> {
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
pub(super) fn seal_plain_secrets(conn: &Connection, secrets: &SecretBox) -> Result<(), StoreError> {
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

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    migrate_to(conn, SCHEMA.len())
}

/// Apply the migrations up to schema version `last` (tests build old
/// databases with it).
pub(super) fn migrate_to(conn: &Connection, last: usize) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, parts) in SCHEMA.iter().enumerate().take(last).skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {}; PRAGMA user_version = {}; COMMIT;",
            parts.join(";\n"),
            i + 1
        ))?;
    }
    Ok(())
}
