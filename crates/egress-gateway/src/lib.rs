//! The egress gateway (`kube-coder egress-gateway`): one per workspace
//! namespace when the Workspace lists `spec.network.egress.allowDomains`.
//! The workspace's NetworkPolicy then lets it reach only DNS and this
//! gateway, and its `HTTPS_PROXY`/`HTTP_PROXY` point here; the gateway lets
//! a connection out only to a host name on the list, at addresses it
//! resolved itself and found public. When the Workspace has `spec.models`,
//! a third port takes its model requests and adds the provider keys only
//! this pod can read.
//!
//! - `allow_list.rs` — the list's entries and how a name matches them.
//! - `decision.rs` — the checks in order, and the refusal that names its rule.
//! - `proxy.rs` — the proxy port: CONNECT tunnels and plain-HTTP forwarding.
//! - `admin.rs` — health, metrics and the recent refusals.
//! - `ledger.rs` — every decision logged and counted; refusals kept.
//! - `reload.rs` — the list follows its file (a mounted ConfigMap).
//! - `models/` — the model port: provider keys added here, never in the
//!   workspace; usage counted and held to a monthly budget.

pub mod admin;
pub mod allow_list;
pub mod decision;
pub mod ledger;
pub mod models;
pub mod proxy;
pub mod reload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use workspace::hooks::ssrf::{Resolve, SystemResolver};

