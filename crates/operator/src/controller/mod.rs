//! The reconciler: one Workspace in, its objects applied, its status
//! written. Level-triggered and idempotent; reads come from watch caches,
//! and a reconcile of an unchanged Workspace makes no API writes.
//!
//! Read top to bottom: [`run`] wires watches to the controller,
//! [`reconcile`] does one pass, [`error_policy`] decides the retry.

pub mod apply;
pub mod cached_object;
pub mod caches;
pub mod client;
pub mod cluster_facts;
pub mod idle;
pub mod owned_fields;
pub mod pod_states;
pub mod secrets;
pub mod source_secrets;
pub mod status;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};

use crate::crd::{Phase, Workspace};
use crate::manifests::{self, BuildError, Kind};
use crate::names;
use crate::settings::Settings;
use caches::Caches;
use status::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not apply {kind:?} {}{name}: {message}", namespace.as_ref().map(|n| format!("{n}/")).unwrap_or_default())]
    Apply {
        kind: Kind,
        name: String,
        namespace: Option<String>,
        message: String,
    },
    #[error("could not read {what}: {message}")]
    Read { what: String, message: String },
    #[error("could not write the Workspace: {message}")]
    Status { message: String },
    #[error("the Secret {namespace}/{name} named by the Workspace does not exist; create it in the operator's namespace")]
    MissingSecret { name: String, namespace: String },
    #[error("{0}")]
    BadSecret(String),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The API server's own words for a failed request.
pub fn describe(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

impl Error {
    /// A short CamelCase reason for events and conditions.
    fn reason(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "ApplyFailed",
            Error::Read { .. } => "ReadFailed",
            Error::Status { .. } => "StatusFailed",
            Error::MissingSecret { .. } | Error::BadSecret(_) => "SecretMissing",
            Error::Build(_) => "InvalidSpec",
        }
    }
}

/// Counters the operator reports (and tests read).
#[derive(Default, Debug)]
pub struct Stats {
    pub reconciles: AtomicU64,
    pub failures: AtomicU64,
    /// Writes to the API server: applies, creates, status patches, stops.
    pub writes: AtomicU64,
    /// Every request to the API server (when built by [`client::counting_client`]).
    pub requests: AtomicU64,
    /// Of which watch requests (opened or re-opened).
    pub watches: AtomicU64,
    /// The same, per Workspace name.
    writes_by_workspace: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Stats {
    pub fn wrote(&self, workspace: &str) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.writes_by_workspace.lock() {
            *m.entry(workspace.to_string()).or_default() += 1;
        }
    }

    /// API writes made for one Workspace since the operator started.
    pub fn writes_for(&self, workspace: &str) -> u64 {
        self.writes_by_workspace
            .lock()
            .map(|m| m.get(workspace).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

pub struct Context {
    pub client: kube::Client,
    pub settings: Settings,
    pub caches: Caches,
    /// The operator-namespace Secrets workspaces copy.
    pub sources: source_secrets::SourceSecrets,
    pub recorder: Recorder,
    pub http: reqwest::Client,
    pub stats: Arc<Stats>,
    /// How often a running workspace with an idle limit is asked for activity.
    pub idle_check: Duration,
}

/// How the controller paces itself (flags of `kube-coder operator`).
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// How often a running workspace with an idle limit is asked for activity.
    pub idle_check: Duration,
    /// Reconciles running at once; 0 is unbounded. Unbounded, a burst of
    /// new Workspaces all advance together against a saturated API server
    /// and nearly every one finishes at the end; bounded, they finish in
    /// turn (docs/operator.md "Scale" has both). A reconcile spends most of
    /// its time waiting on the API server, so a few dozen keep it busy.
    pub concurrent_reconciles: u16,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            idle_check: Duration::from_secs(60),
            concurrent_reconciles: 64,
        }
    }
}

