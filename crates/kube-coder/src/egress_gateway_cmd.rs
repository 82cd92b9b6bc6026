//! `kube-coder egress-gateway`: the per-workspace egress proxy the operator
//! runs when a Workspace lists `spec.network.egress.allowDomains`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

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
    /// Seconds to wait for an upstream to accept a connection.
    #[arg(long, default_value_t = 10)]
    connect_timeout_secs: u64,
    /// Log format: text or json.
    #[arg(long, env = "KUBE_CODER_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

/// SIGINT or SIGTERM (a pod's stop).
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

pub fn run(args: EgressGatewayArgs) -> ExitCode {
    crate::serve::init_logging(&args.log_format);
    crate::cluster::block_on(async move {
        let config = egress_gateway::Config {
            listen: args.listen,
            admin_listen: args.admin_listen,
            allow_file: args.allow_file,
            allow_cidrs: args.allow_cidrs,
            connect_timeout: Duration::from_secs(args.connect_timeout_secs.max(1)),
        };
        let bound = egress_gateway::bind(config)
            .await
            .map_err(|e| e.to_string())?;
        let (proxy, admin) = (
            bound.proxy_addr().map_err(|e| e.to_string())?,
            bound.admin_addr().map_err(|e| e.to_string())?,
        );
        // Tests read the ports from this line.
        println!("kube-coder egress gateway: proxy on {proxy}, admin on {admin}");
        tracing::info!(%proxy, %admin, "egress gateway started");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop_signal().await;
            stop.cancel();
        });
        egress_gateway::run(bound, shutdown)
            .await
            .map_err(|e| e.to_string())
    })
}
