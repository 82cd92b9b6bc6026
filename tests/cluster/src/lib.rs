//! Helpers for tests that run against the real control plane that
//! `hack/cluster up` starts (`make test` does it). Each test uses its own
//! namespaces, so test binaries can share one running cluster.

use std::future::Future;
use std::time::{Duration, Instant};

/// A client for the test cluster, or a panic that says how to get one.
pub async fn client() -> kube::Client {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!("KUBECONFIG is not set: these tests need the test control plane; run `make test`, or `hack/cluster up` and `eval $(hack/cluster env)`");
    }
    // Several TLS backends are linked into the workspace; pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    kube::Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test cluster from KUBECONFIG: {e}"))
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{:x}", std::process::id(), nanos)
}

/// Poll `check` until it returns `Some`, or panic after `secs` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
