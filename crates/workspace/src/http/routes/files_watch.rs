//! `GET /api/files/watch?path=DIR`: server-sent events while DIR changes.
//!
//! Events: `ready` once the watch is in place (a client that reconnects
//! reloads then, covering what it missed), `changed` after changes — at
//! most a few a second, however busy the directory, and always one after
//! the last change — and `gone` when the directory itself is deleted or
//! moved, which ends the stream. Counts against `--max-sse`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::files::blocking;
use crate::http::sse::{self, take_slot};
use crate::http::AppState;

/// Quiet time after a notice: a build rewriting hundreds of files becomes a
/// handful of reloads, and the watch keeps the latest state, so the notice
/// after the last change is never skipped.
const COALESCE: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchQuery {
    #[serde(default)]
    path: String,
}

pub async fn watch(
    State(app): State<AppState>,
    Query(q): Query<WatchQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let files = app.files.clone();
    let path = files.path(&q.path)?;
    let shown = path.display();
    let slot = take_slot(&app)?;
    let watches = app.dir_watches.clone();
    let mut sub = blocking(move || {
        let dir = files.open_dir(&path)?;
        watches.subscribe(dir).map_err(|e| {
            ApiError::unavailable(
                "watch_unavailable",
                format!(
                    "`{}` cannot be watched now ({e}); reload to see changes",
                    path.display()
                ),
            )
        })
    })
    .await?;

    let data = json!({ "path": shown }).to_string();
    Ok(sse::respond(slot, 4, move |tx| async move {
        let send =
            |name: &'static str| tx.send(Ok(Event::default().event(name).data(data.clone())));
        if send("ready").await.is_ok() {
            loop {
                // A closed channel: the kernel ended the watch (the file
                // system went away); as good as gone for the viewer.
                let closed = tokio::select! {
                    r = sub.changes.changed() => r.is_err(),
                    _ = tx.closed() => break,
                };
                let gone = closed || sub.changes.borrow_and_update().gone;
                if send(if gone { "gone" } else { "changed" }).await.is_err() || gone {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(COALESCE) => {}
                    _ = tx.closed() => break,
                }
            }
        }
        // Dropping `sub` here removes the watch if this was its last viewer.
        drop(sub);
    }))
}
