//! The operator's Kubernetes client, with every request counted (the
//! `kube_coder_operator_api_requests_total` metric), so "quiet at idle" is
//! something one can measure, not only claim.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Stats;

pub fn counting_client(
    config: kube::Config,
    stats: Arc<Stats>,
) -> Result<kube::Client, kube::Error> {
    let count = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        stats.requests.fetch_add(1, Ordering::Relaxed);
        if req.uri().query().is_some_and(|q| q.contains("watch=true")) {
            stats.watches.fetch_add(1, Ordering::Relaxed);
        }
        req
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}
