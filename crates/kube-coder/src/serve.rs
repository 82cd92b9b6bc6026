//! `kube-coder serve`: flags, their environment variables, the optional
//! config file, and start-up output.
//!
//! Every setting has one name used three ways: `--max-tasks` on the command
//! line, `KUBE_CODER_MAX_TASKS` in the environment, `max-tasks` in the
//! config file (TOML). The command line wins over the environment, which
//! wins over the file. `docs/configuration.md` lists them all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser};
use ipnet::IpNet;
use workspace::files::FileLimits;
use workspace::hooks::deliver::HookSettings;
use workspace::hooks::HookSpec;
use workspace::{AuthMode, Limits, ServeConfig, Server};

use crate::Cli;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Config file (TOML) whose keys are the long flag names.
    #[arg(long, env = "KUBE_CODER_CONFIG")]
    config: Option<PathBuf>,
    /// The workspace's name, shown in the dashboard. Default: the host name.
    #[arg(long, env = "KUBE_CODER_NAME")]
    name: Option<String>,
    /// Where state lives: SQLite, task logs, the token file, the tmux socket.
    #[arg(long, env = "KUBE_CODER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The workspace root; task workdirs stay inside it. Default: $HOME.
    #[arg(long, env = "KUBE_CODER_HOME")]
    home: Option<PathBuf>,
    /// Dashboard listener: ADDRESS:PORT, :PORT or PORT (loopback), or
    /// localhost:PORT.
    #[arg(long, env = "KUBE_CODER_LISTEN", default_value = "127.0.0.1:6080", value_parser = parse_listen)]
    listen: SocketAddr,
    /// API listener (Bearer token only); the same forms as --listen.
    #[arg(long, env = "KUBE_CODER_API_LISTEN", default_value = "127.0.0.1:6081", value_parser = parse_listen)]
    api_listen: SocketAddr,
    /// The api listener's URL as webhook senders reach it (for example
    /// https://alice-api.dev.example.com), shown in the dashboard with each
    /// webhook. Default: http://<--api-listen> unless that listens on every
    /// address.
    #[arg(long, env = "KUBE_CODER_API_URL", value_parser = parse_api_url)]
    api_url: Option<String>,
    /// Dashboard authentication: basic, oauth2, token or none.
    #[arg(long, env = "KUBE_CODER_AUTH", default_value = "token")]
    auth: AuthMode,
    /// Refuse every state-changing request (required with --auth none).
    #[arg(long, env = "KUBE_CODER_READ_ONLY")]
    read_only: bool,
    /// API token file; created 0600 with a random token on first start.
    /// Default: <data-dir>/api-token.
    #[arg(long, env = "KUBE_CODER_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    /// Key that seals hook and webhook secrets in the database; created
    /// 0600 on first start. Default: <data-dir>/secret.key.
    #[arg(long, env = "KUBE_CODER_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// htpasswd file (bcrypt or argon2) for --auth basic.
    #[arg(long, env = "KUBE_CODER_HTPASSWD_FILE")]
    htpasswd_file: Option<PathBuf>,
    /// Honour oauth2-proxy identity headers from --trusted-proxy-cidrs.
    #[arg(long, env = "KUBE_CODER_TRUSTED_PROXY", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    trusted_proxy: bool,
    /// Peers allowed to set identity headers (comma-separated CIDRs).
    #[arg(
        long,
        env = "KUBE_CODER_TRUSTED_PROXY_CIDRS",
        value_delimiter = ',',
        default_value = "127.0.0.1/32,::1/128"
    )]
    trusted_proxy_cidrs: Vec<IpNet>,
    /// Which identity headers the trusted proxy sets: x-forwarded
    /// (oauth2-proxy in front) or x-auth-request (ingress auth_request).
    #[arg(
        long,
        env = "KUBE_CODER_PROXY_IDENTITY_HEADERS",
        default_value = "x-forwarded"
    )]
    proxy_identity_headers: workspace::config::IdentityHeaders,
    /// Users or emails allowed in oauth2 mode (comma-separated; empty: all).
    #[arg(long, env = "KUBE_CODER_ALLOWED_USERS", value_delimiter = ',')]
    allowed_users: Vec<String>,
    /// Tasks that may be live at once.
    #[arg(long, env = "KUBE_CODER_MAX_TASKS", default_value_t = Limits::default().max_tasks)]
    max_tasks: usize,
    /// Assistants config (TOML); built-ins: claude, codex, gemini, opencode, shell.
    #[arg(long, env = "KUBE_CODER_ASSISTANTS_CONFIG")]
    assistants_config: Option<PathBuf>,
    /// tmux socket. Default: <data-dir>/tmux.sock.
    #[arg(long, env = "KUBE_CODER_TMUX_SOCKET")]
    tmux_socket: Option<PathBuf>,
    /// Largest JSON request body, in bytes.
    #[arg(long, env = "KUBE_CODER_MAX_JSON_BYTES", default_value_t = Limits::default().json_body_bytes)]
    max_json_bytes: usize,
    /// Open event streams allowed at once.
    #[arg(long, env = "KUBE_CODER_MAX_SSE", default_value_t = Limits::default().sse_connections)]
    max_sse: usize,
    /// Seconds a connection has to send a complete request head, new or
    /// idle after an answer; slower, silent or idle ones are closed.
    #[arg(long, env = "KUBE_CODER_HEADER_TIMEOUT_SECS", default_value_t = Limits::default().header_timeout.as_secs())]
    header_timeout_secs: u64,
    /// Open connections one peer address may hold on each listener.
    #[arg(long, env = "KUBE_CODER_MAX_CONNECTIONS_PER_PEER", default_value_t = Limits::default().connections_per_peer)]
    max_connections_per_peer: usize,
    /// Output kept per task, in bytes (older output is rotated away).
    #[arg(long, env = "KUBE_CODER_OUTPUT_LOG_BYTES", default_value_t = Limits::default().output_log_bytes)]
    output_log_bytes: u64,
    /// Seconds without output before a running task counts as waiting for input.
    #[arg(long, env = "KUBE_CODER_INPUT_IDLE_SECS", default_value_t = Limits::default().input_idle.as_secs())]
    input_idle_secs: u64,
    /// Largest upload, in bytes.
    #[arg(long, env = "KUBE_CODER_MAX_UPLOAD_BYTES", default_value_t = FileLimits::default().upload_bytes)]
    max_upload_bytes: u64,
    /// Most entries a zip archive may have to be extracted.
    #[arg(long, env = "KUBE_CODER_ZIP_MAX_ENTRIES", default_value_t = FileLimits::default().zip_entries)]
    zip_max_entries: usize,
    /// Most bytes a zip archive may expand to.
    #[arg(long, env = "KUBE_CODER_ZIP_MAX_BYTES", default_value_t = FileLimits::default().zip_bytes)]
    zip_max_bytes: u64,
    /// Largest expansion ratio of a zip entry or archive.
    #[arg(long, env = "KUBE_CODER_ZIP_MAX_RATIO", default_value_t = FileLimits::default().zip_ratio)]
    zip_max_ratio: u64,
    /// Let completion hooks reach private, loopback and metadata addresses.
    #[arg(long, env = "KUBE_CODER_ALLOW_INTERNAL_HOOKS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_internal_hooks: bool,
    /// The admin URL of this workspace's egress gateway (the operator sets
    /// it when the Workspace lists allowDomains or has models); the
    /// dashboard shows its recent refusals and the month's model usage.
    #[arg(long, env = "KUBE_CODER_EGRESS_GATEWAY_URL", value_parser = parse_api_url)]
    egress_gateway_url: Option<String>,
    /// The operator's image builds (the operator sets it when the Workspace
    /// may push images): `POST /api/builds` sends them there.
    #[arg(long, env = "KUBE_CODER_BUILD_URL", requires = "build_token_file")]
    build_url: Option<String>,
    /// The pod's projected token for builds, read at each build.
    #[arg(long, env = "KUBE_CODER_BUILD_TOKEN_FILE")]
    build_token_file: Option<PathBuf>,
    /// Listen for SSH here (off by default): logins with the keys in
    /// --ssh-authorized-keys, as the workspace's one user.
    #[arg(long, env = "KUBE_CODER_SSH_LISTEN", requires = "ssh_authorized_keys")]
    ssh_listen: Option<SocketAddr>,
    /// The keys that may log in over SSH (OpenSSH's authorized_keys
    /// format), read at each login, so a change applies at once.
    #[arg(long, env = "KUBE_CODER_SSH_AUTHORIZED_KEYS")]
    ssh_authorized_keys: Option<PathBuf>,
    /// The workspace's egress goes by name, through that gateway (the
    /// Workspace lists allowDomains).
    #[arg(
        long,
        env = "KUBE_CODER_EGRESS_BY_NAME",
        requires = "egress_gateway_url"
    )]
    egress_by_name: bool,
    /// Completion hook for tasks that name none (and whose assistant has none).
    #[arg(long, env = "KUBE_CODER_HOOK_URL")]
    hook_url: Option<String>,
    /// File holding the secret that signs the default hook's deliveries.
    #[arg(long, env = "KUBE_CODER_HOOK_SECRET_FILE")]
    hook_secret_file: Option<PathBuf>,
    /// Seconds one hook delivery attempt may take.
    #[arg(long, env = "KUBE_CODER_HOOK_TIMEOUT_SECS", default_value_t = HookSettings::default().timeout.as_secs())]
    hook_timeout_secs: u64,
    /// Attempts before a delivery becomes a dead letter.
    #[arg(long, env = "KUBE_CODER_HOOK_MAX_ATTEMPTS", default_value_t = HookSettings::default().max_attempts)]
    hook_max_attempts: u32,
    /// First retry delay in milliseconds (doubled per attempt, with jitter).
    #[arg(long, env = "KUBE_CODER_HOOK_RETRY_BASE_MS", default_value_t = HookSettings::default().retry_base.as_millis() as u64)]
    hook_retry_base_ms: u64,
    /// Log format: text or json.
    #[arg(long, env = "KUBE_CODER_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

