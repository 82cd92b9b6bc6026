//! Watches of every kind a workspace is made of, each kept in a reflector
//! cache. The caches let a reconcile compare desired with live objects
//! without a single API request, and their watch streams wake the
//! reconcile of the Workspace an object belongs to (by label), so nothing
//! is polled.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::reflector::{self, store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

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
}

/// A change to one of our objects, for the controller to map to its Workspace.
pub type Changes = BoxStream<'static, Result<DynamicObject, watcher::Error>>;

impl Caches {
    /// Start one watch per kind; returns the caches and the change streams
    /// (which drive the watches and must be polled: the controller does).
    pub fn start(client: &kube::Client) -> (Self, Vec<(Changes, ApiResource)>) {
        let config = watcher::Config::default().labels(&format!(
            "app.kubernetes.io/managed-by={}",
            names::MANAGED_BY
        ));
        let mut stores = HashMap::new();
        let mut streams = Vec::new();
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
            // Errors are retried here, with this stream's own backoff, and
            // not passed on: the controller would otherwise pause every
            // trigger for each child watch's error (its backoff wraps the
            // merged triggers), which after an API server restart added up
            // to most of a minute.
            let stream = reflector::reflector(writer, events)
                .backoff(watch_backoff())
                .touched_objects()
                .filter_map(move |event| {
                    futures_util::future::ready(match event {
                        Ok(obj) => Some(Ok(obj)),
                        Err(e) => {
                            tracing::debug!(?kind, error = %e, "watch failed; retrying");
                            None
                        }
                    })
                })
                .boxed();
            streams.push((stream, ar));
        }
        (Self { stores }, streams)
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

    /// Wait until every watch has listed once (before the first reconcile,
    /// so a restarted operator does not mistake a cold cache for drift).
    pub async fn ready(&self) {
        for store in self.stores.values() {
            let _ = store.wait_until_ready().await;
        }
    }

    /// How many objects are cached (for the operator's metrics).
    pub fn len(&self) -> usize {
        self.stores.values().map(|s| s.state().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
