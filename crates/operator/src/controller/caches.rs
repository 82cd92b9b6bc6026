//! Watches of every kind a workspace is made of, each kept in a reflector
//! cache of objects cut down to what a reconcile reads (`cached_object`).
//! The caches let a reconcile compare desired with live objects without a
//! single API request, and every change they see wakes the reconcile of
//! the Workspace the object belongs to (by label), so nothing is polled.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{self, store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::Value;

use super::cached_object::CachedObject;
use crate::crd::Workspace;
use crate::manifests::Kind;
use crate::names;

/// Retry a failed watch quickly and never wait long: after an API server
/// restart every watch fails at once (connection refused, then 410 Gone),
/// and the client-go style default (up to 30 s, growing over repeated
/// failures for two minutes) would leave the operator deaf for minutes.
pub fn watch_backoff() -> impl kube::runtime::utils::Backoff {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    kube::runtime::utils::ResetTimerBackoff::new(
        kube::runtime::watcher::ExponentialBackoff::from(exponential),
        Duration::from_secs(30),
    )
}

/// The operator's objects (by label), listed in pages of 100: a page is
/// decoded whole before it is cut down, and with every kind listing at
/// once after a start, pages of the default 500 were the operator's peak
/// memory (pods most: several KiB each).
pub fn watch_config() -> watcher::Config {
    watcher::Config::default()
        .labels(&format!(
            "app.kubernetes.io/managed-by={}",
            names::MANAGED_BY
        ))
        .page_size(100)
}

pub struct Caches {
    stores: HashMap<Kind, Store<CachedObject>>,
    /// The workspaces' pods, cut down to why they wait (`pod_states`).
    pods: Store<k8s_openapi::api::core::v1::Pod>,
    /// The tasks driving the watches; stopped when the caches are dropped.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Reconcile requests: the Workspace an object of ours belongs to, each
/// time one is added, changed or deleted.
pub type Triggers = BoxStream<'static, ObjectRef<Workspace>>;

impl Caches {
    /// Start one watch per kind, each in a task of its own, so the caches
    /// fill and stay current whatever the controller is doing (a reconcile
    /// waits for them: they must not depend on the controller to be polled).
    pub fn start(client: &kube::Client) -> (Self, Triggers) {
        let config = watch_config();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<Workspace>>();
        let mut stores = HashMap::new();
        let mut tasks = Vec::new();
        for kind in crate::manifests::Kind::ALL {
            let ar = kind.api_resource();
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let writer = Writer::new(ar.clone());
            stores.insert(kind, writer.as_reader());
            // Read whole whoever wrote them: how far a Deployment is, and
            // a Secret's values (a rotated token is kept, not replaced).
            let whole: &'static [&'static str] = match kind {
                Kind::Deployment => &["status"],
                Kind::Secret => &["data"],
                _ => &[],
            };
            let events = watcher(api, config.clone()).map_ok(move |event| {
                cut_down_event(event, |o| {
                    CachedObject::from_live(o, names::FIELD_MANAGER, whole)
                })
            });
            let mut stream = reflector::reflector(writer, events)
                .backoff(watch_backoff())
                .touched_objects()
                .boxed();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(event) = stream.next().await {
                    match event {
                        // The gateway's usage changes with every model
                        // answer, and nothing the operator builds reads it.
                        Ok(obj)
                            if kind == crate::manifests::Kind::ConfigMap
                                && obj.name_any() == names::MODEL_USAGE => {}
                        Ok(obj) => {
                            if let Some(name) = obj.labels().get(names::WORKSPACE_LABEL) {
                                if tx.send(ObjectRef::new(name)).is_err() {
                                    return;
                                }
                            }
                        }
                        // Retried by the stream's backoff.
                        Err(e) => tracing::debug!(?kind, error = %e, "watch failed; retrying"),
                    }
                }
            }));
        }
        let (pods, pod_task) = super::pod_states::start(client, tx);
        tasks.push(pod_task);
        let triggers =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            )
            .boxed();
        (
            Self {
                stores,
                pods,
                tasks,
            },
            triggers,
        )
    }

    /// A cached Deployment's `metadata.generation` and `status` (whose
    /// fields are the API's own names: `observedGeneration`, `replicas`,
    /// `readyReplicas`).
    pub fn deployment_status(&self, name: &str, namespace: &str) -> Option<(i64, Value)> {
        let d = self.get(Kind::Deployment, name, Some(namespace))?;
        let status = d.value().get_mut("status").map(Value::take);
        Some((d.generation().unwrap_or(0), status.unwrap_or(Value::Null)))
    }

    pub fn get(
        &self,
        kind: Kind,
        name: &str,
        namespace: Option<&str>,
    ) -> Option<std::sync::Arc<CachedObject>> {
        let store = self.stores.get(&kind)?;
        let mut key = ObjectRef::new_with(name, kind.api_resource());
        if let Some(ns) = namespace {
            key = key.within(ns);
        }
        store.get(&key)
    }

    /// The cached object as its typed form (a Secret).
    pub fn get_as<K: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        name: &str,
        namespace: Option<&str>,
    ) -> Option<K> {
        self.get(kind, name, namespace)?.parse()
    }

    /// Wait until every watch has listed once. Call from one task only
    /// (see `run`).
    pub async fn ready(&self) {
        for store in self.stores.values() {
            let _ = store.wait_until_ready().await;
        }
        let _ = self.pods.wait_until_ready().await;
    }

    /// Why the pod `app` (the workspace or its gateway) of namespace `ns`
    /// does not start, if the kubelet or the scheduler has said.
    pub fn pod_trouble(&self, ns: &str, app: &str) -> Option<String> {
        super::pod_states::trouble(&self.pods, ns, app)
    }

    /// How many objects are cached (for the operator's metrics).
    pub fn len(&self) -> usize {
        self.stores.values().map(|s| s.state().len()).sum()
    }

    /// Bytes the cached objects keep (their JSON).
    pub fn bytes(&self) -> usize {
        self.stores
            .values()
            .flat_map(|s| s.state())
            .map(|o| o.size())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A watch event with its object cut down by `cut`.
fn cut_down_event(
    event: watcher::Event<DynamicObject>,
    cut: impl Fn(DynamicObject) -> CachedObject,
) -> watcher::Event<CachedObject> {
    use watcher::Event;
    match event {
        Event::Apply(o) => Event::Apply(cut(o)),
        Event::Delete(o) => Event::Delete(cut(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(cut(o)),
        Event::InitDone => Event::InitDone,
    }
}

impl Drop for Caches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
