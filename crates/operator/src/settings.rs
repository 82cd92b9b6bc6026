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
    /// Class of that same controller: every Workspace's Ingresses get it,
    /// so the controller that serves them is the one the NetworkPolicy
    /// lets in. A Workspace naming another class is refused.
    pub ingress_class: String,
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
    /// The model providers workspaces with `spec.models` may use through
    /// their gateway.
    pub model_providers: Vec<ModelProvider>,
    /// The Secret in the operator's namespace holding the providers' keys,
    /// one entry per provider name; copied into a workspace's namespace
    /// for its gateway's pod alone.
    pub model_keys_secret: String,
    /// PEM certificates gateways trust besides the public roots (a model
    /// provider behind the company's own CA).
    pub model_ca_bundle: Option<String>,
    /// Where the API server really listens (`ip:port`; a NetworkPolicy
    /// sees these, not the `kubernetes` Service's address): a gateway with
    /// models keeps its usage through it, and no other rule opens them.
    /// Found from the `kubernetes` EndpointSlice when the operator starts,
    /// unless given.
    pub api_server_endpoints: Vec<String>,
    /// The GitHub App the token broker mints installation tokens with.
    pub github: GithubSettings,
    /// The operator's waker as the ingress controller reaches it (`host:port`;
    /// `{namespace}` is the operator's): a workspace's hosts lead there
    /// while it is not Ready, through an ExternalName Service in its
    /// namespace.
    pub waker_address: String,
    /// The token broker as workspaces call it; `{namespace}` is the
    /// operator's namespace.
    pub broker_url: String,
    /// Where the broker really listens (`ip:port`), for the policy that
    /// lets a workspace with `spec.github` reach it. Empty: the operator's
    /// pods (by namespace and label) on the broker port.
    pub broker_endpoints: Vec<String>,
    /// The image of build pods (`images/buildkit`: BuildKit, runc and the
    /// runc wrapper a user-namespaced pod needs).
    pub builder_image: String,
    /// The namespace build pods run in (Pod Security `privileged`: their
    /// builder needs SYS_ADMIN in its own user namespace; only the
    /// operator creates pods there).
    pub build_namespace: String,
    /// Registries (`host:port`) builds reach over plain HTTP (test
    /// registries; never for real ones).
    pub insecure_registries: Vec<String>,
}

/// The GitHub App of the token broker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct GithubSettings {
    /// The App's ID (the JWT's issuer). Unset: the broker refuses, saying so.
    pub app_id: Option<String>,
    /// The Secret in the operator's namespace holding the App's private key
    /// (`private-key.pem`). It is never copied anywhere.
    pub app_key_secret: String,
    /// The REST API tokens are minted at.
    pub api_url: String,
    /// The host git's credential helper answers for in workspaces.
    pub git_host: String,
    /// PEM certificates the broker trusts besides the public roots (a
    /// GitHub Enterprise Server behind your own CA).
    pub ca_bundle: Option<String>,
}

impl Default for GithubSettings {
    fn default() -> Self {
        Self {
            app_id: None,
            app_key_secret: "kube-coder-github-app".into(),
            api_url: "https://api.github.com".into(),
            git_host: "github.com".into(),
            ca_bundle: None,
        }
    }
}

/// A model provider: the path prefix on the gateway's model port, the API
/// it speaks (`anthropic`, `openai` or `gemini`: how it takes its key), and
/// the base URL the prefix stands for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelProvider {
    pub name: String,
    pub api: String,
    pub base_url: String,
}

impl ModelProvider {
    /// The providers every cluster starts with.
    pub fn defaults() -> Vec<ModelProvider> {
        [
            ("anthropic", "anthropic", "https://api.anthropic.com"),
            ("openai", "openai", "https://api.openai.com/v1"),
            (
                "gemini",
                "gemini",
                "https://generativelanguage.googleapis.com",
            ),
        ]
        .into_iter()
        .map(|(name, api, url)| ModelProvider {
            name: name.into(),
            api: api.into(),
            base_url: url.into(),
        })
        .collect()
    }

    /// `NAME:API:URL`, as the operator's flag takes it.
    pub fn parse(s: &str) -> Result<ModelProvider, String> {
        let bad = || {
            format!("{s:?} is not a model provider: write NAME:API:URL, e.g. local:openai:https://llm.example.com/v1 (API is anthropic, openai or gemini)")
        };
        let mut parts = s.splitn(3, ':');
        let (Some(name), Some(api), Some(url)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok
            || !["anthropic", "openai", "gemini"].contains(&api)
            || !url.starts_with("https://")
        {
            return Err(bad());
        }
        Ok(ModelProvider {
            name: name.into(),
            api: api.into(),
            base_url: url.into(),
        })
    }
}

impl Settings {
    /// The API server's endpoints (from `api_server_endpoints`): taken out
    /// of every range a workspace, its gateway or a build may reach.
    pub fn api_server_sockets(&self) -> Vec<std::net::SocketAddr> {
        let mut out: Vec<std::net::SocketAddr> = self
            .api_server_endpoints
            .iter()
            .filter_map(|e| e.parse().ok())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The waker's host name and port, from `waker_address` (port 80 when
    /// none is given).
    pub fn waker_target(&self) -> (String, i32) {
        let address = self
            .waker_address
            .replace("{namespace}", &self.operator_namespace);
        match address.rsplit_once(':') {
            Some((host, port)) => match port.parse() {
                Ok(port) => (host.to_string(), port),
                Err(_) => (address, 80),
            },
            None => (address, 80),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image_repository: "ghcr.io/kube-coder/workspace".into(),
            image_tag: env!("CARGO_PKG_VERSION").into(),
            oauth2_proxy_image: "quay.io/oauth2-proxy/oauth2-proxy:v7.12.0".into(),
            operator_namespace: "kube-coder-system".into(),
            ingress_namespace: "ingress-nginx".into(),
            ingress_class: "nginx".into(),
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
            model_providers: ModelProvider::defaults(),
            model_keys_secret: "kube-coder-model-keys".into(),
            model_ca_bundle: None,
            api_server_endpoints: Vec::new(),
            github: GithubSettings::default(),
            broker_url: "http://kube-coder-broker.{namespace}.svc:8443".into(),
            waker_address: "kube-coder-waker.{namespace}.svc:80".into(),
            broker_endpoints: Vec::new(),
            builder_image: "ghcr.io/kube-coder/buildkit:v0.34.2".into(),
            build_namespace: "kube-coder-builds".into(),
            insecure_registries: Vec::new(),
        }
    }
}