/// Run the operator until `shutdown` resolves. `attach` is handed the
/// context and the Workspaces' cache once they are filled, for services
/// that read them (the waker).
pub async fn run(
    client: kube::Client,
    mut settings: Settings,
    tuning: Tuning,
    stats: Arc<Stats>,
    attach: impl FnOnce(Arc<Context>, reflector::Store<Workspace>) + Send,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (caches, triggers) = Caches::start(&client);
    // The Workspaces' own cache, without their managedFields (never read).
    let (reader, writer) = reflector::store();
    let (sources, source_changes) =
        source_secrets::SourceSecrets::start(&client, &settings, reader.clone());
    // Every watch lists once before the first reconcile, so a restarted
    // operator does not mistake a cold cache for drift. Awaited here, once:
    // the stores' readiness signal wakes a single waiter reliably, and
    // reconciles waiting on it concurrently were seen to hang.
    let shutdown = futures_util::FutureExt::shared(Box::pin(shutdown));
    tokio::select! {
        _ = async { caches.ready().await; sources.ready().await } => {}
        _ = shutdown.clone() => return,
    }
    tracing::info!(
        objects = caches.len(),
        bytes = caches.bytes(),
        "watch caches filled"
    );
    if settings.api_server_endpoints.is_empty() {
        settings.api_server_endpoints = cluster_facts::api_server_endpoints(&client).await;
        tracing::info!(endpoints = ?settings.api_server_endpoints, "API server endpoints found");
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: names::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        caches,
        sources,
        recorder,
        http,
        stats,
        idle_check: tuning.idle_check,
    });
    let workspaces = watcher(
        Api::<Workspace>::all(client.clone()),
        watcher::Config::default(),
    )
    .modify(|ws| ws.managed_fields_mut().clear())
    .reflect(writer)
    .applied_objects();
    // What serves from the same caches (the waker) starts once they are full.
    attach(ctx.clone(), reader.clone());
    let controller = Controller::for_stream(workspaces, reader);
    controller
        .with_config(Config::default().concurrency(tuning.concurrent_reconciles))
        .graceful_shutdown_on(shutdown)
        .trigger_backoff(caches::watch_backoff())
        .reconcile_on(futures_util::stream::select(triggers, source_changes))
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not finish");
            }
        })
        .await;
}

/// One pass over one Workspace.
pub async fn reconcile(ws: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.stats.reconciles.fetch_add(1, Ordering::Relaxed);
    if ws.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the objects;
        // a retained namespace and home volume carry none and stay.
        return Ok(Action::await_change());
    }
    let name = names::workspace_name(&ws).to_string();
    let result = apply_all(&ws, &ctx).await;
    let (phase, message) = status::workload_phase(&ctx.caches, &ws);
    let mut outcome = Outcome {
        phase,
        message,
        applied: Ok(()),
        last_activity: None,
    };
    let mut token = None;
    match &result {
        Ok(t) => token = Some(t.clone()),
        Err(e) => {
            outcome.applied = Err((e.reason().into(), e.to_string()));
            outcome.message = e.to_string();
            if matches!(
                e,
                Error::Build(_) | Error::MissingSecret { .. } | Error::BadSecret(_)
            ) {
                outcome.phase = Phase::Failed;
            }
            tracing::warn!(workspace = %name, error = %e, "reconcile failed");
            publish(&ctx, &ws, EventType::Warning, e.reason(), &e.to_string()).await;
        }
    }

    // Idle stop, for running workspaces that ask for it.
    let mut requeue = None;
    if let (Some(idle), Some(token), true) = (&ws.spec.idle, &token, ws.spec.running) {
        if let Some(limit) = idle.seconds() {
            requeue = Some(ctx.idle_check);
            if outcome.phase == Phase::Ready {
                match idle::fetch(&ctx.http, &ctx.settings, &ws, token).await {
                    Ok(activity) => {
                        outcome.last_activity = Some(activity.last_activity.clone());
                        if idle::should_stop(&activity, limit) {
                            idle::stop(&ctx.client, &ws).await?;
                            ctx.stats.wrote(&name);
                            let note = format!(
                                "stopped after {} without activity and without running tasks; `kube-coder user start {name}` starts it again",
                                idle.stop_after
                            );
                            publish(&ctx, &ws, EventType::Normal, "IdleStopped", &note).await;
                            return Ok(Action::await_change());
                        }
                    }
                    Err(why) => tracing::debug!(workspace = %name, %why, "idle check failed"),
                }
            }
        }
    }

    let desired = status::desired(&ws, &outcome);
    if status::update(&ctx.client, &ws, desired).await? {
        ctx.stats.wrote(&name);
    }
    result?;
    Ok(requeue
        .map(Action::requeue)
        .unwrap_or_else(Action::await_change))
}

