//! Image builds the workspace asked the operator for: what was asked, how
//! each ended (its digest, or why not). A build still `running` when the
//! server starts was cut off by its stop and is recorded as failed.

use rusqlite::params;

use super::{Store, StoreError};

/// Schema v6: the builds.
pub(super) const SCHEMA_V6: &str = "CREATE TABLE builds (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        images TEXT NOT NULL,
        state TEXT NOT NULL,
        digest TEXT,
        error TEXT,
        started_at INTEGER NOT NULL,
        finished_at INTEGER
     )";

/// Schema v7: the pushed image's size.
pub(super) const SCHEMA_V7: &str = "ALTER TABLE builds ADD COLUMN size INTEGER";

text_enum! {
    /// Where a build is.
    BuildState {
        Running => "running",
        /// Built and pushed.
        Succeeded => "succeeded",
        Failed => "failed",
    }
}

/// How a build ended.
#[derive(Debug, Clone)]
pub enum BuildEnd {
    /// Built and pushed: the image's digest and size in bytes (as pushed).
    Pushed { digest: String, size: Option<u64> },
    /// Why not.
    Failed(String),
}

/// One build, as the history lists it.
#[derive(Debug, Clone)]
pub struct BuildRecord {
    pub id: String,
    /// The references it pushes (`registry/repository:tag`).
    pub images: Vec<String>,
    pub state: BuildState,
    pub digest: Option<String>,
    /// Bytes as pushed (manifest, config, compressed layers).
    pub size: Option<u64>,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

impl Store {
    pub async fn build_started(
        &self,
        id: &str,
        images: &[String],
        at: i64,
    ) -> Result<(), StoreError> {
        let (id, images) = (
            id.to_string(),
            serde_json::to_string(images).unwrap_or_default(),
        );
        self.call(move |c| {
            c.execute(
                "INSERT INTO builds (id, images, state, started_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, images, BuildState::Running, at],
            )?;
            Ok(())
        })
        .await
    }

    /// How the running build `id` ended; a build already ended is left.
    pub async fn build_finished(&self, id: &str, end: BuildEnd, at: i64) -> Result<(), StoreError> {
        let id = id.to_string();
        let (state, digest, size, error) = match end {
            BuildEnd::Pushed { digest, size } => (
                BuildState::Succeeded,
                Some(digest),
                size.map(|s| s as i64),
                None,
            ),
            BuildEnd::Failed(error) => (BuildState::Failed, None, None, Some(error)),
        };
        self.call(move |c| {
            c.execute(
                "UPDATE builds SET state = ?2, digest = ?3, size = ?4, error = ?5, finished_at = ?6
                 WHERE id = ?1 AND state = ?7",
                params![id, state, digest, size, error, at, BuildState::Running],
            )?;
            Ok(())
        })
        .await
    }

    /// Builds left running by a server that stopped: failed, saying so.
    pub async fn builds_cut_off(&self, at: i64) -> Result<usize, StoreError> {
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE builds SET state = ?1, error = ?2, finished_at = ?3 WHERE state = ?4",
                params![
                    BuildState::Failed,
                    "the workspace server stopped during the build; it may have pushed",
                    at,
                    BuildState::Running
                ],
            )?)
        })
        .await
    }

    /// The latest `limit` builds, newest first.
    pub async fn builds(&self, limit: usize) -> Result<Vec<BuildRecord>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, images, state, digest, error, started_at, finished_at, size
                 FROM builds ORDER BY seq DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], |r| {
                let images: String = r.get(1)?;
                Ok(BuildRecord {
                    id: r.get(0)?,
                    images: serde_json::from_str(&images).unwrap_or_default(),
                    state: r.get(2)?,
                    digest: r.get(3)?,
                    error: r.get(4)?,
                    started_at: r.get(5)?,
                    finished_at: r.get(6)?,
                    size: r.get::<_, Option<i64>>(7)?.map(|s| s as u64),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
