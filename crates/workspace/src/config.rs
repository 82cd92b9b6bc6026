//! The server's configuration as plain data, and the rules that make a
//! configuration acceptable.
//!
//! The binary turns flags, environment variables and the optional config file
//! into a [`ServeConfig`]; nothing in this crate reads the environment itself.
//! [`ServeConfig::validate`] refuses unsafe combinations before anything binds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

/// How the dashboard listener authenticates browsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// HTTP basic auth checked by this server against an htpasswd file.
    Basic,
    /// Identity headers from oauth2-proxy, honoured only from trusted peers.
    Oauth2,
    /// A session cookie obtained by presenting the API token once.
    Token,
    /// No authentication: a public, read-only demo.
    None,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Basic => "basic",
            AuthMode::Oauth2 => "oauth2",
            AuthMode::Token => "token",
            AuthMode::None => "none",
        }
    }
}

/// Which identity headers the login proxy sets. Exactly one family is
/// read: the proxy overwrites (or strips) its own family, but passes the
/// other through from the client untouched, so reading both would let a
/// logged-in person claim anyone's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentityHeaders {
    /// `X-Forwarded-User` / `X-Forwarded-Email`: oauth2-proxy as the
    /// upstream proxy (how the operator runs it).
    #[default]
    Forwarded,
    /// `X-Auth-Request-User` / `X-Auth-Request-Email`: an ingress that asks
    /// oauth2-proxy per request (nginx `auth_request`) and sets them.
    AuthRequest,
}

impl IdentityHeaders {
    /// The (user, email) header names.
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            IdentityHeaders::Forwarded => ("x-forwarded-user", "x-forwarded-email"),
            IdentityHeaders::AuthRequest => ("x-auth-request-user", "x-auth-request-email"),
        }
    }
}

impl FromStr for IdentityHeaders {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x-forwarded" => Ok(IdentityHeaders::Forwarded),
            "x-auth-request" => Ok(IdentityHeaders::AuthRequest),
            other => Err(format!(
                "unknown identity headers {other:?}: use x-forwarded (oauth2-proxy in front) or x-auth-request (ingress auth_request)"
            )),
        }
    }
}

impl FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "basic" => Ok(AuthMode::Basic),
            "oauth2" => Ok(AuthMode::Oauth2),
            "token" => Ok(AuthMode::Token),
            "none" => Ok(AuthMode::None),
            other => Err(format!(
                "unknown auth mode `{other}` (expected basic, oauth2, token or none)"
            )),
        }
    }
}

