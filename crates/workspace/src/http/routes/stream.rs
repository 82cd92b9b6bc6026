//! `GET /api/tasks/{id}/stream`: a task's output as server-sent events.
//!
//! Events: `output` (`{"offset","data"}`, id = stream offset after it),
//! `state` (`{"state","exit_code"}`), and a last `end` with the task once it
//! has finished and its output is drained. Resumable: `Last-Event-ID` (or
//! `?from=`) is an offset into the output. The producer sleeps on the task's
//! pulse (inotify-driven) between reads: output is pushed, not polled.

use std::convert::Infallible;
use std::path::PathBuf;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::http::sse::{self, take_slot, EventTx};
use crate::http::AppState;
use crate::task_state::TaskState;
use crate::tasks::output_log::read_from;
use crate::views::TaskView;

const READ_CHUNK: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    from: Option<u64>,
}

pub async fn task_stream(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let from = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_last_event_id",
                    "Last-Event-ID must be an output offset",
                )
            })?,
        None => q.from.unwrap_or(0),
    };
    let rec = app.tasks.get(&id).await?;
    let slot = take_slot(&app)?;
    Ok(sse::respond(slot, 16, move |tx| {
        produce(app, rec.id, rec.state, from, tx)
    }))
}

async fn produce(app: AppState, id: String, initial: TaskState, from: u64, tx: EventTx) {
    let dir = app.tasks.task_dir(&id);
    let mut pulse = app.tasks.pulse(&id);
    let mut reader = Reader {
        dir,
        pos: from,
        pending: Vec::new(),
    };
    let mut sent_state = None;
    let mut state = pulse.as_ref().map(|p| p.borrow().state).unwrap_or(initial);
    loop {
        if !reader.drain(&tx).await {
            return;
        }
        if sent_state != Some(state) {
            let rec = app.store.get_task(&id).await.ok().flatten();
            let ev = json!({"state": state, "exit_code": rec.as_ref().and_then(|r| r.exit_code)});
            if !send(&tx, Event::default().event("state").data(ev.to_string())).await {
                return;
            }
            sent_state = Some(state);
        }
        if state.is_final() {
            // Output written just before the end has been drained above.
            let rec = app.store.get_task(&id).await.ok().flatten();
            if let Some(rec) = rec {
                let data = serde_json::to_string(&TaskView::from(&rec)).unwrap_or_default();
                let _ = send(&tx, Event::default().event("end").data(data)).await;
            }
            return;
        }
        let Some(rx) = pulse.as_mut() else {
            // Not live and not final: the task finished between reads.
            state = final_state(&app, &id, state).await;
            continue;
        };
        tokio::select! {
            changed = rx.changed() => {
                match changed {
                    Ok(()) => state = rx.borrow_and_update().state,
                    Err(_) => {
                        pulse = None;
                        state = final_state(&app, &id, state).await;
                    }
                }
            }
            _ = tx.closed() => return,
        }
    }
}

async fn final_state(app: &AppState, id: &str, fallback: TaskState) -> TaskState {
    match app.store.get_task(id).await {
        Ok(Some(r)) if r.state.is_final() => r.state,
        // The pulse closed, so the task is finished; the row says how.
        _ => {
            if fallback.is_final() {
                fallback
            } else {
                TaskState::Lost
            }
        }
    }
}

struct Reader {
    dir: PathBuf,
    pos: u64,
    /// The start of a UTF-8 character cut by a read boundary.
    pending: Vec<u8>,
}

impl Reader {
    /// Send everything written so far; false when the client has gone.
    async fn drain(&mut self, tx: &EventTx) -> bool {
        loop {
            let (dir, pos) = (self.dir.clone(), self.pos);
            let chunk =
                match tokio::task::spawn_blocking(move || read_from(&dir, pos, READ_CHUNK)).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return true,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "could not read task output");
                        return true;
                    }
                    Err(_) => return true,
                };
            if chunk.data.is_empty() {
                return true;
            }
            if chunk.start != self.pos {
                // Older output was rotated away; what we held is moot.
                self.pending.clear();
            }
            self.pos = chunk.end();
            self.pending.extend_from_slice(&chunk.data);
            let text = take_complete_utf8(&mut self.pending);
            if text.is_empty() {
                continue;
            }
            let start = self.pos - (self.pending.len() + text.len()) as u64;
            let end = self.pos - self.pending.len() as u64;
            let data = json!({"offset": start, "data": text}).to_string();
            if !send(
                tx,
                Event::default()
                    .event("output")
                    .id(end.to_string())
                    .data(data),
            )
            .await
            {
                return false;
            }
        }
    }
}

/// Split off the longest valid prefix (invalid bytes become U+FFFD); keep an
/// incomplete trailing character for the next read.
fn take_complete_utf8(buf: &mut Vec<u8>) -> String {
    let keep = match std::str::from_utf8(buf) {
        Ok(_) => 0,
        Err(e) if e.error_len().is_none() => buf.len() - e.valid_up_to(),
        Err(_) => 0,
    };
    let rest = buf.split_off(buf.len() - keep);
    let text = String::from_utf8_lossy(buf).into_owned();
    *buf = rest;
    text
}

async fn send(tx: &EventTx, ev: Event) -> bool {
    tx.send(Ok(ev)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::take_complete_utf8;

    #[test]
    fn utf8_split_across_reads_is_held_back() {
        let mut buf = "héllo".as_bytes()[..2].to_vec(); // "h" + first byte of é
        assert_eq!(take_complete_utf8(&mut buf), "h");
        assert_eq!(buf.len(), 1);
        buf.extend_from_slice(&"héllo".as_bytes()[2..]);
        assert_eq!(take_complete_utf8(&mut buf), "éllo");
        assert!(buf.is_empty());
        let mut bad = vec![b'a', 0xff, b'b'];
        assert_eq!(take_complete_utf8(&mut bad), "a\u{fffd}b");
    }
}
