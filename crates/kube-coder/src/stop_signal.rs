//! How every long-running subcommand learns it must stop: SIGTERM (a pod's
//! stop, a service manager's) or SIGINT (Ctrl-C).

/// Resolves at the first SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A token cancelled at the first SIGTERM or SIGINT, which logs `why` then:
/// what every long-running subcommand hands its parts.
pub fn stop_token(why: &'static str) -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("{why}");
        trigger.cancel();
    });
    token
}
