//! Brokered image builds (`POST /builds` on the broker's port): a
//! workspace shows its projected token of audience `kube-coder-build`
//! (`workspace_identity`), names the image and options in the query
//! (`request`) and sends its context as a tar body. The operator checks
//! them against the Workspace (`spec.build`: the mode, the registries it
//! may push to), the size of the context and how many of its builds run,
//! then answers `200` with the build's log as it happens, one JSON object
//! a line (`{"status"}`, `{"log"}`, then `{"done": {id, images, digest,
//! size, ready_seconds, seconds}}` or
//! `{"error"}`), while `runner` builds it in a pod of the build namespace.
//! A refusal before the build starts is a 4xx with `{"error"}`.

pub mod request;
pub mod runner;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;
use tokio::sync::mpsc;

use crate::crd::{BuildMode, Workspace};
use crate::manifests::build_pod::{self, BuildLimits};
use crate::names;
use crate::settings::Settings;
use crate::workspace_identity::{self, Identities, Refused};
use request::BuildRequest;
use runner::{Build, Log};

/// How many builds of one workspace run at once.
pub const MAX_CONCURRENT: usize = 3;
/// The largest context a build takes.
pub const MAX_CONTEXT: u64 = 100 << 20;

pub struct Builds {
    client: kube::Client,
    settings: Settings,
    limits: BuildLimits,
    max_context: u64,
    /// Shared with the broker: one refused-token limit per address.
    identities: Arc<Identities>,
    /// Builds running, per workspace.
    running: Mutex<HashMap<String, usize>>,
}

/// A build's place among its workspace's running builds, given back when
/// dropped.
struct Slot {
    builds: Arc<Builds>,
    workspace: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut running) = self.builds.running.lock() {
            if let Some(n) = running.get_mut(&self.workspace) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    running.remove(&self.workspace);
                }
            }
        }
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::info!(%status, reason = %message, "build refused");
    (status, Json(json!({"error": message}))).into_response()
}

impl Builds {
    pub fn new(client: kube::Client, settings: Settings, identities: Arc<Identities>) -> Arc<Self> {
        Self::with_limits(
            client,
            settings,
            identities,
            BuildLimits::default(),
            MAX_CONTEXT,
        )
    }

    pub fn with_limits(
        client: kube::Client,
        settings: Settings,
        identities: Arc<Identities>,
        limits: BuildLimits,
        max_context: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            settings,
            limits,
            max_context,
            identities,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Deletes the build pods (and so their copies of push credentials) a
    /// previous run of the operator left: their builds died with it. Run
    /// once at start, before any build of this run. How many went.
    pub async fn sweep_leftovers(&self) -> Result<usize, kube::Error> {
        let ns = &self.settings.build_namespace;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let left = pods
            .list(&ListParams::default().labels(build_pod::BUILD_LABEL))
            .await?;
        let now = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        for pod in &left.items {
            if let Some(name) = &pod.metadata.name {
                pods.delete(name, &now).await?;
                tracing::info!(namespace = %ns, pod = %name, "deleted a build pod an earlier run left");
            }
        }
        Ok(left.items.len())
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route("/builds", post(start)).with_state(self)
    }

    /// A slot for one more build of `workspace`, unless it has the most.
    fn slot(self: &Arc<Self>, workspace: &str) -> Option<Slot> {
        let mut running = self.running.lock().ok()?;
        let n = running.entry(workspace.to_string()).or_default();
        if *n >= MAX_CONCURRENT {
            return None;
        }
        *n += 1;
        Some(Slot {
            builds: self.clone(),
            workspace: workspace.to_string(),
        })
    }

    /// The Workspace, if it may build now.
    async fn eligible(&self, name: &str) -> Result<Workspace, Response> {
        let ws = Api::<Workspace>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| {
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot read Workspace {name}: {e}"),
                )
            })?
            .ok_or_else(|| {
                refuse(
                    StatusCode::FORBIDDEN,
                    format!("Workspace {name} does not exist"),
                )
            })?;
        if ws.metadata.deletion_timestamp.is_some() || !ws.spec.running {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!("Workspace {name} is stopped or being deleted"),
            ));
        }
        match ws.spec.build.mode {
            BuildMode::None => Err(refuse(
                StatusCode::FORBIDDEN,
                format!("builds are off for workspace {name} (spec.build.mode: none)"),
            )),
            BuildMode::Buildkit => Err(refuse(
                StatusCode::CONFLICT,
                format!("workspace {name} builds with its own BuildKit (spec.build.mode: buildkit), not through the operator"),
            )),
            BuildMode::Brokered | BuildMode::Kaniko => Ok(ws),
        }
    }
}

async fn start(
    State(builds): State<Arc<Builds>>,
    peer: crate::serve::Peer,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = match identify(&builds, crate::serve::peer(peer), &headers).await {
        Ok(name) => name,
        Err(Refused(status, message)) => return refuse(status, message),
    };
    let ws = match builds.eligible(&name).await {
        Ok(ws) => ws,
        Err(response) => return response,
    };
    let request = match BuildRequest::parse(query.as_deref().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    if let Err(e) = request.allowed_by(&ws) {
        return refuse(StatusCode::FORBIDDEN, e);
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|l| l > builds.max_context) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the context is larger than {} MiB, the limit of a build's context; leave files out with .dockerignore",
                builds.max_context >> 20
            ),
        );
    }
    let Some(slot) = builds.slot(&name) else {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_CONCURRENT} builds of workspace {name} are running, the most at once; wait for one to end"),
        );
    };
    let id = format!("build-{}", hex::encode(rand::random::<[u8; 6]>()));
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let log = Log(tx);
    tokio::spawn(async move {
        let _slot = slot;
        let build = Build {
            client: &builds.client,
            settings: &builds.settings,
            limits: &builds.limits,
            id: id.clone(),
            workspace: &ws,
            request: &request,
            max_context: builds.max_context,
        };
        let limit = std::time::Duration::from_secs(builds.limits.seconds.max(1) as u64);
        let outcome = match tokio::time::timeout(limit, build.run(body, &log)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the build was stopped after its time limit of {} s",
                builds.limits.seconds
            )),
        };
        let last = match outcome {
            Ok(o) => {
                tracing::info!(workspace = %name, %id, digest = %o.digest, size = o.size, seconds = o.seconds, "build pushed");
                json!({"done": {
                    "id": id, "images": request.tags, "digest": o.digest, "size": o.size,
                    "ready_seconds": o.ready_seconds, "seconds": o.seconds,
                }})
            }
            Err(e) => {
                tracing::info!(workspace = %name, %id, error = %e, "build failed");
                json!({"error": e, "id": id})
            }
        };
        let _ = log.line(last).await;
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<_, Infallible>))
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn identify(
    builds: &Builds,
    peer: Option<std::net::IpAddr>,
    headers: &HeaderMap,
) -> Result<String, Refused> {
    let token = workspace_identity::bearer(headers, "build")?;
    builds
        .identities
        .identify(&builds.client, &token, names::BUILD_AUDIENCE, peer)
        .await
}
