//! What the operator benchmarks share: the CRD installed, the release
//! operator started as a child with its metrics on a free port, home
//! volumes made ahead (no provisioner on the test cluster), and the small
//! Workspace every benchmark creates.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use operator::crd::{Phase, Workspace};
use serde_json::json;

/// A running operator: the child, its pid and its metrics port.
pub struct Operator {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub port: u16,
}

/// Apply the Workspace CRD from the repository (run from its root).
pub async fn install_crd(client: &kube::Client) -> Result<()> {
    let crd_text =
        std::fs::read_to_string(operator::CRD_PATH).context("run from the repository root")?;
    let crd: serde_json::Value = serde_yaml::from_str(&crd_text)?;
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    crds.patch(
        "workspaces.kube-coder.dev",
        &PatchParams::apply("kube-coder-bench").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    // Established within a moment on an idle API server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// Start `BIN operator` and wait until its metrics answer.
pub async fn start_operator(bin: &Path) -> Result<Operator> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = tokio::process::Command::new(bin)
        .args([
            "operator",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .env("KUBE_CODER_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
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
    Ok(Operator { child, pid, port })
}

/// One counter or gauge from the operator's metrics.
pub async fn metric(port: u16, name: &str) -> Result<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{name} not in the operator's metrics"))
}

/// A PersistentVolume bound ahead to each workspace's home claim.
pub async fn prepare_volumes(client: &kube::Client, names: &[String]) -> Result<()> {
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

/// The Workspace every operator benchmark creates: small requests, a home
/// on the benchmark's storage class.
pub fn workspace(name: &str) -> Result<Workspace> {
    let spec = serde_json::from_value(json!({
        "owner": {"name": name},
        "storage": {"storageClassName": "kube-coder-bench", "size": "1Gi", "retainOnDelete": false},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }))?;
    Ok(Workspace::new(name, spec))
}

/// When each watched Workspace was first seen applied (its `Applied`
/// condition true), and Ready.
#[derive(Default)]
pub struct Seen {
    pub applied: HashMap<String, Instant>,
    pub ready: HashMap<String, Instant>,
}

pub fn watch_workspaces(
    api: Api<Workspace>,
    seen: Arc<Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(event) = stream.next().await {
            let Ok(ws) = event else { continue };
            let now = Instant::now();
            let status = ws.status.clone().unwrap_or_default();
            let applied = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Applied" && c.status == "True");
            let ready = status.phase == Some(Phase::Ready);
            let name = ws.metadata.name.clone().unwrap_or_default();
            let Ok(mut seen) = seen.lock() else { return };
            if applied || ready {
                seen.applied.entry(name.clone()).or_insert(now);
            }
            if ready {
                seen.ready.entry(name).or_insert(now);
            }
        }
    })
}
