//! `GET /api/events`: server-wide events (task created, state changed) as SSE.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use tokio::sync::broadcast;

use crate::error::ApiResult;
use crate::http::sse::{self, take_slot};
use crate::http::AppState;

pub async fn event_stream(
    State(app): State<AppState>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let slot = take_slot(&app)?;
    let mut sub = app.events.subscribe();
    Ok(sse::respond(slot, 64, move |tx| async move {
        let mut seq: u64 = 0;
        loop {
            let ev = tokio::select! {
                r = sub.recv() => r,
                _ = tx.closed() => return,
            };
            let event = match ev {
                Ok(ev) => {
                    seq += 1;
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    Event::default()
                        .event(ev.name())
                        .id(seq.to_string())
                        .data(data)
                }
                // Too slow to keep up: tell the client to reload its view.
                Err(broadcast::error::RecvError::Lagged(n)) => Event::default()
                    .event("resync")
                    .data(format!("{{\"missed\":{n}}}")),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    }))
}
