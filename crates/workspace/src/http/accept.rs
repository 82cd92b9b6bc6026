//! The accept loop of both listeners: which connections are taken, how
//! long they may stay, and how they end when the server stops.
//!
//! Not `axum::serve`, which has no knob for these:
//! - a connection must send a complete request head within
//!   [`Limits::header_timeout`](crate::config::Limits), whether it is new
//!   or kept alive after an answer (hyper's header-read timer runs in both
//!   cases), so slow headers, silence and idle keep-alives are closed;
//! - one peer address holds at most `connections_per_peer` connections on
//!   a listener; a further one gets one 429 answer and is closed;
//! - on shutdown, connections finish the request in flight, then close;
//!   after [`SHUTDOWN_GRACE`] the rest (event streams, terminals, which
//!   never end by themselves) are dropped.
//!
//! HTTP/1.1 only, with upgrades (the terminal's WebSocket).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// How long a stopping server waits for open connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What [`serve`] enforces per connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub per_peer: usize,
}

/// Serve `router` on `listener` until `shutdown` fires, then close.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    // hyper's own HTTP/1 server: its header-read timer starts as soon as
    // a connection waits for a request head (hyper-util's `auto` first
    // waits for bytes to tell HTTP/2 apart, with no timeout at all).
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut connections = JoinSet::new();
    let peers = PeerCounts::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: pause, do not spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Forget connections that ended (their results are nothing).
        while connections.try_join_next().is_some() {}
        let Some(slot) = peers.take(peer.ip(), limits.per_peer) else {
            tracing::debug!(peer = %peer.ip(), "refusing a connection over the per-peer limit");
            // One plain answer, then close; bounded by the header timeout.
            let refuse = hyper::service::service_fn(move |_| async move {
                Ok::<_, Infallible>(too_many_connections(limits.per_peer))
            });
            let conn = builder.serve_connection(TokioIo::new(stream), refuse);
            connections.spawn(async move {
                let _ = tokio::time::timeout(limits.header_timeout, conn).await;
            });
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { Ok::<_, Infallible>(router.call(req).await.unwrap_or_else(|e| match e {})) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            // On shutdown: finish the request in flight, then close.
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            // Errors here are a client's (reset, timeout, bad request line).
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let all_closed = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, all_closed)
        .await
        .is_err()
    {
        tracing::info!(grace = ?SHUTDOWN_GRACE, "closing the connections still open");
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

fn too_many_connections(limit: usize) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = crate::error::ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "too_many_connections",
        format!("this address already has {limit} open connections (--max-connections-per-peer); close some and retry"),
    )
    .into_response();
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// Open connections per peer address.
#[derive(Clone, Default)]
struct PeerCounts(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One open connection of a peer; dropping it gives the place back.
struct PeerSlot {
    counts: PeerCounts,
    ip: IpAddr,
}

impl PeerCounts {
    fn take(&self, ip: IpAddr, limit: usize) -> Option<PeerSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_places_back_when_connections_close() {
        let peers = PeerCounts::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = peers.take(ip, 2).unwrap();
        let _b = peers.take(ip, 2).unwrap();
        assert!(peers.take(ip, 2).is_none());
        assert!(peers.take("127.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(peers.take(ip, 2).is_some());
    }
}