/// Parse the command line; a `--config` file's keys become flags placed
/// before the real ones (so the command line wins), skipping any whose
/// environment variable is set (so the environment wins over the file).
pub fn parse_with_config_file() -> Result<Cli, ExitCode> {
    let argv: Vec<String> = std::env::args().collect();
    let first = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Err(ExitCode::from(if e.use_stderr() { 2 } else { 0 }));
        }
    };
    let crate::Command::Serve(args) = &first.command else {
        return Ok(first);
    };
    let Some(path) = args.config.clone() else {
        return Ok(first);
    };
    let extra = match config_file_args(&path) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("kube-coder: {msg}");
            return Err(ExitCode::from(2));
        }
    };
    let serve_pos = argv.iter().position(|a| a == "serve").unwrap_or(1);
    let mut merged = argv[..=serve_pos].to_vec();
    merged.extend(extra);
    merged.extend_from_slice(&argv[serve_pos + 1..]);
    let cmd = Cli::command().args_override_self(true);
    let cmd = cmd.mut_subcommand("serve", |s| s.args_override_self(true));
    match cmd
        .try_get_matches_from(merged)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => Ok(cli),
        Err(e) => {
            eprintln!("kube-coder: in config file {}:", path.display());
            let _ = e.print();
            Err(ExitCode::from(2))
        }
    }
}

