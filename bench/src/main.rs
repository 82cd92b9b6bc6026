//! Benchmarks of a running kube-coder workspace server (or any server with
//! the same API). Prints a table of figures and the command that produced
//! them; asserts nothing. `bench/run.sh` starts a fresh server and runs it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::StreamExt;
use kube_coder_bench::{cpu_ticks, status_kib};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Measure a kube-coder workspace server's task API")]
struct Args {
    /// Base URL of the api listener, e.g. http://127.0.0.1:6081
    #[arg(long)]
    base_url: String,
    /// API token (or use --token-file).
    #[arg(long, env = "KUBE_CODER_TOKEN")]
    token: Option<String>,
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// PID of the server, for RSS figures.
    #[arg(long)]
    pid: Option<u32>,
    /// Assistant that runs shell commands given as the prompt.
    #[arg(long, default_value = "shell")]
    assistant: String,
    /// Create-task samples.
    #[arg(long, default_value_t = 30)]
    create_samples: usize,
    /// Seconds of concurrent load per throughput figure.
    #[arg(long, default_value_t = 5)]
    load_secs: u64,
    /// Quiet seconds over which the idle server's CPU time is measured.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Concurrent clients for throughput.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Open SSE streams for the RSS-under-load figure.
    #[arg(long, default_value_t = 200)]
    streams: usize,
    /// The server's home directory (same machine): adds the folder-watch figures.
    #[arg(long)]
    home: Option<std::path::PathBuf>,
    /// The server's tmux socket (same machine): adds the tmux floor of a
    /// task start and the start figures with 200 live tasks.
    #[arg(long)]
    tmux_socket: Option<std::path::PathBuf>,
    /// Live tasks for the loaded task-start figures (the server's
    /// --max-tasks must allow this many plus the samples).
    #[arg(long, default_value_t = 200)]
    live_tasks: usize,
}

/// How a start's tmux step is timed.
#[derive(Clone, Copy)]
enum TmuxStep {
    /// The floor: what a script does for a task start — one `tmux` client
    /// process that creates the session with the server's options and
    /// attaches the output pipe (the server's own command list,
    /// `SessionSpec::commands`) — and nothing else: no HTTP, no SQLite, no
    /// task files.
    OneOffClient,
    /// The same commands through the server's own long-lived control
    /// client (`Tmux::new_session`): what is left of a start that is tmux's.
    ControlClient,
}

