//! Serving an HTTP router on a listener until shutdown: the operator's
//! own listeners (the token broker, the waker).

use axum::Router;

/// Serve `router` on `listener` until `shutdown` resolves; the connections
/// in flight are answered first.
pub async fn until(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
