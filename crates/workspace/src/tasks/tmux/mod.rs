//! The only place that runs tmux.
//!
//! A workspace's tasks live on its own tmux servers, with sockets in the
//! data dir, so they outlive this process and never mix with a user's own
//! tmux. There are `SHARDS` servers, and a session's name says which one
//! it is on (`shard_of`): tmux's cost per command grows with the sessions
//! of its server (it polls every pane's pty and forks a process as large as
//! all of them for each new pane), so 200 tasks on eight servers start as
//! fast as 25 on one. Commands go to each server through one long-lived
//! control-mode client (`control.rs`), every argument quoted for tmux's
//! command language (`quote.rs`), so data always arrives exactly as sent;
//! the one command line tmux itself hands to `sh -c` is built from quoted
//! paths only.

mod control;
mod quote;

pub use control::CONTROL_SESSION;
pub use quote::sh_quote;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use control::{Control, Reply};

/// How many tmux servers a workspace's sessions are spread over.
pub const SHARDS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    #[error("tmux is not installed (install it: apt-get install tmux)")]
    Missing,
    #[error("tmux {command}: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("could not run tmux: {0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Exited(String),
    #[error("tmux did not answer within {0:?}")]
    Timeout(Duration),
}

impl TmuxError {
    /// What a client may be told: tmux's own words name server paths (the
    /// socket, the data dir), so they go to the log, not to the client.
    pub fn public(&self) -> String {
        match self {
            Self::Missing | Self::Timeout(_) => self.to_string(),
            Self::Failed { command, .. } => format!("tmux {command} failed"),
            Self::Io(_) => "could not run tmux".into(),
            Self::Exited(_) => "the tmux client ended; try again".into(),
        }
    }
}

/// The workspace's tmux servers. Clones share their control clients.
#[derive(Clone)]
pub struct Tmux {
    shards: Arc<[Shard]>,
    /// Told when any server's set of sessions may have changed.
    sessions_changed: Arc<Notify>,
    /// Sessions found on another server than `shard_of` names (started by
    /// a build with another number of servers): where they are.
    elsewhere: Arc<Mutex<HashMap<String, usize>>>,
}

struct Shard {
    socket: PathBuf,
    control: Control,
}