fn config_file_args(path: &PathBuf) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("config file {} is not valid TOML: {e}", path.display()))?;
    let cmd = Cli::command();
    let serve = cmd
        .find_subcommand("serve")
        .ok_or_else(|| "internal: no serve command".to_string())?;
    let mut out = Vec::new();
    for (key, value) in table {
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
            .ok_or_else(|| format!("config file {}: unknown setting `{key}`", path.display()))?;
        if let Some(env) = arg.get_env() {
            if std::env::var_os(env).is_some() {
                continue;
            }
        }
        let values: Vec<String> = match value {
            toml::Value::String(s) => vec![s],
            toml::Value::Integer(i) => vec![i.to_string()],
            toml::Value::Boolean(b) => vec![b.to_string()],
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            other => {
                return Err(format!(
                    "config file: `{key}` has an unsupported value {other}"
                ))
            }
        };
        let is_switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        if is_switch {
            if values.first().map(String::as_str) == Some("true") {
                out.push(format!("--{key}"));
            }
        } else {
            out.push(format!("--{key}={}", values.join(",")));
        }
    }
    Ok(out)
}

pub(crate) fn init_logging(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBE_CODER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never into a file or a pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A listen address as people write it: `127.0.0.1:7480`, `[::1]:7480`,
/// `0.0.0.0:7480` (every interface), `localhost:7480`, `:7480` or `7480`
/// (loopback: exposing a port is a choice to write out).
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let example = "use ADDRESS:PORT such as 127.0.0.1:7480 or 0.0.0.0:7480 (every interface), or :7480 / 7480 for loopback";
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let port = s
        .strip_prefix(':')
        .or_else(|| s.strip_prefix("localhost:"))
        .unwrap_or(s);
    match port.parse::<u16>() {
        Ok(p) => Ok(SocketAddr::from(([127, 0, 0, 1], p))),
        Err(_) => Err(format!("`{s}` is not a listen address; {example}")),
    }
}

