//! `kube-coder operator`: run the reconciler, with `/livez`, `/readyz`
//! and `/metrics` on a small HTTP listener for the Deployment's probes,
//! the GitHub token broker on a listener of its own (workspaces reach
//! that one only), and the waker on a third (the ingress controller's).

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use clap::Args;
use operator::controller::{self, Stats};
use operator::waker::Waker;

use crate::cluster::{self, SettingsArgs};

#[derive(Args, Debug)]
pub struct OperatorArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// Probes and metrics.
    #[arg(
        long,
        env = "KUBE_CODER_OPERATOR_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    listen: SocketAddr,
    /// The GitHub token broker, for workspaces with spec.github.
    #[arg(long, env = "KUBE_CODER_BROKER_LISTEN", default_value = "0.0.0.0:8443")]
    broker_listen: SocketAddr,
    /// The waker: stopped workspaces' hosts lead here (the chart's
    /// kube-coder-waker Service).
    #[arg(long, env = "KUBE_CODER_WAKER_LISTEN", default_value = "0.0.0.0:8090")]
    waker_listen: SocketAddr,
    /// Seconds between activity checks of a running workspace with idle.stopAfter.
    #[arg(long, env = "KUBE_CODER_IDLE_CHECK_SECS", default_value_t = 60)]
    idle_check_secs: u64,
    /// Reconciles running at once (0: no bound). Raise it for an API
    /// server that answers many requests in parallel.
    #[arg(long, env = "KUBE_CODER_CONCURRENT_RECONCILES", default_value_t = 64)]
    concurrent_reconciles: u16,
    /// Log format: text or json.
    #[arg(long, env = "KUBE_CODER_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

fn metrics_text(stats: &Stats) -> String {
    format!(
        "# TYPE kube_coder_operator_reconciles_total counter\nkube_coder_operator_reconciles_total {}\n\
         # TYPE kube_coder_operator_reconcile_failures_total counter\nkube_coder_operator_reconcile_failures_total {}\n\
         # TYPE kube_coder_operator_api_writes_total counter\nkube_coder_operator_api_writes_total {}\n\
         # TYPE kube_coder_operator_api_requests_total counter\nkube_coder_operator_api_requests_total {}\n\
         # TYPE kube_coder_operator_api_watch_requests_total counter\nkube_coder_operator_api_watch_requests_total {}\n",
        stats.reconciles.load(Ordering::Relaxed),
        stats.failures.load(Ordering::Relaxed),
        stats.writes.load(Ordering::Relaxed),
        stats.requests.load(Ordering::Relaxed),
        stats.watches.load(Ordering::Relaxed),
    )
}

pub fn run(args: OperatorArgs) -> ExitCode {
    crate::serve::init_logging(&args.log_format);
    cluster::block_on(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let settings: operator::settings::Settings = args.settings.try_into()?;
        let stats = Arc::new(Stats::default());
        let config = kube::Config::infer().await.map_err(|e| {
            format!("cannot find a cluster ({e}); set KUBECONFIG or run inside the cluster")
        })?;
        let client = controller::client::counting_client(config, stats.clone())
            .map_err(|e| format!("cannot build a Kubernetes client: {e}"))?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let scrape = stats.clone();
        let waker_slot = Arc::new(OnceLock::<Arc<Waker>>::new());
        let waker_metrics = waker_slot.clone();
        let app = Router::new()
            .route("/livez", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ok" }))
            .route(
                "/metrics",
                get(move || async move {
                    let wakes = waker_metrics.get().map(|w| w.metrics_text());
                    metrics_text(&scrape) + &wakes.unwrap_or_default()
                }),
            );
        // A pod's stop is SIGTERM: every part hears it, the reconciles in
        // flight finish and the listeners answer what they hold, then go.
        let stop = crate::stop_signal::stop_token("stopping: finishing the reconciles in flight");
        let metrics = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        let broker = tokio::net::TcpListener::bind(args.broker_listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.broker_listen))?;
        // The token broker and builds share the port workspaces may reach,
        // and the workspace identities seen on it.
        let identities = Arc::new(operator::workspace_identity::Identities::default());
        let builds =
            operator::builds::Builds::new(client.clone(), settings.clone(), identities.clone());
        if let Err(e) = builds.sweep_leftovers().await {
            tracing::warn!(error = %e, "cannot delete the build pods an earlier run left");
        }
        let routes = operator::broker::Broker::new(client.clone(), settings.clone(), identities)
            .router()
            .merge(builds.router());
        let broker = operator::serve::until(routes, broker, stop.clone().cancelled_owned());
        let broker = tokio::spawn(broker);
        let waker_listener = tokio::net::TcpListener::bind(args.waker_listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.waker_listen))?;
        let waker_stop = stop.clone();
        let attach = move |ctx, workspaces| {
            let waker = Waker::new(ctx, workspaces);
            let _ = waker_slot.set(waker.clone());
            tokio::spawn(waker.serve(waker_listener, waker_stop.cancelled_owned()));
        };
        tracing::info!(listen = %args.listen, broker = %args.broker_listen, waker = %args.waker_listen, "operator started");
        controller::run(
            client,
            settings,
            controller::Tuning {
                idle_check: Duration::from_secs(args.idle_check_secs.max(1)),
                concurrent_reconciles: args.concurrent_reconciles,
            },
            stats,
            attach,
            stop.cancelled_owned(),
        )
        .await;
        // A client that keeps its connection open does not hold the exit up.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = tokio::join!(metrics, broker);
        })
        .await;
        Ok(())
    })
}