use allow_list::AllowList;
pub use decision::Reach;
use decision::{Policy, Refusal};
use ledger::Ledger;
use models::meter::{Meter, UsageStore};
use models::{Models, ModelsSource};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot read the egress allow list {path}: {source}")]
    ReadList {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the egress allow list {path} is not valid: {source}")]
    BadList {
        path: PathBuf,
        source: allow_list::EntryError,
    },
    #[error("cannot watch {path} for changes of the allow list: {source}")]
    Watch {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up DNS resolution: {0}")]
    Resolver(String),
    #[error(transparent)]
    Models(#[from] models::ModelsError),
}

/// How the gateway runs (the flags of `kube-coder egress-gateway`).
#[derive(Debug, Clone)]
pub struct Config {
    /// The proxy port the workspace's HTTPS_PROXY points at.
    pub listen: SocketAddr,
    /// Health, metrics, recent refusals.
    pub admin_listen: SocketAddr,
    /// The allow list, one entry per line; followed as it changes.
    pub allow_file: PathBuf,
    /// What the gateway may connect to beyond public addresses, and the
    /// API server's addresses it never connects to.
    pub reach: Reach,
    pub connect_timeout: Duration,
    /// The model port, when the workspace has model providers.
    pub models: Option<(SocketAddr, ModelsSource)>,
}

/// What every request reads: the list in force, the resolver, the ledger.
pub struct Gateway {
    list: RwLock<Arc<AllowList>>,
    reach: Reach,
    resolver: Arc<dyn Resolve>,
    pub ledger: Ledger,
    connect_timeout: Duration,
    pub models: Option<Models>,
    pub meter: Arc<Meter>,
    registry: Registry,
}

impl Gateway {
    pub fn new(
        list: AllowList,
        reach: Reach,
        resolver: Arc<dyn Resolve>,
        connect_timeout: Duration,
        models: Option<Models>,
    ) -> Gateway {
        let mut registry = Registry::default();
        let ledger = Ledger::new(&mut registry);
        let meter = Arc::new(Meter::new(&mut registry));
        Gateway {
            list: RwLock::new(Arc::new(list)),
            reach,
            resolver,
            ledger,
            connect_timeout,
            models,
            meter,
            registry,
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode_metrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn list(&self) -> Arc<AllowList> {
        self.list.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace_list(&self, list: AllowList) {
        *self.list.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
    }

    pub async fn check(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let list = self.list();
        Policy {
            list: &list,
            reach: &self.reach,
        }
        .check(self.resolver.as_ref(), host, port)
        .await
    }
}

/// The two listeners, bound (so a port in use fails before anything runs).
pub struct Bound {
    proxy: TcpListener,
    admin: TcpListener,
    models: Option<TcpListener>,
    gateway: Arc<Gateway>,
    config: Config,
}

impl Bound {
    pub fn proxy_addr(&self) -> std::io::Result<SocketAddr> {
        self.proxy.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    pub fn models_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.models.as_ref().map(TcpListener::local_addr)
    }
}

/// Reads the list (and the model settings) and binds the ports.
pub async fn bind(config: Config) -> Result<Bound, GatewayError> {
    let list = reload::load(&config.allow_file)?;
    let resolver: Arc<dyn Resolve> =
        Arc::new(SystemResolver::new().map_err(GatewayError::Resolver)?);
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })
    };
    let proxy = bind(config.listen).await?;
    let admin = bind(config.admin_listen).await?;
    tracing::info!(entries = list.len(), file = %config.allow_file.display(), "egress allow list loaded");
    let (models, models_listener) = match &config.models {
        Some((addr, source)) => {
            let models = Models::load(source.clone(), resolver.clone(), config.reach.clone())?;
            let loaded = models.current();
            tracing::info!(
                providers = loaded.config.providers.len(),
                budget = ?loaded.config.monthly_token_budget,
                "model settings loaded"
            );
            (Some(models), Some(bind(*addr).await?))
        }
        None => (None, None),
    };
    let gateway = Arc::new(Gateway::new(
        list,
        config.reach.clone(),
        resolver,
        config.connect_timeout,
        models,
    ));
    Ok(Bound {
        proxy,
        admin,
        models: models_listener,
        gateway,
        config,
    })
}

/// Serves until `shutdown`; open tunnels end with it. The month's model
/// usage is loaded from and saved to `usage_store` (in memory only without
/// one).
pub async fn run(
    bound: Bound,
    usage_store: Option<Arc<dyn UsageStore>>,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let Bound {
        proxy,
        admin,
        models,
        gateway,
        config,
    } = bound;
    reload::watch_list(&config.allow_file, gateway.clone(), shutdown.clone())?;
    if let Some(m) = &gateway.models {
        let dirs: Vec<PathBuf> = models::watched(&m.source)
            .into_iter()
            .filter(|d| d.is_dir())
            .map(PathBuf::from)
            .collect();
        let gw = gateway.clone();
        reload::watch(&dirs, shutdown.clone(), move |_| {
            if let Some(m) = &gw.models {
                if let Err(e) = m.reload() {
                    tracing::warn!(error = %e, "keeping the model settings in force");
                }
            }
        })?;
    }
    let keeper = match usage_store {
        Some(store) => {
            models::meter::load(&gateway.meter, store.as_ref()).await;
            tokio::spawn(models::meter::keep(
                gateway.meter.clone(),
                store,
                shutdown.clone(),
            ))
        }
        None => tokio::spawn(async {}),
    };
    let models_loop = {
        let gw = gateway.clone();
        let shutdown = shutdown.clone();
        async move {
            if let Some(listener) = models {
                accept(listener, shutdown, move |_| {
                    let gw = gw.clone();
                    service_fn(move |req| models::forward::handle(gw.clone(), req))
                })
                .await
            }
        }
    };
    let admin_loop = {
        let gw = gateway.clone();
        accept(admin, shutdown.clone(), move |_| {
            let gw = gw.clone();
            service_fn(move |req| admin::handle(gw.clone(), req))
        })
    };
    let proxy_loop = {
        let gw = gateway.clone();
        accept(
            proxy,
            shutdown.clone(),
            move |conn_shutdown: CancellationToken| {
                let gw = gw.clone();
                service_fn(move |req| proxy::handle(gw.clone(), req, conn_shutdown.clone()))
            },
        )
    };
    tokio::join!(admin_loop, proxy_loop, models_loop);
    // The last usage is saved before the process ends.
    let _ = keeper.await;
    Ok(())
}

/// A connection that sends no request head in this long is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until `shutdown`, each served with upgrades
/// (CONNECT) by the service `make` builds for it.
async fn accept<S, M>(listener: TcpListener, shutdown: CancellationToken, make: M)
where
    M: Fn(CancellationToken) -> S,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<proxy::Body>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    loop {
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let service = make(shutdown.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .preserve_header_case(true)
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "proxy connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {}
            }
        });
    }
}
