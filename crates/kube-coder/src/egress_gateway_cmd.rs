//! `kube-coder egress-gateway`: the per-workspace egress proxy the operator
//! runs when a Workspace lists `spec.network.egress.allowDomains` or has
//! model providers (`spec.models`); and where it keeps the month's model
//! usage in the cluster (a ConfigMap only the gateway may write).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use clap::Args;
use egress_gateway::models::meter::{FileStore, MonthUsage, UsageStore};
use futures_util::future::BoxFuture;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

/// The ConfigMap's key holding the month's usage.
const USAGE_KEY: &str = "usage.json";

/// The month's usage in a ConfigMap the operator created and only the
/// gateway's ServiceAccount may change; written with server-side apply
/// under the gateway's own name, so the operator's applies leave it be.
struct ConfigMapStore {
    api: Api<ConfigMap>,
    name: String,
}

impl ConfigMapStore {
    async fn new(name: String) -> Result<ConfigMapStore, String> {
        let client = kube::Client::try_default().await.map_err(|e| {
            format!("--usage-configmap needs the cluster's API (in a pod with a ServiceAccount token): {e}")
        })?;
        let api = Api::default_namespaced(client);
        Ok(ConfigMapStore { api, name })
    }
}

impl UsageStore for ConfigMapStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<MonthUsage>, String>> {
        Box::pin(async move {
            let cm = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|e| format!("cannot read the ConfigMap {}: {e}", self.name))?;
            let Some(text) = cm
                .and_then(|c| c.data)
                .and_then(|mut d| d.remove(USAGE_KEY))
            else {
                return Ok(None);
            };
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("the ConfigMap {} holds no usage: {e}", self.name))
        })
    }

    fn save<'a>(&'a self, usage: &'a MonthUsage) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let text = serde_json::to_string(usage).map_err(|e| e.to_string())?;
            let patch = serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": self.name},
                "data": {USAGE_KEY: text},
            });
            self.api
                .patch(
                    &self.name,
                    &PatchParams::apply("kube-coder-egress-gateway"),
                    &Patch::Apply(&patch),
                )
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot write the ConfigMap {}: {e}", self.name))
        })
    }
}

#[derive(Args, Debug)]
pub struct EgressGatewayArgs {
    /// The proxy port (the workspace's HTTPS_PROXY and HTTP_PROXY).
    #[arg(long, env = "KUBE_CODER_EGRESS_LISTEN", default_value = "0.0.0.0:3128")]
    listen: SocketAddr,
    /// Health, metrics and recent refusals.
    #[arg(
        long,
        env = "KUBE_CODER_EGRESS_ADMIN_LISTEN",
        default_value = "0.0.0.0:3129"
    )]
    admin_listen: SocketAddr,
    /// The allow list: one host name per line (`*.example.com` for the names
    /// below it, `name:port` for a port other than 80 and 443). Followed as
    /// it changes.
    #[arg(long, env = "KUBE_CODER_EGRESS_ALLOW_FILE")]
    allow_file: PathBuf,
    /// A private range the gateway may reach all the same (repeatable; the
    /// Workspace's allowCIDRs).
    #[arg(
        long = "allow-cidr",
        env = "KUBE_CODER_EGRESS_ALLOW_CIDRS",
        value_delimiter = ','
    )]
    allow_cidrs: Vec<IpNet>,
    /// An endpoint of the API server (ip:port), never connected to whatever
    /// the allowed ranges hold (repeatable; the operator passes the real
    /// ones; the `kubernetes` Service's is added from the pod's environment).
    #[arg(long = "api-server-endpoint", value_delimiter = ',')]
    api_server_endpoints: Vec<SocketAddr>,
    /// The model port (the workspace's ANTHROPIC_BASE_URL and the like);
    /// served when `--models-file` is given.
    #[arg(long, env = "KUBE_CODER_MODELS_LISTEN", default_value = "0.0.0.0:3130")]
    models_listen: SocketAddr,
    /// The model providers and the monthly budget (JSON, written by the
    /// operator). Followed as it changes.
    #[arg(long, env = "KUBE_CODER_MODELS_FILE")]
    models_file: Option<PathBuf>,
    /// One file per provider holding its key (a Secret's volume, mounted
    /// into the gateway only). Followed as it changes.
    #[arg(
        long,
        env = "KUBE_CODER_MODEL_KEYS_DIR",
        default_value = "/etc/kube-coder/model-keys"
    )]
    model_keys_dir: PathBuf,
    /// Keep the month's model usage in this file.
    #[arg(long, conflicts_with = "usage_configmap")]
    usage_file: Option<PathBuf>,
    /// Keep the month's model usage in this ConfigMap of the gateway's own
    /// namespace (in a cluster; needs get and patch on it).
    #[arg(long)]
    usage_configmap: Option<String>,
    /// Seconds to wait for an upstream to accept a connection.
    #[arg(long, default_value_t = 10)]
    connect_timeout_secs: u64,
    /// Log format: text or json.
    #[arg(long, env = "KUBE_CODER_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

/// The `kubernetes` Service's address and port, which the kubelet puts in
/// every pod's environment (a gateway outside a cluster has none).
fn service_endpoint() -> Option<SocketAddr> {
    let host: IpAddr = std::env::var("KUBERNETES_SERVICE_HOST")
        .ok()?
        .parse()
        .ok()?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT")
        .ok()?
        .parse()
        .ok()?;
    Some(SocketAddr::new(host, port))
}

pub fn run(args: EgressGatewayArgs) -> ExitCode {
    crate::serve::init_logging(&args.log_format);
    crate::cluster::block_on(async move {
        let config = egress_gateway::Config {
            listen: args.listen,
            admin_listen: args.admin_listen,
            allow_file: args.allow_file,
            reach: egress_gateway::Reach {
                allow_cidrs: args.allow_cidrs,
                api_server: args
                    .api_server_endpoints
                    .into_iter()
                    .chain(service_endpoint())
                    .collect(),
            },
            connect_timeout: Duration::from_secs(args.connect_timeout_secs.max(1)),
            models: args.models_file.map(|config_file| {
                (
                    args.models_listen,
                    egress_gateway::models::ModelsSource {
                        config_file,
                        keys_dir: args.model_keys_dir,
                    },
                )
            }),
        };
        let store: Option<Arc<dyn UsageStore>> = match (args.usage_file, args.usage_configmap) {
            (Some(path), _) => Some(Arc::new(FileStore(path))),
            (None, Some(name)) => Some(Arc::new(ConfigMapStore::new(name).await?)),
            (None, None) => None,
        };
        let bound = egress_gateway::bind(config)
            .await
            .map_err(|e| e.to_string())?;
        let (proxy, admin) = (
            bound.proxy_addr().map_err(|e| e.to_string())?,
            bound.admin_addr().map_err(|e| e.to_string())?,
        );
        let models = match bound.models_addr() {
            Some(addr) => format!(", models on {}", addr.map_err(|e| e.to_string())?),
            None => String::new(),
        };
        // Tests read the ports from this line.
        println!("kube-coder egress gateway: proxy on {proxy}, admin on {admin}{models}");
        tracing::info!(%proxy, %admin, "egress gateway started");
        let shutdown = crate::stop_signal::stop_token("egress gateway stopping");
        egress_gateway::run(bound, store, shutdown)
            .await
            .map_err(|e| e.to_string())
    })
}
