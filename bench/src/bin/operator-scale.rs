//! Scale benchmark (bench/operator-scale.sh): Workspaces created in steps,
//! at a steady rate or in one burst, until thousands exist. Each step is
//! done twice in the same run: first by a client that applies the very
//! objects the operator would (its own builders, in its order, one
//! server-side apply each) with no operator involved, which is the API
//! server's own capacity on this machine, the limit; then as Workspaces
//! through the operator. Every operator figure is printed beside the
//! limit's and as a ratio to it. Afterwards: the operator idle (API
//! requests, writes, watches per minute), and restarted (the time until it
//! has reconciled every Workspace again, and the writes that took).
//!
//! Latency is counted from each workspace's scheduled start (open loop: a
//! step at 50/s schedules one every 20 ms whatever the server does; a burst
//! schedules all at once), so queueing shows in the figures for both.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube_coder_bench::operator_cluster::{
    install_crd, metric, prepare_volumes, start_operator, watch_workspaces, workspace, Operator,
    Seen,
};
use kube_coder_bench::{cpu_ticks, pct, status_kib};
use operator::crd::Workspace;
use operator::manifests::{self, credentials, Kind, Manifest};
use tokio::sync::Semaphore;

#[derive(Parser)]
struct Args {
    /// The kube-coder binary (release).
    #[arg(long)]
    operator: PathBuf,
    /// Steps in order, each COUNT@RATE (Workspaces per second) or COUNT@burst.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000@25,1000@50,1000@burst,2000@50,250@50"
    )]
    steps: Vec<Step>,
    /// Workspaces being created at once at most (a burst's width).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of idle measurement after the last step.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Stopped Workspaces (no pods, every other object) created through
    /// the operator before the first step, in one burst: thousands
    /// existing without the test cluster scheduling thousands of pods.
    #[arg(long, default_value_t = 0)]
    existing: usize,
    /// Seconds a step may take before the benchmark gives up.
    #[arg(long, default_value_t = 1800)]
    step_timeout: u64,
}

#[derive(Clone, Copy, Debug)]
struct Step {
    count: usize,
    /// Per second; `None` is a burst.
    rate: Option<f64>,
}

impl FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (count, rate) = s
            .split_once('@')
            .ok_or_else(|| format!("{s:?}: a step is COUNT@RATE or COUNT@burst"))?;
        let count = count
            .parse()
            .map_err(|e| format!("{s:?}: the count: {e}"))?;
        let rate = match rate {
            "burst" => None,
            r => Some(
                r.parse::<f64>()
                    .ok()
                    .filter(|r| *r > 0.0)
                    .ok_or_else(|| format!("{s:?}: the rate is a number above 0, or burst"))?,
            ),
        };
        Ok(Step { count, rate })
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rate {
            Some(r) => write!(f, "{} at {r}/s", self.count),
            None => write!(f, "{} in one burst", self.count),
        }
    }
}

/// When workspace `i` of a step is due, after the step's start.
fn due(step: Step, i: usize) -> Duration {
    step.rate
        .map(|r| Duration::from_secs_f64(i as f64 / r))
        .unwrap_or_default()
}

/// p50, p90 and p99 of seconds.
struct Quantiles([f64; 3]);

impl Quantiles {
    fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self([f64::NAN; 3]);
        }
        Self([pct(&mut v, 0.5), pct(&mut v, 0.9), pct(&mut v, 0.99)])
    }
    fn show(&self) -> String {
        let [a, b, c] = self.0;
        format!("p50 {a:.2} s, p90 {b:.2} s, p99 {c:.2} s")
    }
    fn ratio(&self, to: &Quantiles) -> String {
        let r = |i: usize| self.0[i] / to.0[i];
        format!("{:.2}× / {:.2}× / {:.2}×", r(0), r(1), r(2))
    }
}

