//! What every cluster-side subcommand shares: the settings flags, a
//! client from the admin's kubeconfig with an error that says what to do,
//! and the runtime.

use std::process::ExitCode;

use clap::Args;
use k8s_openapi::api::core::v1::Toleration;
use operator::settings::{ModelProvider, Settings};

/// Cluster-wide settings (the operator's flags; `render` takes them too).
#[derive(Args, Debug, Clone)]
pub struct SettingsArgs {
    /// Workspace image repository used when a Workspace names none.
    #[arg(long, env = "KUBE_CODER_IMAGE_REPOSITORY", default_value_t = Settings::default().image_repository)]
    image_repository: String,
    /// Workspace image tag used when a Workspace names none.
    #[arg(long, env = "KUBE_CODER_IMAGE_TAG", default_value_t = Settings::default().image_tag)]
    image_tag: String,
    /// oauth2-proxy image for workspaces with auth.type oauth2.
    #[arg(long, env = "KUBE_CODER_OAUTH2_PROXY_IMAGE", default_value_t = Settings::default().oauth2_proxy_image)]
    oauth2_proxy_image: String,
    /// The operator's namespace (source of copied Secrets; allowed to reach the api port).
    #[arg(long, env = "POD_NAMESPACE", default_value_t = Settings::default().operator_namespace)]
    operator_namespace: String,
    /// Namespace of the ingress controller (the only allowed source of traffic).
    #[arg(long, env = "KUBE_CODER_INGRESS_NAMESPACE", default_value_t = Settings::default().ingress_namespace)]
    ingress_namespace: String,
    /// Ingress class of that controller, given to every workspace's Ingresses.
    #[arg(long, env = "KUBE_CODER_INGRESS_CLASS", default_value_t = Settings::default().ingress_class)]
    ingress_class: String,
    /// Namespace of cluster DNS.
    #[arg(long, env = "KUBE_CODER_DNS_NAMESPACE", default_value_t = Settings::default().dns_namespace)]
    dns_namespace: String,
    /// Label (key=value) of the cluster DNS pods.
    #[arg(long, env = "KUBE_CODER_DNS_POD_LABEL", default_value_t = Settings::default().dns_pod_label)]
    dns_pod_label: String,
    /// A workspace's api URL for idle checks; {namespace} is replaced.
    #[arg(long, env = "KUBE_CODER_ACTIVITY_URL", default_value_t = Settings::default().activity_url)]
    activity_url: String,
    /// A label (key=value) a node must carry to run workspace pods; repeat
    /// or separate with commas for several.
    #[arg(long = "workspace-node-selector", env = "KUBE_CODER_WORKSPACE_NODE_SELECTOR",
          value_delimiter = ',', value_parser = parse_label)]
    node_selector: Vec<(String, String)>,
    /// A taint workspace pods tolerate: key[=value]:Effect (NoSchedule,
    /// PreferNoSchedule or NoExecute); repeat or separate with commas.
    #[arg(long = "workspace-toleration", env = "KUBE_CODER_WORKSPACE_TOLERATIONS",
          value_delimiter = ',', value_parser = parse_toleration)]
    tolerations: Vec<Toleration>,
    /// Host names every workspace with an egress allow list may reach
    /// (`network.egress.allowDomains`), before its own; repeat or separate
    /// with commas.
    #[arg(
        long = "egress-default-domain",
        env = "KUBE_CODER_EGRESS_DEFAULT_DOMAINS",
        value_delimiter = ','
    )]
    egress_default_domains: Vec<String>,
    /// The image egress gateways run (the kube-coder image).
    #[arg(long, env = "KUBE_CODER_EGRESS_GATEWAY_IMAGE", default_value_t = Settings::default().egress_gateway_image)]
    egress_gateway_image: String,
    /// The image build pods run (images/buildkit).
    #[arg(long, env = "KUBE_CODER_BUILDER_IMAGE", default_value_t = Settings::default().builder_image)]
    builder_image: String,
    /// The namespace build pods run in (made by the operator; Pod Security
    /// privileged, only the operator creates pods there).
    #[arg(long, env = "KUBE_CODER_BUILD_NAMESPACE", default_value_t = Settings::default().build_namespace)]
    build_namespace: String,
    /// A registry (host:port) builds reach over plain HTTP: for test
    /// registries only; repeat or separate with commas.
    #[arg(
        long = "build-insecure-registry",
        env = "KUBE_CODER_BUILD_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure_registries: Vec<String>,
    /// A model provider for workspaces with `spec.models`: NAME:API:URL
    /// (API: anthropic, openai or gemini); repeat or separate with commas.
    /// Unset: anthropic, openai and gemini at their public APIs.
    #[arg(long = "model-provider", env = "KUBE_CODER_MODEL_PROVIDERS",
          value_delimiter = ',', value_parser = ModelProvider::parse)]
    model_providers: Vec<ModelProvider>,
    /// The Secret in the operator's namespace holding the model keys, one
    /// entry per provider name.
    #[arg(long, env = "KUBE_CODER_MODEL_KEYS_SECRET", default_value_t = Settings::default().model_keys_secret)]
    model_keys_secret: String,
    /// PEM certificates egress gateways trust besides the public roots (a
    /// model provider behind your own CA).
    #[arg(long, env = "KUBE_CODER_MODEL_CA_FILE")]
    model_ca_file: Option<std::path::PathBuf>,
    /// Where the API server listens (ip:port), for the policy that lets a
    /// gateway keep its model usage, and the endpoints no range a workspace
    /// may reach opens; repeat or separate with commas. Unset: read from
    /// the `kubernetes` EndpointSlice at start.
    #[arg(long = "api-server-endpoint", env = "KUBE_CODER_API_SERVER_ENDPOINTS",
          value_delimiter = ',', value_parser = parse_endpoint)]
    api_server_endpoints: Vec<String>,
    /// The GitHub App ID the token broker mints installation tokens as.
    /// Unset: the broker refuses, saying so.
    #[arg(long, env = "KUBE_CODER_GITHUB_APP_ID")]
    github_app_id: Option<String>,
    /// The Secret in the operator's namespace with the App's private key
    /// (private-key.pem). It is never copied anywhere.
    #[arg(long, env = "KUBE_CODER_GITHUB_APP_KEY_SECRET", default_value_t = Settings::default().github.app_key_secret)]
    github_app_key_secret: String,
    /// The GitHub REST API (an Enterprise Server's: https://HOST/api/v3).
    #[arg(long, env = "KUBE_CODER_GITHUB_API_URL", default_value_t = Settings::default().github.api_url)]
    github_api_url: String,
    /// The host git in workspaces asks the broker's credential helper for.
    #[arg(long, env = "KUBE_CODER_GITHUB_GIT_HOST", default_value_t = Settings::default().github.git_host)]
    github_git_host: String,
    /// PEM certificates the broker trusts besides the public roots.
    #[arg(long, env = "KUBE_CODER_GITHUB_CA_FILE")]
    github_ca_file: Option<std::path::PathBuf>,
    /// The broker's URL as workspaces call it ({namespace}: the operator's).
    #[arg(long, env = "KUBE_CODER_BROKER_URL", default_value_t = Settings::default().broker_url)]
    broker_url: String,
    /// Where the broker really listens (ip:port), for the workspaces'
    /// egress policy; repeat or separate with commas. Unset: the operator's
    /// pods on port 8443.
    #[arg(long = "broker-endpoint", env = "KUBE_CODER_BROKER_ENDPOINTS",
          value_delimiter = ',', value_parser = parse_endpoint)]
    broker_endpoints: Vec<String>,
    /// The waker as the ingress controller reaches it (host:port;
    /// {namespace}: the operator's): stopped workspaces' hosts lead there.
    #[arg(long, env = "KUBE_CODER_WAKER_ADDRESS", default_value_t = Settings::default().waker_address)]
    waker_address: String,
}

