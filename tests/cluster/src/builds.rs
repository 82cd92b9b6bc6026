//! The operator's brokered builds as the cluster tests run them from
//! inside workspace pods: the operator in-process, its builds endpoint on
//! the real node's address (where pods reach this process, as they would
//! the chart's Service), pushing to a test registry over plain HTTP.

use crate::registry::{built_image, Registry};
use crate::{launch_operator, real_node_settings, unique, OperatorHandle};

/// The operator, launched once per test binary, with its builds endpoint
/// served on `node` for pushes to `registry`. Its build namespace is new.
pub async fn operator_with_builds(
    client: &kube::Client,
    node: &str,
    registry: &Registry,
) -> &'static OperatorHandle {
    // Kept for the process: a runtime may not be dropped in a test's.
    static OPERATOR: std::sync::OnceLock<OperatorHandle> = std::sync::OnceLock::new();
    let listener = tokio::net::TcpListener::bind((node, 0))
        .await
        .expect("bind the builds endpoint on the node's address");
    let port = listener.local_addr().unwrap().port();
    let operator = OPERATOR.get_or_init(|| {
        let (registry, node) = (registry.addr.clone(), node.to_string());
        launch_operator(move |_| operator::settings::Settings {
            builder_image: built_image("buildkit"),
            build_namespace: unique("builds"),
            insecure_registries: vec![registry],
            broker_url: format!("http://{node}:{port}"),
            broker_endpoints: vec![format!("{node}:{port}")],
            ..real_node_settings()
        })
    });
    let builds = operator::builds::Builds::new(
        client.clone(),
        operator.settings().clone(),
        Default::default(),
    );
    tokio::spawn(operator::serve::until(
        builds.router(),
        listener,
        std::future::pending(),
    ));
    operator
}

/// The pod IP of the egress gateway of namespace `ns`, once it is Ready.
pub async fn egress_gateway_ready(client: &kube::Client, ns: &str) -> String {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
    crate::eventually("the egress gateway to be Ready", 120, || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=egress-gateway"))
            .await
            .ok()?;
        let pod = list.items.into_iter().next()?;
        let status = pod.status?;
        let ready = status
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(status.pod_ip?)
    })
    .await
}

/// `POST url` of a build's `context` (a tar) with `token`, as a workspace
/// sends it to the operator's `/builds` or its server's `/api/builds`:
/// the status, and the lines of the answer (one JSON object each).
pub async fn post_build(url: &str, token: &str, context: Vec<u8>) -> (u16, Vec<serde_json::Value>) {
    let r = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/x-tar")
        .body(context)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    (status, lines)
}
