//! Serving an HTTP router on a listener until shutdown: the operator's
//! own listeners (the token broker, the waker). Handlers may read the
//! client's address (`peer`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::{Extension, Router};

/// Serve `router` on `listener` until `shutdown` resolves; the connections
/// in flight are answered first.
pub async fn until(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// A handler's extractor of the client's address: absent where the
/// router is called without a listener (unit tests).
pub type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// The client's address, if known.
pub fn peer(peer: Peer) -> Option<IpAddr> {
    peer.map(|Extension(ConnectInfo(addr))| addr.ip())
}
