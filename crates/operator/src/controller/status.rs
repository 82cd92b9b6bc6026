//! The Workspace's status: phase, conditions, URLs, observedGeneration.
//! Written only when it changes, so a quiet workspace stays quiet.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::caches::Caches;
use super::Error;
use crate::crd::{Phase, Workspace, WorkspaceStatus};
use crate::names;

/// A cached Deployment's progress: whether its status describes its
/// current spec, its pods, and how many of them are ready.
struct Rollout {
    current: bool,
    pods: i64,
    ready: i64,
}

fn rollout(caches: &Caches, name: &str, ns: &str) -> Option<Rollout> {
    let (generation, status) = caches.deployment_status(name, ns)?;
    let int = |field: &str| status.get(field).and_then(|v| v.as_i64()).unwrap_or(0);
    Some(Rollout {
        current: int("observedGeneration") >= generation,
        pods: int("replicas"),
        ready: int("readyReplicas"),
    })
}

/// How far the workload is, read from the cached Deployment.
pub fn workload_phase(caches: &Caches, ws: &Workspace) -> (Phase, String) {
    let ns = names::namespace(names::workspace_name(ws));
    let Some(workload) = rollout(caches, names::WORKLOAD, &ns) else {
        return (Phase::Provisioning, "creating the workload".into());
    };
    if !ws.spec.running {
        return if workload.pods == 0 {
            (Phase::Stopped, "stopped; the home volume is kept".into())
        } else {
            (Phase::Provisioning, "stopping".into())
        };
    }
    if !(workload.current && workload.ready >= 1) {
        let message = match caches.pod_trouble(&ns, names::WORKLOAD) {
            Some(why) => format!("the workspace pod cannot start: {why}"),
            None => "waiting for the workspace pod to become ready".into(),
        };
        return (Phase::Provisioning, message);
    }
    // Egress by name: without its gateway the workspace reaches nothing.
    if crate::manifests::egress_gateway::enabled(ws) {
        let gateway_ready = rollout(caches, names::EGRESS_GATEWAY, &ns).map_or(0, |g| g.ready);
        if gateway_ready < 1 {
            let message = match caches.pod_trouble(&ns, names::EGRESS_GATEWAY) {
                Some(why) => format!("the egress gateway cannot start: {why}"),
                None => "waiting for the egress gateway to become ready".into(),
            };
            return (Phase::Provisioning, message);
        }
    }
    (Phase::Ready, "the workspace is running".into())
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

/// The status a reconcile arrived at.
pub struct Outcome {
    pub phase: Phase,
    pub message: String,
    /// `Err(reason, message)` when applying failed.
    pub applied: Result<(), (String, String)>,
    pub last_activity: Option<String>,
}

pub fn desired(ws: &Workspace, outcome: &Outcome) -> WorkspaceStatus {
    let generation = ws.metadata.generation;
    let name = names::workspace_name(ws);
    let ns = names::namespace(name);
    let (url, api_url) = names::urls(ws);
    let applied = match &outcome.applied {
        Ok(()) => condition(
            "Applied",
            true,
            "Applied",
            "every object is applied",
            generation,
        ),
        Err((reason, message)) => condition("Applied", false, reason, message, generation),
    };
    let ready = condition(
        "Ready",
        outcome.phase == Phase::Ready,
        &outcome.phase.to_string(),
        &outcome.message,
        generation,
    );
    let old = ws.status.clone().unwrap_or_default();
    // Keep a condition's transition time while its status stays the same.
    let conditions = [applied, ready]
        .into_iter()
        .map(|mut c| {
            if let Some(prev) = old.conditions.iter().find(|p| p.type_ == c.type_) {
                if prev.status == c.status {
                    c.last_transition_time = prev.last_transition_time.clone();
                }
            }
            c
        })
        .collect();
    WorkspaceStatus {
        phase: Some(outcome.phase),
        conditions,
        url: Some(url),
        api_url: Some(api_url),
        namespace: Some(ns),
        observed_generation: generation,
        last_activity: outcome.last_activity.clone().or(old.last_activity),
        message: Some(outcome.message.clone()),
    }
}

/// Patch the status subresource when it differs from what is stored.
/// Returns whether a write was made.
pub async fn update(
    client: &kube::Client,
    ws: &Workspace,
    status: WorkspaceStatus,
) -> Result<bool, Error> {
    if ws.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let api: Api<Workspace> = Api::all(client.clone());
    api.patch_status(
        names::workspace_name(ws),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(|e| Error::Status {
        message: super::describe(e),
    })?;
    Ok(true)
}
