//! What the operator learns about the cluster once, when it starts, and
//! what it watches outside workspace namespaces:
//!
//! - where the API server really listens: the `kubernetes` EndpointSlice
//!   in `default`. NetworkPolicies see a Service's endpoints, not its
//!   address, and a gateway with models must reach the API server to keep
//!   its usage; nothing else in a workspace namespace may.
//! - the model key Secret in the operator's namespace: when it appears or
//!   changes, every Workspace with models is reconciled, so a new or
//!   rotated key is copied at once (the kubelet then refreshes the
//!   gateways' volumes, and they read it again).

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};

use crate::crd::Workspace;
use crate::manifests::egress_gateway;
use crate::settings::Settings;

/// The API server's endpoints (`ip:port`), or none when they cannot be
/// read (then gateways keep their usage in memory only, and say so).
pub async fn api_server_endpoints(client: &kube::Client) -> Vec<String> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = match api.get_opt("kubernetes").await {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::warn!("no EndpointSlice default/kubernetes; set --api-server-endpoint for gateways with models");
            return Vec::new();
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the EndpointSlice default/kubernetes; set --api-server-endpoint for gateways with models");
            return Vec::new();
        }
    };
    let ports: Vec<i32> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port)
        .collect();
    let mut out = Vec::new();
    for endpoint in slice.endpoints.iter().flatten() {
        for addr in &endpoint.addresses {
            for port in &ports {
                let shown = if addr.contains(':') {
                    format!("[{addr}]:{port}")
                } else {
                    format!("{addr}:{port}")
                };
                out.push(shown);
            }
        }
    }
    out
}

/// A reconcile request for every Workspace with models each time the
/// model key Secret is created, changed or deleted.
pub fn model_key_changes(
    client: &kube::Client,
    settings: &Settings,
    workspaces: Store<Workspace>,
) -> BoxStream<'static, ObjectRef<Workspace>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.operator_namespace);
    let config =
        watcher::Config::default().fields(&format!("metadata.name={}", settings.model_keys_secret));
    watcher(api, config)
        .default_backoff()
        .touched_objects()
        .filter_map(|r| async move { r.ok() })
        .flat_map(move |_| {
            let refs: Vec<ObjectRef<Workspace>> = workspaces
                .state()
                .iter()
                .filter(|ws| egress_gateway::has_models(ws))
                .map(|ws| ObjectRef::from_obj(ws.as_ref()))
                .collect();
            futures_util::stream::iter(refs)
        })
        .boxed()
}