/// The two names kept from the original server, read when the project's
/// own name is not set.
pub(crate) fn apply_env_aliases() {
    for (alias, name) in [
        ("TRUSTED_PROXY", "KUBE_CODER_TRUSTED_PROXY"),
        ("ALLOW_INTERNAL_HOOKS", "KUBE_CODER_ALLOW_INTERNAL_HOOKS"),
    ] {
        if std::env::var_os(name).is_none() {
            if let Some(v) = std::env::var_os(alias) {
                // Single-threaded here: before the runtime or any thread starts.
                std::env::set_var(name, v);
            }
        }
    }
}

pub(crate) fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("kube-coder");
    }
    home_dir().join(".local/share/kube-coder")
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn to_config(a: ServeArgs) -> Result<(ServeConfig, String), String> {
    // Absolute, because tasks run elsewhere: their command lines name files
    // in the data dir, and tmux hands its socket's path to every pane.
    let absolute = |p: PathBuf, what: &str| {
        std::path::absolute(&p).map_err(|e| format!("cannot resolve {what} {}: {e}", p.display()))
    };
    let data_dir = absolute(a.data_dir.unwrap_or_else(default_data_dir), "--data-dir")?;
    let tmux_socket = match a.tmux_socket {
        Some(p) => absolute(p, "--tmux-socket")?,
        None => data_dir.join("tmux.sock"),
    };
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let hook_secret = match &a.hook_secret_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read --hook-secret-file {}: {e}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let default_hook = a.hook_url.clone().map(|url| HookSpec {
        url,
        secret: hook_secret,
    });
    let config = ServeConfig {
        name: a
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(host_name),
        home: a.home.unwrap_or_else(home_dir),
        listen: a.listen,
        api_listen: a.api_listen,
        api_url: a.api_url,
        auth: a.auth,
        read_only: a.read_only,
        api_token_file: a
            .api_token_file
            .unwrap_or_else(|| data_dir.join("api-token")),
        secret_key_file: a
            .secret_key_file
            .unwrap_or_else(|| data_dir.join("secret.key")),
        htpasswd_file: a.htpasswd_file,
        trusted_proxy: a.trusted_proxy,
        trusted_proxy_cidrs: a.trusted_proxy_cidrs,
        identity_headers: a.proxy_identity_headers,
        allowed_users: a
            .allowed_users
            .into_iter()
            .filter(|u| !u.is_empty())
            .collect(),
        assistants_config: a.assistants_config,
        tmux_socket,
        pipe_log_command: vec![exe.to_string_lossy().into_owned(), "pipe-log".into()],
        limits: Limits {
            json_body_bytes: a.max_json_bytes,
            max_tasks: a.max_tasks,
            sse_connections: a.max_sse,
            output_log_bytes: a.output_log_bytes,
            input_idle: Duration::from_secs(a.input_idle_secs.max(1)),
            header_timeout: Duration::from_secs(a.header_timeout_secs.max(1)),
            connections_per_peer: a.max_connections_per_peer.max(1),
        },
        file_limits: FileLimits {
            upload_bytes: a.max_upload_bytes,
            zip_entries: a.zip_max_entries,
            zip_bytes: a.zip_max_bytes,
            zip_ratio: a.zip_max_ratio.max(1),
            ..FileLimits::default()
        },
        hooks: HookSettings {
            timeout: Duration::from_secs(a.hook_timeout_secs.max(1)),
            max_attempts: a.hook_max_attempts.max(1),
            retry_base: Duration::from_millis(a.hook_retry_base_ms.max(1)),
            ..HookSettings::default()
        },
        allow_internal_hooks: a.allow_internal_hooks,
        default_hook,
        egress_gateway_url: a.egress_gateway_url.clone(),
        egress_by_name: a.egress_by_name,
        builds: a.build_url.clone().zip(a.build_token_file.clone()),
        ssh: match (a.ssh_listen, &a.ssh_authorized_keys) {
            (Some(listen), Some(keys)) => Some(workspace::ssh::SshConfig {
                listen,
                authorized_keys: keys.clone(),
            }),
            _ => None,
        },
        data_dir,
    };
    Ok((config, a.log_format))
}

