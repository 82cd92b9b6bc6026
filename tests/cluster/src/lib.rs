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

/// Install (server-side apply) the checked-in Workspace CRD and wait
/// until the API server serves it.
pub async fn install_crd(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(operator::CRD_PATH);
    let text = std::fs::read_to_string(&path).expect("read the CRD");
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("parse the CRD");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        "workspaces.kube-coder.dev",
        &PatchParams::apply("kube-coder-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("the API server refused the CRD: {e}"));
    eventually("the Workspace CRD to be established", 30, || {
        let api = api.clone();
        async move {
            let crd = api.get("workspaces.kube-coder.dev").await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}
