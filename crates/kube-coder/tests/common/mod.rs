//! Test harness: starts the real `kube-coder serve` binary on 127.0.0.1
//! with its own data dir, home and tmux socket, and a fake assistant
//! script. Dropping a [`Workspace`] kills the server and its tmux servers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const FAKE_AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-agent.sh");

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kube-coder")
}

pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub args: Vec<String>,
    pub child: Option<Child>,
    pub dashboard: String,
    pub api: String,
    pub token: String,
    pub client: reqwest::Client,
    pub stdout_lines: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Workspace {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    /// `--api-token-file` if the test passed one, else the default.
    pub fn token_file(&self) -> PathBuf {
        let given = self.args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix("--api-token-file=")
                .map(str::to_string)
                .or_else(|| {
                    (a == "--api-token-file")
                        .then(|| self.args.get(i + 1).cloned())
                        .flatten()
                })
        });
        given
            .map(PathBuf::from)
            .unwrap_or_else(|| self.data_dir().join("api-token"))
    }

    /// The first tmux server's socket (`--tmux-socket`'s default).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("data/tmux.sock")
    }

    /// Start a workspace with the fake assistants and extra flags.
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_env(extra, &[]).await
    }

    /// Start with extra flags and environment variables.
    pub async fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with(extra, env, false).await
    }

    /// Start with `--data-dir data --home home`, relative to the server's
    /// working directory (the test's temp dir).
    pub async fn start_relative() -> Self {
        Self::start_with(&[], &[], true).await
    }

    async fn start_with(extra: &[&str], env: &[(&str, &str)], relative: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kc-test")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let assistants = dir.path().join("assistants.toml");
        std::fs::write(
            &assistants,
            format!(
                r#"default = "fake"
[[assistant]]
name = "fake"
command = "sh {agent} {{prompt}}"
interactive_command = "sh {agent}"
env = {{ FAKE_GREETING = "hello from config" }}

[[assistant]]
name = "fake-typed"
command = "sh {agent}"
prompt_delivery = "typed"

[[assistant]]
name = "fake-stdin"
command = "cat"
prompt_delivery = "stdin"
"#,
                agent = FAKE_AGENT
            ),
        )
        .unwrap();
        let at = |name: &str| match relative {
            true => name.to_string(),
            false => dir.path().join(name).display().to_string(),
        };
        let mut args: Vec<String> = vec!["serve".into(), "--data-dir".into(), at("data")];
        if !extra.contains(&"--home") {
            args.push("--home".into());
            args.push(at("home"));
        }
        args.extend([
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--api-listen".into(),
            "127.0.0.1:0".into(),
        ]);
        if !extra.contains(&"--assistants-config") {
            args.push("--assistants-config".into());
            args.push(assistants.display().to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut ws = Self {
            dir,
            args,
            child: None,
            dashboard: String::new(),
            api: String::new(),
            token: String::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            stdout_lines: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        ws.spawn().await;
        ws
    }

    /// Start (or restart) the server process with the same directories.
    pub async fn spawn(&mut self) {
        let mut child = Command::new(bin())
            .args(&self.args)
            .current_dir(self.dir.path())
            .env_remove("KUBE_CODER_CONFIG")
            .env("KUBE_CODER_LOG", "info")
            // Tasks' login shells (`bash -l`) read the profile of this HOME,
            // not the machine user's (whose profile may run slow or locking
            // tools, e.g. `pyenv rehash`, that a killed test can leave locked).
            .env("HOME", self.dir.path().join("home"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("server.log"))
                    .unwrap(),
            ))
            .spawn()
            .expect("start kube-coder");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after start-up so the server never writes to a closed pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut dash, mut api, mut token_line) = (None, None, false);
        self.stdout_lines.clear();
        while dash.is_none() || api.is_none() || !token_line {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "server did not start; log:\n{}",
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
                )
            });
            if let Some(rest) = line.strip_prefix("dashboard: http://") {
                dash = rest
                    .split_whitespace()
                    .next()
                    .map(|s| format!("http://{s}"));
            }
            if let Some(rest) = line.strip_prefix("api:       http://") {
                api = rest
                    .split_whitespace()
                    .next()
                    .map(|s| format!("http://{s}"));
            }
            token_line |= line.starts_with("api token:");
            self.stdout_lines.push(line);
        }
        self.dashboard = dash.unwrap();
        self.api = api.unwrap();
        self.token = std::fs::read_to_string(self.token_file())
            .unwrap()
            .trim()
            .to_string();
        self.child = Some(child);
    }

    /// Log in as a browser would in token mode; returns `name=value` of
    /// the session cookie.
    pub async fn session_cookie(&self) -> String {
        let r = self
            .client
            .post(format!("{}/auth/login", self.dashboard))
            .header("sec-fetch-site", "same-origin")
            .json(&json!({"token": self.token}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        set.split(';').next().unwrap().to_string()
    }

    /// kill -9, as a crash would.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Send a request to the api listener with the Bearer token.
    async fn api_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.api))
            .header("authorization", self.bearer());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn api_get(&self, path: &str) -> (u16, Value) {
        self.api_send(reqwest::Method::GET, path, None).await
    }

    pub async fn api_post(&self, path: &str, body: Value) -> (u16, Value) {
        self.api_send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn api_patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.api_send(reqwest::Method::PATCH, path, Some(body))
            .await
    }

    pub async fn api_delete(&self, path: &str) -> (u16, Value) {
        self.api_send(reqwest::Method::DELETE, path, None).await
    }

    /// The Prometheus text of `GET /metrics` (Bearer).
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.api))
            .header("authorization", self.bearer())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Create a task with the fake agent; panics unless 201.
    pub async fn create(&self, body: Value) -> Value {
        let (s, v) = self.api_post("/api/tasks", body).await;
        assert_eq!(s, 201, "create: {v}");
        v
    }

    pub async fn create_fake(&self) -> String {
        self.create(json!({"assistant": "fake"})).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Wait until the task reaches `state` (polling the API is fine in a test).
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, t) = self.api_get(&format!("/api/tasks/{id}")).await;
            if t["state"] == state {
                return t;
            }
            if Instant::now() > deadline {
                panic!("task {id} never reached {state}: {t}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the plain-text output contains `needle`.
    pub async fn wait_output(&self, id: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self
                .client
                .get(format!("{}/api/tasks/{id}/output?tail=1000", self.api))
                .header("authorization", self.bearer())
                .send()
                .await
                .unwrap();
            let text = r.text().await.unwrap();
            if text.contains(needle) {
                return text;
            }
            if Instant::now() > deadline {
                panic!("output of {id} never contained {needle:?}: {text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn say(&self, id: &str, text: &str) {
        let (s, v) = self
            .api_post(&format!("/api/tasks/{id}/message"), json!({"text": text}))
            .await;
        assert_eq!(s, 202, "message: {v}");
    }

    /// Run a tmux command as a user would, on the server that holds the
    /// session it names (`-t` or `-s`, as `=name` or `name:pane` too).
    pub fn tmux(&self, args: &[&str]) -> std::process::Output {
        let session = args
            .windows(2)
            .find(|w| w[0] == "-t" || w[0] == "-s")
            .map(|w| w[1].trim_start_matches('=').split(':').next().unwrap_or(""))
            .expect("a tmux command for a test names its session (-t or -s)");
        Command::new("tmux")
            .arg("-S")
            .arg(workspace::tasks::tmux::socket_of(&self.socket(), session))
            .args(args)
            .output()
            .unwrap()
    }

    /// Kill every tmux server of the workspace (and so every task session);
    /// true if any was running.
    pub fn kill_tmux(&self) -> bool {
        let mut any = false;
        for socket in workspace::tasks::tmux::shard_sockets(&self.socket()) {
            any |= kill_tmux_server(&socket);
        }
        any
    }

    /// After a crash: also any tmux process of this workspace that no
    /// socket reaches. A server killed while its control clients were
    /// still starting leaves tmux half-started (a client waiting on a
    /// server with no session, both forever: tmux's own, seen in 3.3a);
    /// they carry the socket path in their command line.
    fn kill_tmux_stragglers(&self) {
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(format!("{}/tmux", self.data_dir().display()))
            .status();
    }

    /// Kill the tmux server that holds the session; true if it was running.
    pub fn kill_tmux_of(&self, session: &str) -> bool {
        kill_tmux_server(&workspace::tasks::tmux::socket_of(&self.socket(), session))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
        self.crash();
        self.kill_tmux();
        self.kill_tmux_stragglers();
    }
}

fn kill_tmux_server(socket: &Path) -> bool {
    Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .arg("kill-server")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Read SSE events from a response until `stop` says so or time runs out.
pub async fn read_sse(
    resp: reqwest::Response,
    timeout: Duration,
    mut stop: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    use futures_util::StreamExt;
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let Ok(Some(Ok(bytes))) = next else {
            return out;
        };
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(pos) = buf.find("\n\n") {
            let block: String = buf.drain(..pos + 2).collect();
            let mut ev = SseEvent::default();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    ev.event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    ev.data.push_str(v);
                } else if let Some(v) = line.strip_prefix("id: ") {
                    ev.id = Some(v.to_string());
                }
            }
            if ev.event.is_empty() && ev.data.is_empty() {
                continue; // keep-alive comment
            }
            let done = stop(&ev);
            out.push(ev);
            if done {
                return out;
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// The environment the operator gives a workspace that builds through it:
/// its build URL (here a port nothing listens on, so no operator answers)
/// and a token file, made in `dir`.
pub fn build_env(dir: &Path) -> [(&'static str, String); 2] {
    let token_file = dir.join("build-token");
    std::fs::write(&token_file, "projected-build-token").unwrap();
    [
        ("KUBE_CODER_BUILD_URL", "http://127.0.0.1:9/builds".into()),
        (
            "KUBE_CODER_BUILD_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ]
}

pub fn write_htpasswd(path: &Path, user: &str, password: &str) {
    let hash = bcrypt::hash(password, 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    std::fs::write(path, format!("{user}:{hash}\n")).unwrap();
}

/// Unmounts (lazily) when the test ends, whatever happens.
pub struct Mount(pub PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The first line a spawned program prints (its address, say); the rest
/// of its output is read and dropped so it never blocks on a full pipe.
pub async fn first_line(child: &mut tokio::process::Child, what: &str) -> String {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what} printed nothing in 20 s"))
        .unwrap()
        .unwrap_or_else(|| panic!("{what} exited before it was ready"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    line
}