pub fn run(args: ServeArgs) -> ExitCode {
    let (config, log_format) = match to_config(args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("kube-coder: {msg}");
            return ExitCode::from(2);
        }
    };
    if let Err(msg) = create_missing_home(&config.home) {
        eprintln!("kube-coder: {msg}");
        return ExitCode::from(2);
    }
    // Refused configurations exit 2 with one line, before anything starts.
    if let Err(e) = workspace::server::validate(&config) {
        eprintln!("kube-coder: {e}");
        return ExitCode::from(2);
    }
    if which_tmux().is_none() {
        eprintln!(
            "kube-coder: tmux is not installed; install it (apt-get install tmux) and start again"
        );
        return ExitCode::from(2);
    }
    init_logging(&log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kube-coder: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let auth = config.auth;
        let data_dir = config.data_dir.clone();
        let read_only = config.read_only;
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kube-coder: {e}");
                // A configuration refused (htpasswd, assistants) exits 2
                // like every other refused configuration.
                return if e.is_refused_configuration() {
                    ExitCode::from(2)
                } else {
                    ExitCode::FAILURE
                };
            }
        };
        let shown = token_to_show(&server.started, &data_dir);
        remember_token_shown(&data_dir);
        print_banner(&server.started, shown.as_deref(), auth, read_only);
        let shutdown = crate::stop_signal::stop_token("shutting down; tasks keep running in tmux");
        match server.run(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kube-coder: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// An http(s) URL with no query or fragment; kept without a trailing `/`.
fn parse_api_url(s: &str) -> Result<String, String> {
    let u = url::Url::parse(s).map_err(|e| {
        format!("`{s}` is not a URL ({e}); for example https://alice-api.dev.example.com")
    })?;
    if !matches!(u.scheme(), "http" | "https") || u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "`{s}` must be an http or https URL without query or fragment"
        ));
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
}

/// `--home ~/code` on a machine without `~/code`: make it, as a user would
/// with `mkdir`, when its parent exists. One level only, so a mistyped
/// path deep down (`~/cdoe/project`) is reported instead of built.
fn create_missing_home(home: &Path) -> Result<(), String> {
    if home.exists() || home.is_symlink() {
        return Ok(());
    }
    match std::fs::create_dir(home) {
        Ok(()) => {
            eprintln!("kube-coder: created the home directory {}", home.display());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "--home {} does not exist, nor does its parent; create it first (mkdir -p {})",
            home.display(),
            home.display()
        )),
        Err(e) => Err(format!(
            "--home {} does not exist and cannot be created: {e}",
            home.display()
        )),
    }
}

/// One line per listener and how to log in. Written with `writeln!` and
/// errors ignored: a closed stdout must not take the server down.
fn print_banner(s: &workspace::Started, token: Option<&str>, auth: AuthMode, read_only: bool) {
    use std::io::Write;
    let ro = if read_only { ", read-only" } else { "" };
    let mut text = format!(
        "dashboard: http://{} (auth: {}{ro})\napi:       http://{} (Authorization: Bearer <token>)\n",
        s.dashboard,
        auth.as_str(),
        s.api
    );
    if let Some(ssh) = s.ssh {
        text.push_str(&format!(
            "ssh:       {ssh} (keys from --ssh-authorized-keys)\n"
        ));
    }
    let ready: Vec<&str> = s
        .assistants
        .iter()
        .filter(|a| a.available)
        .map(|a| a.name.as_str())
        .collect();
    text.push_str(&format!(
        "assistants: {} (default: {})\n",
        ready.join(", "),
        s.default_assistant
    ));
    for a in s.assistants.iter().filter(|a| !a.available) {
        let how = a
            .install
            .as_deref()
            .map(|i| format!(": {i}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "            {} is not installed (`{}` is not on PATH){how}\n",
            a.name, a.program
        ));
    }
    match token {
        Some(t) => text.push_str(&format!(
            "api token: {t}\n           (generated now and saved to {}; it is not printed again)\n",
            s.token_file.display()
        )),
        None => text.push_str(&format!("api token: in {}\n", s.token_file.display())),
    }
    if auth == AuthMode::Token {
        text.push_str("log in:    open the dashboard and paste the API token\n");
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Marks that this data dir's token was printed once.
const TOKEN_SHOWN: &str = ".api-token-shown";

/// The token to print: one made by this start, or one a previous start
/// made but failed before printing (its token file in this data dir and no
/// mark that it was shown). Managed token files (a Secret) are never read.
fn token_to_show(s: &workspace::Started, data_dir: &std::path::Path) -> Option<String> {
    if let Some(t) = &s.new_token {
        return Some(t.clone());
    }
    let ours = s.token_file.starts_with(data_dir);
    if !ours || data_dir.join(TOKEN_SHOWN).exists() {
        return None;
    }
    std::fs::read_to_string(&s.token_file)
        .ok()
        .map(|t| t.trim().to_string())
}

fn remember_token_shown(data_dir: &std::path::Path) {
    let _ = std::fs::write(data_dir.join(TOKEN_SHOWN), b"");
}

/// The kernel's host name (the pod name on a cluster), or "workspace".
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "workspace".into())
}

fn which_tmux() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("tmux"))
        .find(|p| p.is_file())
}