/// Milliseconds per start of `samples` sessions on the server's tmux
/// socket; each session is killed after it is timed.
async fn tmux_step(
    tmux: &workspace::tasks::tmux::Tmux,
    dir: &std::path::Path,
    samples: usize,
    how: TmuxStep,
) -> Result<Vec<f64>> {
    use workspace::tasks::tmux::SessionSpec;
    let mut lat = Vec::new();
    for i in 0..samples {
        let name = format!("floor-{}-{i}", std::process::id());
        let pipe = format!("cat >> {}/floor.log", dir.display());
        let spec = SessionSpec {
            name: &name,
            title: "floor",
            workdir: dir,
            env: &[],
            command: "sleep 30",
            pipe_command: &pipe,
            started_channel: &format!("{name}-started"),
        };
        let t0 = Instant::now();
        match how {
            TmuxStep::OneOffClient => {
                let mut argv: Vec<String> = vec!["-f".into(), "/dev/null".into()];
                for (n, command) in spec.commands().into_iter().enumerate() {
                    if n > 0 {
                        argv.push(";".into());
                    }
                    argv.extend(command);
                }
                // The server this session's name puts it on, as for a task.
                let out = tokio::process::Command::new("tmux")
                    .arg("-S")
                    .arg(tmux.socket_for(&name))
                    .args(&argv)
                    .output()
                    .await
                    .context("running tmux")?;
                if !out.status.success() {
                    bail!("tmux: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
            TmuxStep::ControlClient => tmux.new_session(&spec).await.context("tmux step")?,
        }
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        tmux.kill_session(&name).await.ok();
    }
    Ok(lat)
}

fn p50(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Bench {
    client: reqwest::Client,
    base: String,
    auth: String,
    assistant: String,
}

struct Row(String, String);

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms (n={})",
        pct(0.5),
        pct(0.95),
        v[v.len() - 1],
        v.len()
    )
}

impl Bench {
    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    async fn post(&self, p: &str, body: Value) -> Result<(u16, Value)> {
        let r = self
            .client
            .post(self.url(p))
            .header("authorization", &self.auth)
            .json(&body)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, p: &str) -> Result<(u16, Value)> {
        let r = self
            .client
            .get(self.url(p))
            .header("authorization", &self.auth)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    /// Create a task, retrying while the live-task cap is reached.
    async fn create(&self, prompt: Option<&str>) -> Result<(Duration, Value)> {
        loop {
            let mut body = json!({"assistant": self.assistant, "name": "bench"});
            if let Some(p) = prompt {
                body["prompt"] = json!(p);
            }
            let t0 = Instant::now();
            let (s, v) = self.post("/api/tasks", body).await?;
            let took = t0.elapsed();
            match s {
                201 => return Ok((took, v)),
                429 => tokio::time::sleep(Duration::from_millis(20)).await,
                _ => bail!("create answered {s}: {v}"),
            }
        }
    }

    async fn kill(&self, id: &str) -> Result<()> {
        self.client
            .delete(self.url(&format!("/api/tasks/{id}")))
            .header("authorization", &self.auth)
            .send()
            .await?;
        Ok(())
    }

    async fn history(&self) -> Result<usize> {
        let mut n = 0;
        let mut cursor: Option<i64> = None;
        loop {
            let p = match cursor {
                Some(c) => format!("/api/tasks?limit=500&cursor={c}"),
                None => "/api/tasks?limit=500".into(),
            };
            let (_, v) = self.get(&p).await?;
            n += v["tasks"].as_array().map(|a| a.len()).unwrap_or(0);
            match v["next_cursor"].as_i64() {
                Some(c) => cursor = Some(c),
                None => return Ok(n),
            }
        }
    }

    async fn grow_history_to(&self, target: usize) -> Result<()> {
        let have = self.history().await?;
        for _ in have..target {
            self.create(Some("true")).await?;
        }
        Ok(())
    }

    async fn list_figures(&self, load: Duration, concurrency: usize) -> Result<(String, String)> {
        let mut lat = Vec::new();
        for _ in 0..200 {
            let t0 = Instant::now();
            let (s, _) = self.get("/api/tasks").await?;
            if s != 200 {
                bail!("list answered {s}");
            }
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        let deadline = Instant::now() + load;
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let client = self.client.clone();
            let url = self.url("/api/tasks");
            let auth = self.auth.clone();
            workers.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if let Ok(r) = client.get(&url).header("authorization", &auth).send().await {
                        if r.status() == 200 && r.bytes().await.is_ok() {
                            n += 1;
                        }
                    }
                }
                n
            }));
        }
        let mut total = 0;
        for w in workers {
            total += w.await?;
        }
        Ok((
            stats(lat),
            format!(
                "{:.0} req/s ({concurrency} clients, {}s)",
                total as f64 / load.as_secs_f64(),
                load.as_secs()
            ),
        ))
    }

    /// Time from a line being printed in the task to its SSE event arriving.
    /// Open an event stream; any answer but 200 is an error.
    async fn open_stream(&self, p: &str) -> Result<reqwest::Response> {
        let r = self
            .client
            .get(self.url(p))
            .header("authorization", &self.auth)
            .send()
            .await?;
        if r.status() != 200 {
            bail!("{p} answered {}", r.status());
        }
        Ok(r)
    }

    async fn output_to_sse(&self) -> Result<String> {
        let (_, task) = self.create(None).await?;
        let id = task["id"].as_str().context("task id")?.to_string();
        let resp = self.open_stream(&format!("/api/tasks/{id}/stream")).await?;
        let mut stream = resp.bytes_stream();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut lat = Vec::new();
        let mut buf = String::new();
        for _ in 0..30 {
            // The shell prints its own clock; we compare on arrival.
            self.post(
                &format!("/api/tasks/{id}/message"),
                json!({"text": "echo T$(date +%s%N)E"}),
            )
            .await?;
            let deadline = Instant::now() + Duration::from_secs(5);
            'wait: while Instant::now() < deadline {
                let Ok(Some(chunk)) =
                    tokio::time::timeout(Duration::from_secs(5), stream.next()).await
                else {
                    break;
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_nanos();
                buf.push_str(&String::from_utf8_lossy(&chunk?));
                while let Some(start) = buf.find('T') {
                    let rest = &buf[start + 1..];
                    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    if digits.len() >= 19 && rest[digits.len()..].starts_with('E') {
                        let printed: u128 = digits.parse()?;
                        lat.push((now.saturating_sub(printed)) as f64 / 1e6);
                        buf.clear();
                        break 'wait;
                    }
                    buf.drain(..start + 1);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.kill(&id).await?;
        if lat.is_empty() {
            bail!("no timestamps came back over SSE");
        }
        Ok(stats(lat))
    }
}

/// Reads `event:` names off an SSE body as they arrive.
struct SseNames<S> {
    stream: S,
    buf: String,
}

impl<S, B> SseNames<S>
where
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    /// The next event's name, or `None` after `wait` without one.
    async fn next(&mut self, wait: Duration) -> Result<Option<String>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(name) = block.lines().find_map(|l| l.strip_prefix("event: ")) {
                    return Ok(Some(name.to_string()));
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.next()).await {
                Ok(Some(chunk)) => self.buf.push_str(&String::from_utf8_lossy(chunk?.as_ref())),
                Ok(None) | Err(_) => return Ok(None),
            }
        }
    }
}

