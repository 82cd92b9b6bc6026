//! What the operator learns about the cluster once, when it starts: where
//! the API server really listens (the `kubernetes` EndpointSlice in
//! `default`). NetworkPolicies see a Service's endpoints, not its address,
//! and a gateway with models must reach the API server to keep its usage;
//! nothing else in a workspace namespace may. (The operator-namespace
//! Secrets it watches are in `source_secrets.rs`.)

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;

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