fn parse_endpoint(s: &str) -> Result<String, String> {
    s.parse::<std::net::SocketAddr>()
        .map(|a| a.to_string())
        .map_err(|_| format!("{s:?} is not an endpoint: write ip:port, e.g. 10.0.0.1:6443"))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not a label: write key=value")),
    }
}

fn parse_toleration(s: &str) -> Result<Toleration, String> {
    let bad = || {
        format!("{s:?} is not a toleration: write key[=value]:Effect, e.g. dedicated=workspaces:NoSchedule")
    };
    let (kv, effect) = s.rsplit_once(':').ok_or_else(bad)?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!(
            "{}; the effect is NoSchedule, PreferNoSchedule or NoExecute",
            bad()
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(bad());
    }
    Ok(Toleration {
        key: Some(key.into()),
        operator: Some(if value.is_some() { "Equal" } else { "Exists" }.into()),
        value,
        effect: Some(effect.into()),
        ..Default::default()
    })
}

impl TryFrom<SettingsArgs> for Settings {
    type Error = String;

    fn try_from(a: SettingsArgs) -> Result<Self, String> {
        let model_ca_bundle = match &a.model_ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read --model-ca-file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(Settings {
            image_repository: a.image_repository,
            image_tag: a.image_tag,
            oauth2_proxy_image: a.oauth2_proxy_image,
            operator_namespace: a.operator_namespace,
            ingress_namespace: a.ingress_namespace,
            ingress_class: a.ingress_class,
            dns_namespace: a.dns_namespace,
            dns_pod_label: a.dns_pod_label,
            activity_url: a.activity_url,
            node_selector: a.node_selector.into_iter().collect(),
            tolerations: a.tolerations,
            egress_default_domains: a.egress_default_domains,
            egress_gateway_image: a.egress_gateway_image,
            builder_image: a.builder_image,
            build_namespace: a.build_namespace,
            insecure_registries: a.insecure_registries,
            model_providers: if a.model_providers.is_empty() {
                ModelProvider::defaults()
            } else {
                a.model_providers
            },
            model_keys_secret: a.model_keys_secret,
            model_ca_bundle,
            api_server_endpoints: a.api_server_endpoints,
            github: operator::settings::GithubSettings {
                app_id: a.github_app_id,
                app_key_secret: a.github_app_key_secret,
                api_url: a.github_api_url,
                git_host: a.github_git_host,
                ca_bundle: match &a.github_ca_file {
                    Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                        format!("cannot read --github-ca-file {}: {e}", path.display())
                    })?),
                    None => None,
                },
            },
            broker_url: a.broker_url,
            waker_address: a.waker_address,
            broker_endpoints: a.broker_endpoints,
        })
    }
}

