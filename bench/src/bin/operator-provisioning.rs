//! Operator provisioning benchmark (see bench/operator.sh): starts the
//! release operator binary against the test cluster, creates batches of
//! Workspaces at once, and reports, per batch, the latency from create to
//! "every object applied" and to Ready (fake nodes), the throughput, and
//! afterwards the operator's RSS and API requests per minute at idle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use operator::crd::{Phase, Workspace};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The kube-coder binary (release).
    #[arg(long)]
    operator: PathBuf,
    /// Batch sizes, created one after the other.
    #[arg(long, value_delimiter = ',', default_value = "100,500")]
    batches: Vec<usize>,
    /// Workspaces created concurrently.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of idle measurement after the last batch.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn metric(port: u16, name: &str) -> Result<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{name} not in the operator's metrics"))
}

async fn prepare(client: &kube::Client, names: &[String]) -> Result<()> {
    let pp = PatchParams::apply("kube-coder-bench").force();
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
    classes
        .patch("kube-coder-bench", &pp, &Patch::Apply(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "kube-coder-bench"},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate", "reclaimPolicy": "Retain"})))
        .await?;
    let volumes: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    futures_util::stream::iter(names.iter().cloned())
        .map(|name| {
            let volumes = volumes.clone();
            let pp = pp.clone();
            async move {
                volumes
                    .patch(&format!("home-{name}"), &pp, &Patch::Apply(json!({
                        "apiVersion": "v1", "kind": "PersistentVolume",
                        "metadata": {"name": format!("home-{name}")},
                        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "kube-coder-bench",
                                 "hostPath": {"path": "/tmp/kube-coder-bench"},
                                 "claimRef": {"namespace": format!("ws-{name}"), "name": "home"}}})))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

fn workspace(name: &str) -> Result<Workspace> {
    let spec = serde_json::from_value(json!({
        "owner": {"name": name},
        "storage": {"storageClassName": "kube-coder-bench", "size": "1Gi", "retainOnDelete": false},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }))?;
    Ok(Workspace::new(name, spec))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default().await.context("KUBECONFIG")?;

    // The CRD, then the operator binary.
    let crd_text =
        std::fs::read_to_string(operator::CRD_PATH).context("run from the repository root")?;
    let crd: serde_json::Value = serde_yaml::from_str(&crd_text)?;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.patch(
        "workspaces.kube-coder.dev",
        &PatchParams::apply("kube-coder-bench").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(&args.operator)
        .args([
            "operator",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .env("KUBE_CODER_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("operator pid")?;
    for _ in 0..100 {
        if metric(port, "kube_coder_operator_reconciles_total")
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "operator: {} (pid {pid}), RSS at start {:.1} MiB",
        args.operator.display(),
        rss_mib(pid)
    );

    let api: Api<Workspace> = Api::all(client.clone());
    let mut all_names = Vec::new();
    let mut peak_rss: f64 = 0.0;
    for (b, &n) in args.batches.iter().enumerate() {
        let names: Vec<String> = (0..n).map(|i| format!("b{b}-{i:04}")).collect();
        prepare(&client, &names).await?;

        // Watch Workspaces and note when each is applied / Ready.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool, bool, Instant)>();
        let watch_api = api.clone();
        let watch = tokio::spawn(async move {
            let mut stream = watcher(watch_api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(ws)) = stream.next().await {
                let s = ws.status.clone().unwrap_or_default();
                let applied = s
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Applied" && c.status == "True");
                let ready = s.phase == Some(Phase::Ready);
                let _ = tx.send((
                    ws.metadata.name.clone().unwrap_or_default(),
                    applied,
                    ready,
                    Instant::now(),
                ));
            }
        });

        let started = Instant::now();
        let created: HashMap<String, Instant> = futures_util::stream::iter(names.clone())
            .map(|name| {
                let api = api.clone();
                async move {
                    let ws = workspace(&name)?;
                    let t = Instant::now();
                    api.create(&PostParams::default(), &ws).await?;
                    Ok::<_, anyhow::Error>((name, t))
                }
            })
            .buffer_unordered(args.concurrency)
            .try_collect()
            .await?;
        let create_secs = started.elapsed().as_secs_f64();

        let mut applied_at: HashMap<String, Instant> = HashMap::new();
        let mut ready_at: HashMap<String, Instant> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(600);
        while ready_at.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("only {} of {n} Ready after 600 s", ready_at.len());
            }
            peak_rss = peak_rss.max(rss_mib(pid));
            let Ok(Some((name, applied, ready, at))) =
                tokio::time::timeout(left.min(Duration::from_secs(1)), rx.recv()).await
            else {
                continue;
            };
            if !created.contains_key(&name) {
                continue;
            }
            if applied {
                applied_at.entry(name.clone()).or_insert(at);
            }
            if ready {
                applied_at.entry(name.clone()).or_insert(at);
                ready_at.entry(name).or_insert(at);
            }
        }
        watch.abort();
        let total = started.elapsed().as_secs_f64();
        let lat = |m: &HashMap<String, Instant>| {
            let mut v: Vec<f64> = m
                .iter()
                .map(|(k, t)| t.duration_since(created[k]).as_secs_f64())
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let (a, r) = (lat(&applied_at), lat(&ready_at));
        println!(
            "\nbatch of {n} Workspaces (created {:.1} s, {} at a time)",
            create_secs, args.concurrency
        );
        println!(
            "  create → all objects applied: p50 {:.2} s, p95 {:.2} s, max {:.2} s",
            pct(&a, 0.5),
            pct(&a, 0.95),
            pct(&a, 1.0)
        );
        println!(
            "  create → Ready (fake nodes):  p50 {:.2} s, p95 {:.2} s, max {:.2} s",
            pct(&r, 0.5),
            pct(&r, 0.95),
            pct(&r, 1.0)
        );
        println!(
            "  throughput: {:.1} workspaces/s Ready ({n} in {:.1} s)",
            n as f64 / total,
            total
        );
        println!(
            "  operator RSS now {:.1} MiB (peak so far {:.1} MiB)",
            rss_mib(pid),
            peak_rss
        );
        all_names.extend(names);
    }

    // Idle: nothing changes; count what the operator asks of the API server.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let r0 = metric(port, "kube_coder_operator_api_requests_total").await?;
    let w0 = metric(port, "kube_coder_operator_api_writes_total").await?;
    let c0 = metric(port, "kube_coder_operator_reconciles_total").await?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let r1 = metric(port, "kube_coder_operator_api_requests_total").await?;
    let w1 = metric(port, "kube_coder_operator_api_writes_total").await?;
    let c1 = metric(port, "kube_coder_operator_reconciles_total").await?;
    let per_min = 60.0 / args.idle_secs as f64;
    println!(
        "\nidle with {} Workspaces for {} s:",
        all_names.len(),
        args.idle_secs
    );
    println!(
        "  API requests {:.0}/min, writes {:.0}/min, reconciles {:.0}/min",
        (r1 - r0) * per_min,
        (w1 - w0) * per_min,
        (c1 - c0) * per_min
    );
    println!(
        "  operator RSS {:.1} MiB (peak {:.1} MiB)",
        rss_mib(pid),
        peak_rss.max(rss_mib(pid))
    );
    println!("\ncommand: hack/with-cluster bench/operator.sh");

    futures_util::stream::iter(all_names)
        .map(|name| {
            let api = api.clone();
            async move { api.delete(&name, &DeleteParams::default()).await }
        })
        .buffer_unordered(32)
        .for_each(|_| async {})
        .await;
    let _ = child.kill().await;
    Ok(())
}