/// Every limit the server enforces; each is answered with a clear status when hit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON request body (413 above it).
    pub json_body_bytes: usize,
    /// Tasks that may be live (not finished) at once (429 above it).
    pub max_tasks: usize,
    /// Open server-sent-event streams across both listeners (429 above it).
    pub sse_connections: usize,
    /// Output kept per task log; older output is rotated away.
    pub output_log_bytes: u64,
    /// A running task with no output for this long is `waiting_for_input`.
    pub input_idle: Duration,
    /// A connection must send a complete request head within this time,
    /// whether it is new or kept alive after an answer: slow, silent and
    /// idle connections are closed after it.
    pub header_timeout: Duration,
    /// Open connections one peer address may hold on each listener
    /// (further ones are closed at once).
    pub connections_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            json_body_bytes: 1024 * 1024,
            max_tasks: 32,
            sse_connections: 1024,
            output_log_bytes: 8 * 1024 * 1024,
            input_idle: Duration::from_secs(10),
            header_timeout: Duration::from_secs(15),
            connections_per_peer: 256,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The workspace's name (the dashboard header; the Workspace resource's name on a cluster).
    pub name: String,
    /// Where SQLite, task logs, the token file and the tmux socket live.
    pub data_dir: PathBuf,
    /// The workspace root: task workdirs must stay inside it.
    pub home: PathBuf,
    pub listen: SocketAddr,
    pub api_listen: SocketAddr,
    /// The api listener's URL as webhook senders reach it; see
    /// [`ServeConfig::api_url_or_default`].
    pub api_url: Option<String>,
    pub auth: AuthMode,
    pub read_only: bool,
    pub api_token_file: PathBuf,
    /// The key that seals hook and webhook secrets in the database.
    pub secret_key_file: PathBuf,
    /// htpasswd file (bcrypt or argon2 hashes) for `AuthMode::Basic`.
    pub htpasswd_file: Option<PathBuf>,
    /// Honour oauth2-proxy identity headers at all (`TRUSTED_PROXY`).
    pub trusted_proxy: bool,
    /// Peers whose identity headers are believed.
    pub trusted_proxy_cidrs: Vec<IpNet>,
    /// The one family of identity headers those peers set.
    pub identity_headers: IdentityHeaders,
    /// If not empty, only these users or emails may use the dashboard (oauth2).
    pub allowed_users: Vec<String>,
    pub assistants_config: Option<PathBuf>,
    /// The first tmux server's socket; the others' are beside it
    /// (`tasks::tmux::shard_socket`).
    pub tmux_socket: PathBuf,
    /// The program tmux runs to mirror pane output into the capped log
    /// (this binary's hidden `pipe-log` subcommand).
    pub pipe_log_command: Vec<String>,
    pub limits: Limits,
    pub file_limits: crate::files::FileLimits,
    pub hooks: crate::hooks::deliver::HookSettings,
    /// Lift the SSRF guard's range check (`ALLOW_INTERNAL_HOOKS`).
    pub allow_internal_hooks: bool,
    /// Hook for tasks that name none (and whose assistant has none).
    pub default_hook: Option<crate::hooks::HookSpec>,
    /// The admin URL of the workspace's egress gateway, when it has one
    /// (its recent refusals are shown on the dashboard).
    pub egress_gateway_url: Option<String>,
    /// Egress goes by name through that gateway (not only model calls).
    pub egress_by_name: bool,
    /// The operator's builds endpoint and the pod's token file for it,
    /// when the workspace may build images.
    pub builds: Option<(String, PathBuf)>,
    /// SSH into the workspace, when asked for (`--ssh-listen`).
    pub ssh: Option<crate::ssh::SshConfig>,
}

/// The longest path a unix socket address holds (`sun_path`, less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--auth none exposes the dashboard publicly and needs --read-only; refusing to start a writable public workspace")]
    PublicWritable,
    #[error("--auth basic needs --htpasswd-file (an htpasswd file with bcrypt or argon2 hashes)")]
    MissingHtpasswd,
    #[error("--max-tasks must be at least 1")]
    NoTasks,
    #[error("--home {0} is not a directory")]
    BadHome(PathBuf),
    #[error("the tmux socket path {0} is longer than a unix socket allows (107 bytes); use a shorter --data-dir or --tmux-socket")]
    SocketPathTooLong(PathBuf),
    #[error("--listen {0} and --api-listen {1} are the same port; give the api listener its own (for example --api-listen 127.0.0.1:6081)")]
    SamePort(std::net::SocketAddr, std::net::SocketAddr),
}

impl ServeConfig {
    /// `--api-url`, else the bound api address when it is a specific one
    /// (a wildcard address says nothing about how senders reach it).
    pub fn api_url_or_default(&self, bound: SocketAddr) -> Option<String> {
        self.api_url
            .clone()
            .or_else(|| (!bound.ip().is_unspecified()).then(|| format!("http://{bound}")))
    }

    /// Refuse combinations that must never run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (d, a) = (self.listen, self.api_listen);
        let overlap = d.ip() == a.ip() || d.ip().is_unspecified() || a.ip().is_unspecified();
        if d.port() != 0 && d.port() == a.port() && overlap {
            return Err(ConfigError::SamePort(d, a));
        }
        if self.auth == AuthMode::None && !self.read_only {
            return Err(ConfigError::PublicWritable);
        }
        if self.auth == AuthMode::Basic && self.htpasswd_file.is_none() {
            return Err(ConfigError::MissingHtpasswd);
        }
        if self.limits.max_tasks == 0 {
            return Err(ConfigError::NoTasks);
        }
        if !self.home.is_dir() {
            return Err(ConfigError::BadHome(self.home.clone()));
        }
        // The tmux sockets' paths are checked by `server::validate`, which
        // knows their names.
        Ok(())
    }
}