/// The socket of server `shard`: the configured path for the first (where
/// a build with one server kept every session), `tmux-<n>.sock` beside it
/// for the others.
pub fn shard_socket(base: &Path, shard: usize) -> PathBuf {
    if shard == 0 {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tmux".into());
    let name = match base.extension() {
        Some(ext) => format!("{stem}-{shard}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{shard}"),
    };
    base.with_file_name(name)
}

/// Every server's socket, first to last.
pub fn shard_sockets(base: &Path) -> Vec<PathBuf> {
    (0..SHARDS).map(|k| shard_socket(base, k)).collect()
}

/// The server a session of this name is started on: FNV-1a of the name
/// (stable across builds and machines, unlike std's hasher), so anyone
/// who knows the name and the base socket finds it.
pub fn shard_of(session: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

/// The socket of the server a session of this name is started on.
pub fn socket_of(base: &Path, session: &str) -> PathBuf {
    shard_socket(base, shard_of(session))
}

/// The status bar in the dashboard's dark colours (the terminal is dark in
/// both themes): the task's title on the left in the accent colour, the
/// time on the right, nothing else.
const STATUS_THEME: &[(&str, &str)] = &[
    ("status-style", "bg=#181c25,fg=#9aa3b5"),
    ("status-left", "#[fg=#6d9bff,bold] #{@kc_title} #[default]"),
    ("status-left-length", "64"),
    ("status-right", "#[fg=#9aa3b5]%H:%M "),
    ("window-status-format", ""),
    ("window-status-current-format", ""),
    ("message-style", "bg=#2a303d,fg=#e4e7ee"),
    ("mode-style", "bg=#6d9bff,fg=#0c1020"),
];

/// What a new session runs and where.
pub struct SessionSpec<'a> {
    pub name: &'a str,
    /// Shown on the status bar (the task's name or prompt).
    pub title: &'a str,
    pub workdir: &'a Path,
    pub env: &'a [(String, String)],
    /// Command line tmux runs with `sh -c`.
    pub command: &'a str,
    /// Command line tmux pipes the pane's output into.
    pub pipe_command: &'a str,
    /// A `wait-for` channel signalled once the output pipe is attached; the
    /// pane's command waits on it before it runs (see `started_channel`).
    pub started_channel: &'a str,
}

/// The tmux session of task `id` (the one place this name is made).
pub fn session_name(id: &str) -> String {
    format!("kc-{id}")
}

/// The task a session was made for, if `name` is one of `session_name`'s.
pub fn task_of_session(name: &str) -> Option<&str> {
    name.strip_prefix("kc-")
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The channel a task's command waits on before it starts, so that nothing
/// it prints can precede the output pipe, and a command that ends at once
/// cannot take its session away before the pipe is attached.
pub fn started_channel(session: &str) -> String {
    format!("{session}-started")
}

impl Tmux {
    /// `base` is the first server's socket (`shard_socket` names the
    /// others); `shutdown` ends the control clients (never the sessions).
    /// `env`: what every session of these servers finds in its
    /// environment (set on each server, so a server kept from an earlier
    /// run gets it too).
    pub fn new(base: PathBuf, env: Vec<(String, String)>, shutdown: CancellationToken) -> Self {
        let sessions_changed = Arc::new(Notify::new());
        let shards = shard_sockets(&base)
            .into_iter()
            .map(|socket| Shard {
                control: Control::new(
                    socket.clone(),
                    server_options(&env),
                    sessions_changed.clone(),
                    shutdown.clone(),
                ),
                socket,
            })
            .collect();
        Self {
            shards,
            sessions_changed,
            elsewhere: Arc::default(),
        }
    }

    /// Which server holds the session: where it was found, else where it
    /// would be started.
    fn shard_for(&self, session: &str) -> usize {
        self.elsewhere
            .lock()
            .ok()
            .and_then(|m| m.get(session).copied())
            .unwrap_or_else(|| shard_of(session))
    }

    /// The socket of the server that holds the session (for a client
    /// attaching to it).
    pub fn socket_for(&self, session: &str) -> &Path {
        &self.shards[self.shard_for(session)].socket
    }

    /// Wait until a session may have ended or appeared: a server's own
    /// notice, or the end of a control client (and perhaps its server).
    pub async fn sessions_changed(&self) {
        self.sessions_changed.notified().await
    }

    async fn run(&self, session: &str, args: &[&str]) -> Result<String, TmuxError> {
        self.run_all(session, &[args]).await
    }

    /// Run several commands in order on the session's server with nothing
    /// between them; the output of the last, or the first failure.
    async fn run_all(&self, session: &str, commands: &[&[&str]]) -> Result<String, TmuxError> {
        self.shards[self.shard_for(session)].run_all(commands).await
    }

    /// Create a detached session and attach the output pipe in one batch,
    /// before the pane's command (which waits for the started signal) can
    /// print anything.
    pub async fn new_session(&self, spec: &SessionSpec<'_>) -> Result<(), TmuxError> {
        let commands = spec.commands();
        let commands: Vec<Vec<&str>> = commands
            .iter()
            .map(|c| c.iter().map(String::as_str).collect())
            .collect();
        let commands: Vec<&[&str]> = commands.iter().map(Vec::as_slice).collect();
        self.run_all(spec.name, &commands).await.map(|_| ())
    }

    pub async fn has_session(&self, name: &str) -> Result<bool, TmuxError> {
        match self.run(name, &["has-session", "-t", &exact(name)]).await {
            Ok(_) => Ok(true),
            Err(TmuxError::Failed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Names of all sessions on every server (the control clients' own
    /// session once), and where each one found away from its `shard_of`
    /// server is, for the commands that follow.
    pub async fn list_sessions(&self) -> Result<Vec<String>, TmuxError> {
        let lists = futures_util::future::try_join_all(
            self.shards.iter().map(|shard| shard.list_sessions()),
        )
        .await?;
        let mut elsewhere = HashMap::new();
        let mut names = Vec::new();
        for (shard, list) in lists.into_iter().enumerate() {
            for name in list {
                if name == CONTROL_SESSION {
                    if shard == 0 {
                        names.push(name);
                    }
                    continue;
                }
                if shard_of(&name) != shard {
                    elsewhere.insert(name.clone(), shard);
                }
                names.push(name);
            }
        }
        if let Ok(mut m) = self.elsewhere.lock() {
            *m = elsewhere;
        }
        Ok(names)
    }

    /// Type literal text into the session's pane.
    pub async fn send_text(&self, name: &str, text: &str) -> Result<(), TmuxError> {
        self.run(
            name,
            &["send-keys", "-t", &exact_pane(name), "-l", "--", text],
        )
        .await
        .map(|_| ())
    }

    /// Send named keys (already checked against the allowlist).
    pub async fn send_keys(&self, name: &str, keys: &[&str]) -> Result<(), TmuxError> {
        let target = exact_pane(name);
        let mut args = vec!["send-keys", "-t", &target, "--"];
        args.extend_from_slice(keys);
        self.run(name, &args).await.map(|_| ())
    }

    pub async fn kill_session(&self, name: &str) -> Result<(), TmuxError> {
        match self.run(name, &["kill-session", "-t", &exact(name)]).await {
            Ok(_) => Ok(()),
            // Already gone is what we wanted.
            Err(TmuxError::Failed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Set the session's window to the size of the terminal that types
    /// into it (windows are sized by hand: `window-size manual`).
    pub async fn resize_window(&self, name: &str, cols: u16, rows: u16) -> Result<(), TmuxError> {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        self.run(
            name,
            &[
                "resize-window",
                "-t",
                &exact_pane(name),
                "-x",
                &cols,
                "-y",
                &rows,
            ],
        )
        .await
        .map(|_| ())
    }
}

impl Shard {
    /// Run several commands in order with nothing between them; the output
    /// of the last, or the first failure.
    async fn run_all(&self, commands: &[&[&str]]) -> Result<String, TmuxError> {
        let replies = self.control.run(commands).await?;
        let mut last = String::new();
        for (command, Reply { ok, output }) in commands.iter().zip(replies) {
            if !ok {
                return Err(TmuxError::Failed {
                    command: command.first().copied().unwrap_or_default().to_string(),
                    stderr: output.trim().to_string(),
                });
            }
            last = output;
        }
        Ok(last)
    }

    async fn list_sessions(&self) -> Result<Vec<String>, TmuxError> {
        // Each line starts with a mark of ours, so no session name, whatever
        // a process on this server called it, can pass for protocol.
        let out = self
            .run_all(&[&["list-sessions", "-F", "s:#{session_name}"]])
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| l.strip_prefix("s:"))
            .map(str::to_string)
            .collect())
    }
}

impl SessionSpec<'_> {
    /// The tmux commands that start this session, in order (public for the
    /// benchmark, which times them in a one-off client as the floor).
    pub fn commands(&self) -> Vec<Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let mut new_session = s(&[
            "new-session",
            "-d",
            "-s",
            self.name,
            "-x",
            "200",
            "-y",
            "50",
            "-c",
            &self.workdir.to_string_lossy(),
        ]);
        for (k, v) in self.env {
            new_session.extend(["-e".to_string(), format!("{k}={v}")]);
        }
        new_session.push(self.command.to_string());
        // One line, and short: a prompt can be pages long.
        let title: String = self
            .title
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(60)
            .collect();
        // The rest of a session's options are the server's (`server_options`).
        vec![
            new_session,
            // Only the owner's terminal sizes the window (resize-window); a
            // viewer's attached client never does (see `terminal`). Per
            // window: as a global default, tmux 3.3 crashes on the next
            // `new-session -x -y`.
            s(&["set-option", "-w", "-t", self.name, "window-size", "manual"]),
            s(&["set-option", "-t", self.name, "@kc_title", &title]),
            s(&["pipe-pane", "-t", self.name, self.pipe_command]),
            // tmux remembers a signal nobody waits for yet.
            s(&["wait-for", "-S", self.started_channel]),
        ]
    }
}

/// Options every task session shares, set once on the server (as global
/// defaults) by each new control client: a start then sends five commands,
/// not sixteen, and tmux's cost per command grows with its sessions.
fn server_options(env: &[(String, String)]) -> Vec<Vec<String>> {
    let global = |flags: &str, option: &str, value: &str| {
        ["set-option", flags, option, value]
            .map(String::from)
            .to_vec()
    };
    let mut options = vec![
        // The server outlives its last task session (and this client):
        // otherwise a task that ends at once could take the server down
        // under the next command.
        ["set-option", "-s", "exit-empty", "off"]
            .map(String::from)
            .to_vec(),
        // Before a session exists: a pane's history is sized when it is made.
        global("-g", "history-limit", "10000"),
    ];
    options.extend(
        STATUS_THEME
            .iter()
            .map(|(option, value)| global("-g", option, value)),
    );
    options.extend(
        env.iter()
            .map(|(k, v)| ["set-environment", "-g", k, v].map(String::from).to_vec()),
    );
    options
}

/// `=name` makes tmux match the session name exactly, not as a prefix.
fn exact(name: &str) -> String {
    format!("={name}")
}

/// The active pane of the exactly-named session.
fn exact_pane(name: &str) -> String {
    format!("={name}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(socket: &Path, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(socket)
            .args(args)
            .output()
            .unwrap()
    }

    struct Server {
        _dir: tempfile::TempDir,
        socket: PathBuf,
        stop: CancellationToken,
        tmux: Tmux,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.cancel();
            for socket in shard_sockets(&self.socket) {
                cli(&socket, &["kill-server"]);
            }
        }
    }

    fn server() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let stop = CancellationToken::new();
        let tmux = Tmux::new(socket.clone(), Vec::new(), stop.clone());
        Server {
            _dir: dir,
            socket,
            stop,
            tmux,
        }
    }

    /// Every byte of hostile text reaches tmux as sent: stored in a paste
    /// buffer through the control client, read back by a separate client.
    #[tokio::test]
    async fn text_arrives_exactly_as_sent() {
        let s = server();
        let long = "x".repeat(200_000);
        let cases = [
            "plain",
            "it's",
            "$(rm -rf /)",
            "a\"b\"c",
            "`x` \\ \n",
            "x;",
            "x\\;",
            "a ; b",
            "#{session_name}",
            "~/x",
            "a~b",
            "{ }",
            "%if 1",
            "%end 1 2 1",
            "$HOME ${HOME}",
            "tab\there",
            "\u{1}\u{2}\u{1b}[31m\u{7f}",
            "ünïcödé ✓ 🎉",
            "\\",
            "\\n",
            "''",
            "--",
            "-x",
            "a\r\nb",
            &long,
        ];
        // Buffers are per server: this one's.
        let socket = socket_of(&s.socket, "buffers");
        for (i, case) in cases.iter().enumerate() {
            let buffer = format!("b{i}");
            s.tmux
                .run("buffers", &["set-buffer", "-b", &buffer, "--", case])
                .await
                .unwrap();
            let out = cli(&socket, &["save-buffer", "-b", &buffer, "-"]);
            assert!(out.status.success(), "case {i}");
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                *case,
                "case {i} changed on its way"
            );
        }
    }

    /// Answers reach the callers that asked, whatever the interleaving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commands_get_their_own_answers() {
        let s = server();
        let mut joins = Vec::new();
        for i in 0..40 {
            let tmux = s.tmux.clone();
            joins.push(tokio::spawn(async move {
                let name = format!("s{i}");
                let dir = std::env::temp_dir();
                let spec = SessionSpec {
                    name: &name,
                    title: "t",
                    workdir: &dir,
                    env: &[],
                    command: "exec cat",
                    pipe_command: "exec cat >/dev/null",
                    started_channel: &started_channel(&name),
                };
                tmux.new_session(&spec).await.unwrap();
                assert!(tmux.has_session(&name).await.unwrap());
                assert!(!tmux.has_session(&format!("none{i}")).await.unwrap());
                let e = tmux.send_keys(&format!("none{i}"), &["Enter"]).await;
                assert!(matches!(e, Err(TmuxError::Failed { .. })), "{e:?}");
            }));
        }
        for j in joins {
            j.await.unwrap();
        }
        let mut names = s.tmux.list_sessions().await.unwrap();
        names.sort();
        assert_eq!(names.len(), 41, "{names:?}");
        assert!(names.contains(&CONTROL_SESSION.to_string()));
        // Each on the server its name says, and spread over all of them.
        let mut used = std::collections::HashSet::new();
        for i in 0..40 {
            let name = format!("s{i}");
            let socket = socket_of(&s.socket, &name);
            assert!(
                cli(&socket, &["has-session", "-t", &exact(&name)])
                    .status
                    .success(),
                "{name} is not on {}",
                socket.display()
            );
            used.insert(socket);
        }
        assert_eq!(used.len(), SHARDS, "{used:?}");
    }

    /// A session on another server than its name says (started by a build
    /// with another number of servers) is found by the listing, and then
    /// typed into, attached to and killed where it is.
    #[tokio::test]
    async fn a_session_on_another_server_is_found_where_it_is() {
        let s = server();
        let name = (0..)
            .map(|i| format!("kc-{i:x}"))
            .find(|n| shard_of(n) != 0)
            .unwrap();
        assert!(cli(
            &s.socket,
            &[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                &name,
                "exec cat"
            ]
        )
        .status
        .success());
        assert!(
            !s.tmux.has_session(&name).await.unwrap(),
            "not looked for yet"
        );
        assert!(s.tmux.list_sessions().await.unwrap().contains(&name));
        assert!(s.tmux.has_session(&name).await.unwrap());
        assert_eq!(s.tmux.socket_for(&name), s.socket.as_path());
        s.tmux.send_text(&name, "typed").await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let pane = cli(&s.socket, &["capture-pane", "-p", "-t", &exact_pane(&name)]);
            if String::from_utf8_lossy(&pane.stdout).contains("typed") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the text never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.tmux.kill_session(&name).await.unwrap();
        assert!(!cli(&s.socket, &["has-session", "-t", &exact(&name)])
            .status
            .success());
    }

    #[test]
    fn shard_sockets_sit_beside_the_first() {
        let base = Path::new("/d/tmux.sock");
        assert_eq!(shard_socket(base, 0), base);
        assert_eq!(shard_socket(base, 3), Path::new("/d/tmux-3.sock"));
        assert_eq!(shard_socket(Path::new("/d/tm"), 2), Path::new("/d/tm-2"));
        assert_eq!(shard_sockets(base).len(), SHARDS);
        // Stable across builds: a name always lands where it did.
        assert_eq!(shard_of("kc-0123456789ab"), shard_of("kc-0123456789ab"));
        assert_eq!(
            shard_of(""),
            (0xcbf2_9ce4_8422_2325_u64 % SHARDS as u64) as usize
        );
    }

    /// A task's session has the options a task relies on, whether it is
    /// the first on the server or the server was started by someone else.
    #[tokio::test]
    async fn a_session_has_the_task_options() {
        let s = server();
        let socket = socket_of(&s.socket, "kc-abc");
        // A server the control client did not start.
        assert!(cli(
            &socket,
            &[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "other",
                "exec cat"
            ]
        )
        .status
        .success());
        let dir = std::env::temp_dir();
        let spec = SessionSpec {
            name: "kc-abc",
            title: "fix the\nbug;  now",
            workdir: &dir,
            env: &[("A".into(), "1 2".into())],
            command: "exec cat",
            pipe_command: "exec cat >/dev/null",
            started_channel: "kc-abc-started",
        };
        s.tmux.new_session(&spec).await.unwrap();
        let show = |args: &[&str]| {
            let out = cli(&socket, args);
            assert!(out.status.success(), "{args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        assert_eq!(
            show(&["show-options", "-v", "-t", "kc-abc", "@kc_title"]),
            "fix the bug; now"
        );
        assert_eq!(show(&["show-options", "-gv", "history-limit"]), "10000");
        assert_eq!(
            show(&["show-options", "-wv", "-t", "kc-abc:", "window-size"]),
            "manual"
        );
        // The status bar shows the title.
        assert!(
            show(&["display-message", "-p", "-t", "kc-abc:", "#{T:status-left}"])
                .contains(" fix the bug; now "),
        );
        assert_eq!(show(&["show-environment", "-t", "kc-abc", "A"]), "A=1 2");
        assert_eq!(
            show(&["display-message", "-p", "-t", "kc-abc:", "#{history_limit}"]),
            "10000"
        );
    }

    /// A session created with a name that reads like the protocol is
    /// listed as a name.
    #[tokio::test]
    async fn session_names_cannot_pass_for_protocol() {
        let s = server();
        s.tmux.list_sessions().await.unwrap();
        let forged = cli(
            &socket_of(&s.socket, "%end 1 2 1"),
            &["new-session", "-d", "-s", "%end 1 2 1", "exec cat"],
        );
        assert!(forged.status.success());
        let names = s.tmux.list_sessions().await.unwrap();
        assert!(names.contains(&"%end 1 2 1".to_string()), "{names:?}");
        assert!(names.contains(&CONTROL_SESSION.to_string()));
    }

    /// When the tmux server goes away (killed from a task, or crashed), the
    /// next command starts a new client, and a new server.
    #[tokio::test]
    async fn a_killed_tmux_server_is_started_again() {
        let s = server();
        assert_eq!(
            s.tmux.list_sessions().await.unwrap(),
            vec![CONTROL_SESSION.to_string()]
        );
        assert!(cli(&s.socket, &["kill-server"]).status.success());
        // However soon after: the command is sent again on a fresh client
        // if the old one ended before writing it.
        let mut sessions = Err(TmuxError::Missing);
        for _ in 0..3 {
            sessions = s.tmux.list_sessions().await;
            if sessions.is_ok() {
                break;
            }
        }
        assert_eq!(sessions.unwrap(), vec![CONTROL_SESSION.to_string()]);
    }

    /// The shutdown signal ends the control client; the sessions stay.
    #[tokio::test]
    async fn shutdown_detaches_and_leaves_sessions() {
        let s = server();
        s.tmux
            .run("keep", &["new-session", "-d", "-s", "keep", "exec cat"])
            .await
            .unwrap();
        let socket = socket_of(&s.socket, "keep");
        let clients = || {
            String::from_utf8(
                cli(&socket, &["list-clients", "-F", "#{client_control_mode}"]).stdout,
            )
            .unwrap()
        };
        assert_eq!(clients().trim(), "1");
        s.stop.cancel();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !clients().trim().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(clients().trim(), "", "the control client is still attached");
        assert!(cli(&socket, &["has-session", "-t", "=keep"])
            .status
            .success());
    }
}
