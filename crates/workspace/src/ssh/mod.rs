//! SSH into the workspace, built into `kube-coder serve` (`--ssh-listen`,
//! off by default): no root, no sidecar, no sshd. A connection gets in with
//! a key listed in the authorized-keys file (read at each attempt, so a
//! change applies without a restart); any login name is the workspace's
//! one user. The host key is generated once and kept in the data dir, so
//! clients' known_hosts stay valid across restarts. In read-only mode every
//! login is refused, saying why.
//!
//! - `host_key.rs` — the server's key, made once and kept.
//! - `authorized.rs` — whether a key may log in.
//! - `session.rs` — one connection: commands with their exit status, on a
//!   terminal when asked, and local port forwarding to the workspace's own
//!   ports.
//! - `sftp.rs` — the `sftp` subsystem (`sftp`, and `scp`, which speaks it).

mod authorized;
mod host_key;
mod session;
mod sftp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::server::Server as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How the SSH server runs (the flags of `kube-coder serve`).
#[derive(Debug, Clone)]
pub struct SshConfig {
    pub listen: SocketAddr,
    /// One OpenSSH public key per line.
    pub authorized_keys: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot listen for SSH on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the SSH host key {path}: {why}")]
    HostKey { path: PathBuf, why: String },
}

/// What every session needs.
pub(crate) struct Shared {
    pub authorized_keys: PathBuf,
    pub home: PathBuf,
    pub read_only: bool,
    /// What every command and terminal finds in its environment, as in
    /// tasks (where this server's API is, for `kube-coder build`).
    pub env: Vec<(String, String)>,
}

/// The listener, bound, and the server's settings.
pub struct SshServer {
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
}

impl SshServer {
    /// Loads (or makes) the host key and binds the port.
    pub async fn bind(
        config: &SshConfig,
        data_dir: &std::path::Path,
        home: PathBuf,
        read_only: bool,
        env: Vec<(String, String)>,
    ) -> Result<SshServer, SshError> {
        let key_path = data_dir.join("ssh_host_ed25519_key");
        let key = host_key::load_or_create(&key_path).map_err(|why| SshError::HostKey {
            path: key_path.clone(),
            why,
        })?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| SshError::Bind {
                addr: config.listen,
                source,
            })?;
        let server_config = russh::server::Config {
            keys: vec![key],
            // A wrong key waits as long as a right one would, so timing
            // tells nothing; the first attempt is not slowed.
            auth_rejection_time: Duration::from_secs(1),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: Some(Duration::from_secs(3600)),
            keepalive_interval: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        Ok(SshServer {
            listener,
            config: Arc::new(server_config),
            shared: Arc::new(Shared {
                authorized_keys: config.authorized_keys.clone(),
                home,
                read_only,
                env,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`; open sessions are told the server stops.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut server = session::Server {
            shared: self.shared,
        };
        let running = server.run_on_socket(self.config, &self.listener);
        let handle = running.handle();
        tokio::select! {
            r = running => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "the SSH server stopped");
                }
            }
            _ = shutdown.cancelled() => {
                handle.shutdown("the workspace server is stopping".into());
            }
        }
    }
}
