//! Model keys that never enter the workspace: the gateway's model port
//! (`/anthropic/…`, `/openai/…`, `/gemini/…`, or any provider the operator
//! lists) takes a workspace's model requests, drops whatever credential
//! the client sent (a placeholder), adds the provider's key from the
//! gateway's own Secret volume, and forwards over TLS; answers stream back
//! unbuffered while their token usage is read, counted and held against
//! the workspace's monthly budget.
//!
//! - `config.rs` — the providers, the budget, the keys' files.
//! - `forward.rs` — one request on the model port.
//! - `usage.rs` — tokens read from an answer as it streams by.
//! - `meter.rs` — the month's usage, the budget, and where it is kept.

pub mod config;
pub mod forward;
pub mod meter;
pub mod usage;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use workspace::hooks::ssrf::Resolve;

use crate::decision::{public_addresses, Reach, Refusal};
use config::{ConfigError, ModelsConfig};

/// How long an answer may stay silent (a model thinking) before the
/// gateway gives up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the model settings come from.
#[derive(Debug, Clone)]
pub struct ModelsSource {
    /// `models.json`, written by the operator; followed as it changes.
    pub config_file: PathBuf,
    /// One file per provider holding its key (the Secret's volume).
    pub keys_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the model keys in {path}: {source}")]
    Keys {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot build the HTTPS client for model providers: {0}")]
    Client(String),
}

/// The settings in force, and the client built for them.
pub struct Loaded {
    pub config: ModelsConfig,
    keys: BTreeMap<String, String>,
    pub client: reqwest::Client,
}

impl Loaded {
    pub fn key(&self, provider: &str) -> Option<&str> {
        self.keys.get(provider).map(String::as_str)
    }
}

/// The model half of the gateway: settings (replaced when their files
/// change) and what every request needs to check an upstream's address.
pub struct Models {
    pub source: ModelsSource,
    loaded: RwLock<Arc<Loaded>>,
    resolver: Arc<dyn Resolve>,
    reach: Reach,
}

/// reqwest's lookups go through the same address checks as the proxy's:
/// a provider's name must resolve to public addresses (or allowed ranges).
struct CheckedResolver {
    resolver: Arc<dyn Resolve>,
    reach: Reach,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.resolver.clone();
        let reach = self.reach.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = public_addresses(resolver.as_ref(), &reach, &host, 0)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl Models {
    pub fn load(
        source: ModelsSource,
        resolver: Arc<dyn Resolve>,
        reach: Reach,
    ) -> Result<Models, ModelsError> {
        let loaded = read(&source, &resolver, &reach)?;
        Ok(Models {
            source,
            loaded: RwLock::new(Arc::new(loaded)),
            resolver,
            reach,
        })
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the files again; on an error the settings in force stay.
    pub fn reload(&self) -> Result<(), ModelsError> {
        let loaded = read(&self.source, &self.resolver, &self.reach)?;
        tracing::info!(
            providers = loaded.config.providers.len(),
            keys = loaded.keys.len(),
            "model settings reloaded"
        );
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// A provider's base URL naming an address rather than a host skips
    /// the resolver; it is held to the same rule here.
    pub fn check_literal(&self, host: &str) -> Result<(), Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(addr) = bare.parse::<IpAddr>() else {
            return Ok(());
        };
        match self.reach.refusal(host, addr, None) {
            Some(refused) => Err(refused),
            None => Ok(()),
        }
    }
}

fn read(
    source: &ModelsSource,
    resolver: &Arc<dyn Resolve>,
    reach: &Reach,
) -> Result<Loaded, ModelsError> {
    let config = ModelsConfig::load(&source.config_file)?;
    let keys = config::load_keys(&source.keys_dir).map_err(|e| ModelsError::Keys {
        path: source.keys_dir.display().to_string(),
        source: e,
    })?;
    let client = client(&config, resolver.clone(), reach.clone())?;
    Ok(Loaded {
        config,
        keys,
        client,
    })
}

fn client(
    config: &ModelsConfig,
    resolver: Arc<dyn Resolve>,
    reach: Reach,
) -> Result<reqwest::Client, ModelsError> {
    let mut builder = reqwest::Client::builder()
        // The gateway is the way out; it never goes through a proxy itself.
        .no_proxy()
        .dns_resolver(Arc::new(CheckedResolver { resolver, reach }))
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(READ_TIMEOUT)
        // A redirect would carry the key to wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true);
    if let Some(pem) = &config.ca_bundle {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| ConfigError::Ca(e.to_string()))?;
        if certs.is_empty() {
            return Err(ConfigError::Ca("no PEM certificate in it".into()).into());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ModelsError::Client(e.to_string()))
}

/// The directories whose changes mean the settings must be read again.
pub fn watched(source: &ModelsSource) -> Vec<&Path> {
    let config_dir = source
        .config_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    vec![config_dir, source.keys_dir.as_path()]
}
