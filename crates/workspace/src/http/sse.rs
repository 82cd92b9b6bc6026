//! SSE plumbing shared by every streaming route (task output, events,
//! folder watches) and the terminal: a place under the `--max-sse` cap,
//! and a response whose events a producer task writes into a channel,
//! with keep-alives. The producer ends when the client goes (its sends
//! fail, or `tx.closed()` resolves), and the place is given back with it.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;

/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Where a producer writes its events.
pub type EventTx = mpsc::Sender<Result<Event, Infallible>>;

/// Take an SSE slot or answer 429.
pub fn take_slot(app: &AppState) -> ApiResult<SseSlot> {
    let permit = app.sse_slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::too_many(
            "sse_limit",
            format!(
                "{} streams (event streams and terminals) are open, the most this server allows (--max-sse); close one and retry",
                app.limits.sse_connections
            ),
        )
    })?;
    app.metrics.sse_streams.inc();
    Ok(SseSlot {
        _permit: permit,
        app: app.clone(),
    })
}

/// Holds an SSE slot for as long as the stream's producer runs.
pub struct SseSlot {
    _permit: OwnedSemaphorePermit,
    app: AppState,
}

impl Drop for SseSlot {
    fn drop(&mut self) {
        self.app.metrics.sse_streams.dec();
    }
}

/// The SSE response for a stream whose events `produce` writes; it runs on
/// its own task, holding `slot`, with a channel of `buffer` events.
pub fn respond<F, Fut>(
    slot: SseSlot,
    buffer: usize,
    produce: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: FnOnce(EventTx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(buffer);
    let producer = produce(tx);
    tokio::spawn(async move {
        let _slot = slot;
        producer.await;
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