/// A client from KUBECONFIG / ~/.kube/config / the in-cluster account.
pub async fn client() -> Result<kube::Client, String> {
    // Both ring and aws-lc-rs are linked in; pick one before any TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    kube::Client::try_default()
        .await
        .map_err(|_| format!("cannot reach a Kubernetes cluster: {}", why_no_config()))
}

/// Why no cluster configuration could be loaded, as one sentence naming
/// the file that was tried (kube's own error nests every attempt).
fn why_no_config() -> String {
    let first_line =
        |e: &dyn std::fmt::Display| e.to_string().lines().next().unwrap_or_default().to_string();
    let try_file = |path: &std::path::Path, from: &str| {
        match kube::config::Kubeconfig::read_from(path) {
        Err(_) if !path.exists() => format!(
            "{from} names {}, which does not exist; point KUBECONFIG at your cluster's kubeconfig file",
            path.display()
        ),
        Err(e) => format!(
            "{} (from {from}) is not a kubeconfig file kube-coder can read ({})",
            path.display(),
            first_line(&e)
        ),
        Ok(_) => format!(
            "{} (from {from}) has no usable current context; choose one with kubectl config use-context",
            path.display()
        ),
    }
    };
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let first = std::env::split_paths(&list).next().unwrap_or_default();
        return try_file(&first, "KUBECONFIG");
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty()) {
        return "this pod's service account could not be read (is automountServiceAccountToken off?)"
            .into();
    }
    match std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".kube/config")) {
        Some(p) if p.exists() => try_file(&p, "the default location"),
        Some(p) => format!(
            "KUBECONFIG is not set and {} does not exist; set KUBECONFIG to your cluster's kubeconfig file",
            p.display()
        ),
        None => "KUBECONFIG is not set and there is no HOME; set KUBECONFIG to your cluster's kubeconfig file"
            .into(),
    }
}

/// Run `body` on a fresh runtime; errors print as one line and exit 1.
pub fn block_on<F>(body: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kube-coder: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("kube-coder: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The API server's own words for a refused request.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_are_written_as_taints_are() {
        let t = parse_toleration("dedicated=workspaces:NoSchedule").unwrap();
        assert_eq!(t.key.as_deref(), Some("dedicated"));
        assert_eq!(t.value.as_deref(), Some("workspaces"));
        assert_eq!(t.operator.as_deref(), Some("Equal"));
        assert_eq!(t.effect.as_deref(), Some("NoSchedule"));
        let t = parse_toleration("kube-coder.dev/node:NoExecute").unwrap();
        assert_eq!(t.operator.as_deref(), Some("Exists"));
        assert_eq!(t.value, None);
        let err = parse_toleration("dedicated=workspaces").unwrap_err();
        assert!(err.contains("key[=value]:Effect"), "{err}");
        let err = parse_toleration("a:Sometimes").unwrap_err();
        assert!(
            err.contains("NoSchedule, PreferNoSchedule or NoExecute"),
            "{err}"
        );
        assert!(parse_label("zone=a").is_ok());
        assert!(parse_label("=a").unwrap_err().contains("key=value"));
    }
}
