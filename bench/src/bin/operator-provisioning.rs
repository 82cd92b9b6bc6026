//! Operator provisioning benchmark (see bench/operator.sh): starts the
//! release operator binary against the test cluster, creates batches of
//! Workspaces at once, and reports, per batch, the latency from create to
//! "every object applied" and to Ready (fake nodes), the throughput, and
//! afterwards the operator's RSS and API requests per minute at idle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, PostParams};
use kube_coder_bench::operator_cluster::{
    install_crd, metric, prepare_volumes, start_operator, watch_workspaces, workspace, Operator,
    Seen,
};
use operator::crd::Workspace;

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

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default().await.context("KUBECONFIG")?;

    // The CRD, then the operator binary.
    install_crd(&client).await?;
    let Operator {
        mut child,
        pid,
        port,
    } = start_operator(&args.operator).await?;
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
        prepare_volumes(&client, &names).await?;

        // Note when each Workspace is applied / Ready.
        let seen = Arc::new(Mutex::new(Seen::default()));
        let watch = watch_workspaces(api.clone(), seen.clone());

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

        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            peak_rss = peak_rss.max(rss_mib(pid));
            let ready = {
                let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                names.iter().filter(|n| seen.ready.contains_key(*n)).count()
            };
            if ready == n {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {ready} of {n} Ready after 600 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        watch.abort();
        let (applied_at, ready_at) = {
            let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let only_ours = |m: &HashMap<String, Instant>| -> HashMap<String, Instant> {
                m.iter()
                    .filter(|(k, _)| created.contains_key(*k))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect()
            };
            (only_ours(&seen.applied), only_ours(&seen.ready))
        };
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
