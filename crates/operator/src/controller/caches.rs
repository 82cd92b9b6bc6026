//! Watches of every kind a workspace is made of, each kept in a reflector
//! cache. The caches let a reconcile compare desired with live objects
//! without a single API request, and every change they see wakes the
//! reconcile of the Workspace the object belongs to (by label), so nothing
//! is polled.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{self, store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

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

pub struct Caches {
    stores: HashMap<Kind, Store<DynamicObject>>,
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
        let config = watcher::Config::default().labels(&format!(
            "app.kubernetes.io/managed-by={}",
            names::MANAGED_BY
        ));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<Workspace>>();
        let mut stores = HashMap::new();
        let mut tasks = Vec::new();
        for kind in crate::manifests::Kind::ALL {
            let ar = kind.api_resource();
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let writer = Writer::new(ar.clone());
            stores.insert(kind, writer.as_reader());
            // managedFields are most of an object's size and never compared:
            // dropping them keeps the cache (the operator's memory) small.
            let events = watcher(api, config.clone()).modify(|o| {
                o.managed_fields_mut().clear();
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
                                && obj.metadata.name.as_deref() == Some(names::MODEL_USAGE) => {}
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

    pub fn get(
        &self,
        kind: Kind,
        name: &str,
        namespace: Option<&str>,
    ) -> Option<std::sync::Arc<DynamicObject>> {
        let store = self.stores.get(&kind)?;
        let mut key = ObjectRef::new_with(name, kind.api_resource());
        if let Some(ns) = namespace {
            key = key.within(ns);
        }
        store.get(&key)
    }

    /// The cached object as its typed form (a Secret, a Deployment).
    pub fn get_as<K: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        name: &str,
        namespace: Option<&str>,
    ) -> Option<K> {
        let obj = self.get(kind, name, namespace)?;
        serde_json::from_value(serde_json::to_value(&*obj).ok()?).ok()
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

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Caches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