impl Bench {
    /// A file written straight to the disk → `changed` on the folder's
    /// watch stream; and how a burst of writes is coalesced.
    async fn watch_figures(&self, home: &std::path::Path) -> Result<(String, String)> {
        let dir = home.join("bench-watch");
        std::fs::create_dir_all(&dir)?;
        let resp = self
            .open_stream("/api/files/watch?path=bench-watch")
            .await?;
        let mut events = SseNames {
            stream: resp.bytes_stream(),
            buf: String::new(),
        };
        if events.next(Duration::from_secs(5)).await?.as_deref() != Some("ready") {
            bail!("no ready event");
        }
        let mut lat = Vec::new();
        for i in 0..30 {
            // Past the coalescing pause, so each write is a fresh notice.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t0 = Instant::now();
            std::fs::write(dir.join(format!("f{i}")), b"x")?;
            if events.next(Duration::from_secs(5)).await?.as_deref() == Some("changed") {
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = 2000;
        let t0 = Instant::now();
        for i in 0..n {
            std::fs::write(dir.join(format!("burst{i}")), [0u8; 128])?;
        }
        let wrote = t0.elapsed();
        let mut notices = 0;
        let mut last = wrote;
        while events.next(Duration::from_secs(1)).await?.is_some() {
            notices += 1;
            last = t0.elapsed();
        }
        std::fs::remove_dir_all(&dir)?;
        let burst = format!(
            "{n} files written in {:.0} ms → {notices} notices, the last {:.0} ms after the last write",
            wrote.as_secs_f64() * 1000.0,
            (last.saturating_sub(wrote)).as_secs_f64() * 1000.0
        );
        Ok((stats(lat), burst))
    }
}

/// CPU ticks per minute the server spends while nobody asks anything.
async fn idle_cpu(pid: Option<u32>, secs: u64) -> String {
    let Some(pid) = pid else {
        return "n/a (no --pid)".into();
    };
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    match (before, cpu_ticks(pid)) {
        (Some(a), Some(b)) => format!(
            "{:.1} ticks/min ({} in {secs} s; 100 ticks = 1 CPU-second)",
            (b - a) as f64 * 60.0 / secs as f64,
            b - a
        ),
        _ => "n/a".into(),
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "n/a (no --pid)".into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .context("reading --token-file")?
            .trim()
            .to_string(),
        (None, None) => bail!("give --token or --token-file"),
    };
    let b = Bench {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        base: args.base_url.trim_end_matches('/').to_string(),
        auth: format!("Bearer {token}"),
        assistant: args.assistant.clone(),
    };
    let mut rows = Vec::new();
    let idle = args.pid.and_then(|p| status_kib(p, "VmRSS:"));
    rows.push(Row("RSS idle".into(), mib(idle)));
    rows.push(Row(
        "CPU idle".into(),
        idle_cpu(args.pid, args.idle_secs).await,
    ));

    let load = Duration::from_secs(args.load_secs);
    for target in [0usize, 200, 1000] {
        let have = b.history().await?;
        if have > target {
            rows.push(Row(
                format!("GET /api/tasks with {target} tasks"),
                format!("skipped: {have} already in history"),
            ));
            continue;
        }
        b.grow_history_to(target).await?;
        let (l, t) = b.list_figures(load, args.concurrency).await?;
        rows.push(Row(
            format!("GET /api/tasks latency, {target} in history"),
            l,
        ));
        rows.push(Row(
            format!("GET /api/tasks throughput, {target} in history"),
            t,
        ));
    }

    // Create latency: POST until the answer, which comes once tmux runs it;
    // beside it, the tmux floor in the same run; then both again with
    // `--live-tasks` tasks running.
    let floor_dir = std::env::temp_dir().join(format!("kc-bench-floor-{}", std::process::id()));
    std::fs::create_dir_all(&floor_dir)?;
    // The benchmark's own control client (beside the server's), for the
    // floor's clean-up and the control-client figure; it detaches at the end.
    let stop_tmux = tokio_util::sync::CancellationToken::new();
    let _stop_tmux = stop_tmux.clone().drop_guard();
    let tmux = args
        .tmux_socket
        .as_ref()
        .map(|s| workspace::tasks::tmux::Tmux::new(s.clone(), Vec::new(), stop_tmux.clone()));
    let mut live = Vec::new();
    for load in [0, args.live_tasks] {
        if args.tmux_socket.is_none() && load > 0 {
            break;
        }
        while live.len() < load {
            let (_, v) = b.create(Some("sleep 600")).await?;
            live.push(v["id"].as_str().unwrap_or_default().to_string());
        }
        let mut lat = Vec::new();
        for _ in 0..args.create_samples {
            let (took, v) = b.create(Some("sleep 30")).await?;
            if v["state"] != "running" {
                bail!("created task is {}, not running", v["state"]);
            }
            lat.push(took.as_secs_f64() * 1000.0);
            b.kill(v["id"].as_str().unwrap_or_default()).await?;
        }
        let create_p50 = p50(&lat);
        rows.push(Row(
            format!("create task → running tmux session, {load} live"),
            stats(lat),
        ));
        if let Some(tmux) = &tmux {
            let floor = tmux_step(
                tmux,
                &floor_dir,
                args.create_samples,
                TmuxStep::OneOffClient,
            )
            .await?;
            let ratio = create_p50 / p50(&floor);
            rows.push(Row(
                format!("tmux floor of a start (one tmux client: session + options + pipe), {load} live"),
                format!("{}; create p50 is {ratio:.2}× the floor's", stats(floor)),
            ));
            let step = tmux_step(
                tmux,
                &floor_dir,
                args.create_samples,
                TmuxStep::ControlClient,
            )
            .await?;
            let share = p50(&step) / create_p50;
            rows.push(Row(
                format!("the server's tmux step alone (its control client), {load} live"),
                format!("{}; {:.0}% of the create p50", stats(step), share * 100.0),
            ));
        }
    }
    if !live.is_empty() {
        // Quiet: past the server's input-idle time (10 s unless set), every
        // live task is waiting for input, and nothing happens.
        tokio::time::sleep(Duration::from_secs(12)).await;
        rows.push(Row(
            format!("CPU with {} live quiet tasks", live.len()),
            idle_cpu(args.pid, args.idle_secs).await,
        ));
    }
    for id in &live {
        b.kill(id).await?;
    }
    std::fs::remove_dir_all(&floor_dir).ok();

    rows.push(Row(
        "task output → SSE client".into(),
        b.output_to_sse().await?,
    ));

    if let Some(home) = &args.home {
        let (lat, burst) = b.watch_figures(home).await?;
        rows.push(Row("file written on disk → watch notice".into(), lat));
        rows.push(Row("burst in a watched folder".into(), burst));
    }

    // RSS with many open event streams.
    let mut open = Vec::new();
    for _ in 0..args.streams {
        open.push(b.open_stream("/api/events").await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    rows.push(Row(
        format!("RSS with {} open SSE streams", open.len()),
        mib(args.pid.and_then(|p| status_kib(p, "VmRSS:"))),
    ));
    rows.push(Row(
        format!("CPU with {} quiet SSE streams", open.len()),
        idle_cpu(args.pid, args.idle_secs).await,
    ));
    drop(open);

    let cmd: Vec<String> = std::env::args().collect();
    println!("\n| measurement | figure |\n|---|---|");
    for Row(k, v) in rows {
        println!("| {k} | {v} |");
    }
    println!("\ncommand: {}", cmd.join(" ").replace(&token, "<token>"));
    Ok(())
}
