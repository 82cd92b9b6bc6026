//! Names, labels and ports every builder agrees on, so the reconciler, the
//! CLI and the tests find the same objects.

use std::collections::BTreeMap;

use crate::crd::{IngressSpec, Workspace};

/// The single field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kube-coder-operator";
/// `app.kubernetes.io/managed-by` value on every object we make.
pub const MANAGED_BY: &str = "kube-coder";
/// The audience of the projected token a workspace shows the token broker
/// (the API server accepts no token of it).
pub const BROKER_AUDIENCE: &str = "kube-coder-broker";
/// The broker's port on the operator's pods.
pub const BROKER_PORT: i32 = 8443;
/// The audience of the projected token a workspace shows to ask for an
/// image build (served on the broker's port).
pub const BUILD_AUDIENCE: &str = "kube-coder-build";
/// The `app.kubernetes.io/name` of the operator's pods (the chart's).
pub const OPERATOR_APP: &str = "kube-coder-operator";

/// The label naming the Workspace an object belongs to.
pub const WORKSPACE_LABEL: &str = "kube-coder.dev/workspace";

/// Deployment, Service and the selector value of the workspace pod.
pub const WORKLOAD: &str = "workspace";
pub const SERVICE_ACCOUNT: &str = "workspace";
pub const HOME_PVC: &str = "home";
/// API token, basic-auth hash and login password.
pub const CREDENTIALS_SECRET: &str = "workspace-credentials";
/// oauth2-proxy client id, client secret and cookie secret.
pub const OAUTH2_SECRET: &str = "oauth2-proxy";
pub const PULL_SECRET: &str = "image-pull";

/// The ExternalName Service that leads a workspace's hosts to the
/// operator's waker while the workspace is not Ready.
pub const WAKER: &str = "waker";
/// The path a waiting page asks for the workspace's progress (the waker
/// answers it; once the workspace answers instead, the page reloads).
pub const WAKE_STATUS_PATH: &str = "/.kube-coder/wake";
pub const DASHBOARD_PORT: i32 = 6080;
pub const API_PORT: i32 = 6081;
pub const OAUTH2_PORT: i32 = 4180;
/// Key of the provider's CA in the oauth2 Secret, and where the sidecar
/// finds it.
pub const OAUTH2_PROVIDER_CA_KEY: &str = "provider-ca.crt";
pub const OAUTH2_PROVIDER_CA_DIR: &str = "/etc/kube-coder/oauth2-provider-ca";

/// The egress gateway (Deployment, Service, pod label), its allow list's
/// ConfigMap, and its ports: the proxy and the admin port (health,
/// metrics, recent refusals).
pub const EGRESS_GATEWAY: &str = "egress-gateway";
pub const EGRESS_ALLOW_LIST: &str = "egress-allow-list";
pub const EGRESS_PROXY_PORT: i32 = 3128;
pub const EGRESS_ADMIN_PORT: i32 = 3129;
/// The gateway's model port, the key Secret only its pod mounts, and the
/// ConfigMap where it keeps the month's model usage (the one object its
/// ServiceAccount may change).
pub const EGRESS_MODELS_PORT: i32 = 3130;
pub const MODEL_KEYS_SECRET: &str = "model-keys";
pub const MODEL_USAGE: &str = "model-usage";
/// SSH: the port the server listens on in the pod (reached only through
/// the API server's port-forward), and the ConfigMap of the keys.
pub const SSH_PORT: i32 = 2222;
pub const SSH_AUTHORIZED_KEYS: &str = "ssh-authorized-keys";
/// The user of the kube-coder image (the gateway's).
pub const IMAGE_UID: i64 = 65532;

/// Home directory and UID inside the workspace image.
pub const HOME: &str = "/home/dev";
pub const UID: i64 = 1000;

/// `ws-<name>`: the namespace a workspace lives in.
pub fn namespace(workspace: &str) -> String {
    format!("ws-{workspace}")
}

pub fn workspace_name(ws: &Workspace) -> &str {
    ws.metadata.name.as_deref().unwrap_or_default()
}

/// Labels on every object of one workspace.
pub fn labels(workspace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
        (WORKSPACE_LABEL.into(), workspace.into()),
    ])
}

/// Labels selecting the workspace pod.
pub fn pod_labels(workspace: &str) -> BTreeMap<String, String> {
    let mut l = labels(workspace);
    l.insert("app.kubernetes.io/name".into(), WORKLOAD.into());
    l
}

/// Labels selecting the egress gateway's pod.
pub fn gateway_pod_labels(workspace: &str) -> BTreeMap<String, String> {
    let mut l = labels(workspace);
    l.insert("app.kubernetes.io/name".into(), EGRESS_GATEWAY.into());
    l
}

/// The API's host: `apiHost`, or `<first label>-api.<rest>` of the host.
pub fn api_host(ingress: &IngressSpec) -> String {
    if let Some(h) = &ingress.api_host {
        return h.clone();
    }
    match ingress.host.split_once('.') {
        Some((first, rest)) => format!("{first}-api.{rest}"),
        None => format!("{}-api", ingress.host),
    }
}

/// The workspace's two URLs, dashboard and api (each ending in `/`): on
/// its ingress hosts when it has an ingress, else its Service in the
/// cluster.
pub fn urls(ws: &Workspace) -> (String, String) {
    let ns = namespace(workspace_name(ws));
    match &ws.spec.ingress {
        Some(i) => (
            format!("https://{}/", i.host),
            format!("https://{}/", api_host(i)),
        ),
        None => (
            format!("http://{WORKLOAD}.{ns}.svc:{DASHBOARD_PORT}/"),
            format!("http://{WORKLOAD}.{ns}.svc:{API_PORT}/"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_host_is_a_sibling_of_the_dashboard_host() {
        let mut i = IngressSpec {
            host: "alice.dev.example.com".into(),
            ..Default::default()
        };
        assert_eq!(api_host(&i), "alice-api.dev.example.com");
        i.api_host = Some("api.example.com".into());
        assert_eq!(api_host(&i), "api.example.com");
    }
}
