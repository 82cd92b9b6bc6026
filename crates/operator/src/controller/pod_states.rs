//! Why a workspace's pod does not start: a watch of the pods the operator's
//! Deployments make, each cut down to its waiting containers and its
//! scheduling failure, so the Workspace's status can name the cause (an
//! image that cannot be pulled, a missing pull secret, a crash loop, no node
//! with room) the moment the kubelet or the scheduler reports it, with no
//! polling. Pods are never written; the operator only lists and watches.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodStatus,
};
use kube::api::Api;
use kube::runtime::reflector::{self, store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

use super::caches::watch_backoff;
use crate::crd::Workspace;
use crate::names;

/// Waiting reasons of a container on its normal way to running.
const STARTING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Only what `trouble` reads: names, labels, waiting states and the
/// scheduling condition. A whole pod is several kilobytes; this is a few
/// hundred bytes, so watching every workspace's pod costs little memory.
fn cut_down(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    pod.spec = None;
    let status = pod.status.take().unwrap_or_default();
    let waiting_only = |statuses: Option<Vec<ContainerStatus>>| {
        statuses.map(|all| {
            all.into_iter()
                .filter_map(|c| {
                    let waiting = c.state?.waiting?;
                    Some(ContainerStatus {
                        name: c.name,
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: waiting.reason,
                                message: waiting.message,
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                })
                .collect()
        })
    };
    pod.status = Some(PodStatus {
        container_statuses: waiting_only(status.container_statuses),
        init_container_statuses: waiting_only(status.init_container_statuses),
        conditions: status.conditions.map(|all| {
            all.into_iter()
                .filter(|c| c.type_ == "PodScheduled" && c.status == "False")
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    });
}

/// Start the watch; each change of a workspace's pod is sent to `wake` as
/// its Workspace. Returns the store and the task driving the watch.
pub fn start(
    client: &kube::Client,
    wake: tokio::sync::mpsc::UnboundedSender<ObjectRef<Workspace>>,
) -> (Store<Pod>, tokio::task::JoinHandle<()>) {
    let config = super::caches::watch_config();
    let writer = Writer::default();
    let store = writer.as_reader();
    let events = watcher(Api::<Pod>::all(client.clone()), config).modify(cut_down);
    let mut stream = reflector::reflector(writer, events)
        .backoff(watch_backoff())
        .touched_objects()
        .boxed();
    let task = tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            match event {
                Ok(pod) => {
                    if let Some(name) = pod.labels().get(names::WORKSPACE_LABEL) {
                        if wake.send(ObjectRef::new(name)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "pod watch failed; retrying"),
            }
        }
    });
    (store, task)
}

/// Why a pod of namespace `ns` named by `app` (the workspace or its egress
/// gateway) is not starting, if the kubelet or the scheduler has said.
pub fn trouble(store: &Store<Pod>, ns: &str, app: &str) -> Option<String> {
    store
        .state()
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns)
                && p.labels().get("app.kubernetes.io/name").map(String::as_str) == Some(app)
        })
        .find_map(|p| describe(p))
}

fn describe(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten();
    for c in containers {
        let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = w.reason.as_deref().unwrap_or_default();
        if reason.is_empty() || STARTING.contains(&reason) {
            continue;
        }
        return Some(match w.message.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => format!("container {}: {reason}: {m}", c.name),
            None => format!("container {}: {reason}", c.name),
        });
    }
    status.conditions.iter().flatten().find_map(|c| {
        Some(format!(
            "not scheduled: {}",
            c.message.as_deref().or(c.reason.as_deref())?
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "w-1", "namespace": "ws-a",
                         "annotations": {"big": "x"},
                         "labels": {"app.kubernetes.io/name": "workspace"}},
            "spec": {"containers": [{"name": "workspace", "image": "i"}]},
            "status": status,
        }))
        .unwrap();
        cut_down(&mut p);
        p
    }

    #[test]
    fn a_pull_failure_is_named_with_the_kubelets_message() {
        let p = pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {"name": "oauth2-proxy", "ready": false, "restartCount": 0, "image": "p", "imageID": "",
                 "state": {"running": {}}},
                {"name": "workspace", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                 "state": {"waiting": {"reason": "ErrImagePull", "message": "401 Unauthorized"}}},
            ],
        }));
        assert!(p.spec.is_none() && p.metadata.annotations.is_none());
        assert_eq!(
            describe(&p).as_deref(),
            Some("container workspace: ErrImagePull: 401 Unauthorized")
        );
    }

    #[test]
    fn a_pod_on_its_way_up_has_no_trouble_and_an_unschedulable_one_has() {
        let starting = pod(json!({
            "containerStatuses": [{"name": "workspace", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                 "state": {"waiting": {"reason": "ContainerCreating"}}}],
        }));
        assert_eq!(describe(&starting), None);
        let pending = pod(json!({
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/1 nodes are available: 1 Insufficient cpu."}],
        }));
        assert_eq!(
            describe(&pending).as_deref(),
            Some("not scheduled: 0/1 nodes are available: 1 Insufficient cpu.")
        );
    }
}
