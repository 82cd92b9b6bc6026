//! Cluster-wide settings of the operator (flags of `kube-coder operator`,
//! also used by `render`): defaults for images and where the ingress
//! controller, DNS and the operator itself run, and which nodes take
//! workspace pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// Workspace image when a Workspace names none.
    pub image_repository: String,
    pub image_tag: String,
    /// oauth2-proxy image for `auth.type: oauth2`.
    pub oauth2_proxy_image: String,
    /// Namespace of the operator: the only other source allowed to reach
    /// the api port (idle checks), and where copied Secrets come from.
    pub operator_namespace: String,
    /// Namespace of the ingress controller: the only source of dashboard
    /// and api traffic.
    pub ingress_namespace: String,
    /// Where cluster DNS runs (egress to port 53 is allowed there only).
    pub dns_namespace: String,
    pub dns_pod_label: String,
    /// URL of a workspace's api port for idle checks; `{namespace}` is
    /// replaced. Tests point it at a local server.
    pub activity_url: String,
    /// Labels a node must carry to run workspace pods (nodes set aside for
    /// workspaces; the test cluster's real node).
    pub node_selector: BTreeMap<String, String>,
    /// Taints of such nodes that workspace pods tolerate.
    pub tolerations: Vec<Toleration>,
    /// Host names every workspace with an egress allow list may reach (the
    /// chart's `network.egressDefaultDomains`), before its own.
    pub egress_default_domains: Vec<String>,
    /// The image of egress gateways (the kube-coder image).
    pub egress_gateway_image: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image_repository: "ghcr.io/kube-coder/workspace".into(),
            image_tag: env!("CARGO_PKG_VERSION").into(),
            oauth2_proxy_image: "quay.io/oauth2-proxy/oauth2-proxy:v7.12.0".into(),
            operator_namespace: "kube-coder-system".into(),
            ingress_namespace: "ingress-nginx".into(),
            dns_namespace: "kube-system".into(),
            dns_pod_label: "k8s-app=kube-dns".into(),
            activity_url: "http://workspace.{namespace}.svc:6081".into(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            egress_default_domains: Vec::new(),
            egress_gateway_image: concat!(
                "ghcr.io/kube-coder/kube-coder:",
                env!("CARGO_PKG_VERSION")
            )
            .into(),
        }
    }
}