/// Run `work` for each name at its due time, at most `concurrency` at once;
/// each name's scheduled start, and when its work ended.
async fn drive<F, Fut>(
    names: &[String],
    step: Step,
    concurrency: usize,
    work: F,
) -> Result<HashMap<String, (Instant, Instant)>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let slots = Arc::new(Semaphore::new(concurrency));
    let work = &work;
    let runs = names.iter().enumerate().map(|(i, name)| {
        let slots = slots.clone();
        async move {
            let at = start + due(step, i);
            tokio::time::sleep_until(at).await;
            let _slot = slots.acquire().await?;
            work(name.clone())
                .await
                .with_context(|| format!("workspace {name}"))?;
            Ok::<_, anyhow::Error>((name.clone(), (at.into_std(), Instant::now())))
        }
    });
    futures_util::stream::iter(runs)
        .buffer_unordered(names.len().max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The limit: one workspace's objects applied by a plain client, as the
/// operator would apply them (same builders, same order, one server-side
/// apply each, the credentials generated off the async threads), but
/// labelled so the operator's watches never see them.
async fn apply_directly(client: kube::Client, name: String) -> Result<()> {
    let ws = workspace(&name)?;
    let built = manifests::build(&ws, &operator::settings::Settings::default())?;
    let user = ws.spec.owner.name.clone();
    let creds = tokio::task::spawn_blocking(move || {
        credentials::Credentials::keep_or_generate(&user, None).0
    })
    .await?;
    let secret = Manifest::new(Kind::Secret, &credentials::credentials_secret(&ws, &creds))?;
    let (first, rest): (Vec<_>, Vec<_>) = built.into_iter().partition(|m| m.kind < Kind::Secret);
    let pp = PatchParams::apply("kube-coder-bench-direct").force();
    for m in first.iter().chain([&secret]).chain(&rest) {
        let mut body = m.body.clone();
        relabel(&mut body);
        let ar = m.kind.api_resource();
        let api: Api<DynamicObject> = match &m.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        api.patch(&m.name, &pp, &Patch::Apply(&body))
            .await
            .with_context(|| format!("{:?} {}", m.kind, m.name))?;
    }
    Ok(())
}

/// How many objects the limit applies per workspace (its Secret included).
fn objects_per_workspace() -> Result<usize> {
    Ok(manifests::build(
        &workspace("count")?,
        &operator::settings::Settings::default(),
    )?
    .len()
        + 1)
}

/// Every `app.kubernetes.io/managed-by` label of the body (the object's,
/// a pod template's, a selector's) made the benchmark's, consistently.
fn relabel(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "app.kubernetes.io/managed-by" {
                    *v = "kube-coder-bench".into();
                } else {
                    relabel(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(relabel),
        _ => {}
    }
}

/// Wait until every name is in the map `of` picks from `seen`.
async fn wait_until(
    seen: &std::sync::Mutex<Seen>,
    names: &[String],
    of: impl Fn(&Seen) -> &HashMap<String, Instant>,
    timeout_secs: u64,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let done = {
            let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            names.iter().filter(|n| of(&seen).contains_key(*n)).count()
        };
        if done == names.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {done} of {} after {timeout_secs} s", names.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CPU seconds and peak RSS of a process while a future runs.
async fn measured<T>(pid: u32, f: impl std::future::Future<Output = T>) -> (T, f64, f64) {
    let ticks0 = cpu_ticks(pid).unwrap_or(0);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let kib = status_kib(pid, "VmRSS:").unwrap_or(0);
                peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let out = f.await;
    sampler.abort();
    let secs = (cpu_ticks(pid).unwrap_or(0).saturating_sub(ticks0)) as f64 / 100.0;
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0;
    (out, secs, peak)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default().await.context("KUBECONFIG")?;
    install_crd(&client).await?;
    let mut op = start_operator(&args.operator).await?;
    println!(
        "operator: {} (pid {}), RSS at start {:.1} MiB; {} cores",
        args.operator.display(),
        op.pid,
        status_kib(op.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let api: Api<Workspace> = Api::all(client.clone());
    let mut existing = 0;
    if args.existing > 0 {
        let names: Vec<String> = (0..args.existing).map(|i| format!("s-{i:05}")).collect();
        prepare_volumes(&client, &names).await?;
        let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
        let watch = watch_workspaces(api.clone(), seen.clone());
        let t = Instant::now();
        let burst = Step {
            count: names.len(),
            rate: None,
        };
        let (result, cpu, peak) = measured(op.pid, async {
            drive(&names, burst, args.concurrency, |name| {
                let api = api.clone();
                async move {
                    let mut ws = workspace(&name)?;
                    ws.spec.running = false;
                    api.create(&PostParams::default(), &ws).await?;
                    Ok(())
                }
            })
            .await?;
            wait_until(&seen, &names, |s| &s.applied, args.step_timeout).await
        })
        .await;
        watch.abort();
        result?;
        println!(
            "{} stopped Workspaces created and applied in {:.0} s; operator {cpu:.1} CPU s, RSS peak {peak:.1} MiB, now {:.1} MiB",
            names.len(),
            t.elapsed().as_secs_f64(),
            status_kib(op.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
        );
        existing = names.len();
    }
    for (s, &step) in args.steps.iter().enumerate() {
        let direct: Vec<String> = (0..step.count).map(|i| format!("d{s}-{i:04}")).collect();
        let via_operator: Vec<String> = (0..step.count).map(|i| format!("o{s}-{i:04}")).collect();
        prepare_volumes(&client, &via_operator).await?;
        println!("\nstep {}: {step}, {existing} Workspaces existing", s + 1);

        // The limit, with the operator running but blind to these objects.
        let t = Instant::now();
        let done = drive(&direct, step, args.concurrency, |name| {
            apply_directly(client.clone(), name)
        })
        .await?;
        let limit = Quantiles::of(
            done.values()
                .map(|(at, end)| end.duration_since(*at).as_secs_f64())
                .collect(),
        );
        println!(
            "  limit (a client applying the same objects, no operator): {}; {:.1} workspaces/s",
            limit.show(),
            step.count as f64 / t.elapsed().as_secs_f64()
        );

        // The same through the operator.
        let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
        let watch = watch_workspaces(api.clone(), seen.clone());
        let requests0 = metric(op.port, "kube_coder_operator_api_requests_total").await?;
        let writes0 = metric(op.port, "kube_coder_operator_api_writes_total").await?;
        let t = Instant::now();
        let (result, cpu, peak) = measured(op.pid, async {
            let created = drive(&via_operator, step, args.concurrency, |name| {
                let api = api.clone();
                async move {
                    api.create(&PostParams::default(), &workspace(&name)?)
                        .await?;
                    Ok(())
                }
            })
            .await?;
            wait_until(&seen, &via_operator, |s| &s.ready, args.step_timeout).await?;
            Ok::<_, anyhow::Error>(created)
        })
        .await;
        let created = result?;
        let elapsed = t.elapsed().as_secs_f64();
        watch.abort();
        let (applied, ready) = {
            let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let since = |m: &HashMap<String, Instant>| {
                Quantiles::of(
                    created
                        .iter()
                        .filter_map(|(n, (at, _))| {
                            Some(m.get(n)?.duration_since(*at).as_secs_f64())
                        })
                        .collect(),
                )
            };
            (since(&seen.applied), since(&seen.ready))
        };
        println!(
            "  operator: create → applied {} ({} the limit's)",
            applied.show(),
            applied.ratio(&limit)
        );
        println!("  operator: create → Ready (kwok nodes) {}", ready.show());
        println!(
            "  operator: {:.1} CPU s over {elapsed:.0} s ({:.0}% of a core), RSS peak {peak:.1} MiB",
            cpu,
            cpu / elapsed * 100.0
        );
        let per_workspace = |now: f64, before: f64| (now - before) / step.count as f64;
        println!(
            "  operator: {:.1} API requests per workspace, of which {:.1} writes (the limit: {} applies)",
            per_workspace(
                metric(op.port, "kube_coder_operator_api_requests_total").await?,
                requests0
            ),
            per_workspace(
                metric(op.port, "kube_coder_operator_api_writes_total").await?,
                writes0
            ),
            objects_per_workspace()?
        );
        existing += step.count;
    }

    // Idle: nothing changes; what does the operator ask of the API server?
    tokio::time::sleep(Duration::from_secs(10)).await;
    let counters = [
        "kube_coder_operator_api_requests_total",
        "kube_coder_operator_api_writes_total",
        "kube_coder_operator_api_watch_requests_total",
        "kube_coder_operator_reconciles_total",
    ];
    let read = |port| async move {
        let mut v = Vec::new();
        for c in counters {
            v.push(metric(port, c).await.unwrap_or(f64::NAN));
        }
        v
    };
    let before = read(op.port).await;
    let t0 = cpu_ticks(op.pid).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let after = read(op.port).await;
    let per_min = 60.0 / args.idle_secs as f64;
    let d = |i: usize| (after[i] - before[i]) * per_min;
    println!(
        "\nidle with {existing} Workspaces for {} s: API requests {:.0}/min (writes {:.0}, new watches {:.0}), reconciles {:.0}/min, CPU {:.0} ticks/min, RSS {:.1} MiB",
        args.idle_secs,
        d(0),
        d(1),
        d(2),
        d(3),
        (cpu_ticks(op.pid).unwrap_or(0).saturating_sub(t0)) as f64 * per_min,
        status_kib(op.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
    );

    // Restart: the time until every Workspace has been reconciled again.
    let _ = op.child.kill().await;
    let t = Instant::now();
    op = start_operator(&args.operator).await?;
    let deadline = t + Duration::from_secs(args.step_timeout);
    loop {
        let reconciles = metric(op.port, "kube_coder_operator_reconciles_total")
            .await
            .unwrap_or(0.0);
        if reconciles >= existing as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "resync: {reconciles} of {existing} reconciled after {} s",
                args.step_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resync = t.elapsed().as_secs_f64();
    let writes = metric(op.port, "kube_coder_operator_api_writes_total")
        .await
        .unwrap_or(f64::NAN);
    println!(
        "restart with {existing} Workspaces: every one reconciled {resync:.1} s after the start, with {writes:.0} writes; RSS {:.1} MiB",
        status_kib(op.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
    );
    println!(
        "\ncommand: hack/with-cluster bench/operator-scale.sh {}",
        std::env::args().skip(3).collect::<Vec<_>>().join(" ")
    );
    let Operator { mut child, .. } = op;
    let _ = child.kill().await;
    Ok(())
}