/// Apply every object; returns the API token (for the idle check).
async fn apply_all(ws: &Workspace, ctx: &Context) -> Result<String, Error> {
    let mut all = manifests::build(ws, &ctx.settings)?;
    // The namespace first: the credentials Secret is created in it.
    ensure_together(ctx, ws, in_stage(&all, 0)).await?;
    let (creds, credentials_secret) = secrets::credentials(&ctx.client, &ctx.caches, ws).await?;
    all.extend(credentials_secret);
    all.extend(secrets::copied(&ctx.client, &ctx.caches, &ctx.sources, ws, &ctx.settings).await?);
    all.extend(retired(ws, ctx)?);
    for stage in 1..=manifests::LAST_STAGE {
        ensure_together(ctx, ws, in_stage(&all, stage)).await?;
    }
    Ok(creds.api_token)
}

fn in_stage(all: &[manifests::Manifest], stage: u8) -> Vec<&manifests::Manifest> {
    all.iter()
        .filter(|m| manifests::stage(m.kind) == stage)
        .collect()
}

/// Objects of one stage applied together, so a new workspace waits for
/// about four round trips rather than one per object.
async fn ensure_together(
    ctx: &Context,
    ws: &Workspace,
    ms: Vec<&manifests::Manifest>,
) -> Result<(), Error> {
    for some in ms.chunks(APPLIES_IN_FLIGHT) {
        futures_util::future::try_join_all(some.iter().map(|m| ensure(ctx, ws, m))).await?;
    }
    Ok(())
}

/// Requests one reconcile has in flight at most (a stage of a workspace
/// has about eight objects): with 64 reconciles at once, enough to keep a
/// busy API server full without queueing a thousand requests on it.
const APPLIES_IN_FLIGHT: usize = 8;

/// What an earlier spec left that this one no longer asks for, made
/// harmless without deleting (the operator may not): a gateway scaled to
/// zero, model keys emptied out of the namespace.
fn retired(ws: &Workspace, ctx: &Context) -> Result<Vec<manifests::Manifest>, Error> {
    use manifests::egress_gateway;
    let ns = names::namespace(names::workspace_name(ws));
    let exists = |kind, name| ctx.caches.get(kind, name, Some(&ns)).is_some();
    let mut out = Vec::new();
    if !egress_gateway::enabled(ws) && exists(Kind::Deployment, names::EGRESS_GATEWAY) {
        out.push(manifests::Manifest::new(
            Kind::Deployment,
            &egress_gateway::retired_deployment(ws, &ctx.settings),
        )?);
    }
    if !egress_gateway::has_models(ws) && exists(Kind::Secret, names::MODEL_KEYS_SECRET) {
        out.push(manifests::Manifest::new(
            Kind::Secret,
            &egress_gateway::emptied_keys(ws),
        )?);
    }
    Ok(out)
}

async fn ensure(ctx: &Context, ws: &Workspace, m: &manifests::Manifest) -> Result<(), Error> {
    if apply::ensure(&ctx.client, &ctx.caches, m).await? {
        ctx.stats.wrote(names::workspace_name(ws));
        tracing::info!(workspace = %names::workspace_name(ws), kind = ?m.kind, name = %m.name, "applied");
    }
    Ok(())
}

async fn publish(ctx: &Context, ws: &Workspace, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &ws.object_ref(&())).await {
        tracing::debug!(error = %e, "could not publish an event");
    }
}

/// When to try a failed reconcile again.
pub fn error_policy(_ws: Arc<Workspace>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.stats.failures.fetch_add(1, Ordering::Relaxed);
    match error {
        // Only an edit of the Workspace can mend its spec.
        Error::Build(_) => Action::await_change(),
        // Someone has to create the Secret; look again now and then.
        Error::MissingSecret { .. } | Error::BadSecret(_) => {
            Action::requeue(Duration::from_secs(30))
        }
        _ => Action::requeue(Duration::from_secs(5)),
    }
}
