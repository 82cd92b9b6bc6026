//! `GET /api/events`: server-wide events (task created, state changed) as SSE.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::stream::take_slot;
use crate::error::ApiResult;
use crate::http::AppState;

pub async fn event_stream(
    State(app): State<AppState>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let slot = take_slot(&app)?;
    let mut sub = app.events.subscribe();
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let _slot = slot;
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
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
