//! The HTTP layer: shared state, the two routers, and the handlers.
//!
//! `router.rs` lists every route of both listeners in one place; handlers
//! live in `routes/`, one file per resource; `accept.rs` is the accept
//! loop (timeouts, per-peer caps, graceful close); `sse.rs` the plumbing
//! every streaming route shares (the stream cap, keep-alives).

pub mod accept;
pub mod router;
mod routes;
pub mod sse;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::auth::Auth;
use crate::config::Limits;
use crate::events::EventBus;
use crate::files::Files;
use crate::metrics::Metrics;
use crate::tasks::TaskManager;

#[derive(Clone)]
pub struct AppState {
    /// The workspace's name, shown in the dashboard header.
    pub name: String,
    pub system: crate::system_stats::Sampler,
    /// The database (every route reaches it here, not through the task
    /// manager or auth).
    pub store: crate::store::Store,
    pub tasks: Arc<TaskManager>,
    pub files: Files,
    /// inotify watches on the directories open in Files views.
    pub dir_watches: Arc<crate::files::watch::DirWatches>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub events: EventBus,
    /// One permit per open SSE stream, across both listeners: the SSE cap.
    pub sse_slots: Arc<Semaphore>,
    /// Last request that was someone using the workspace (idle stop).
    pub activity: Arc<crate::activity::Activity>,
    pub token_file: PathBuf,
    pub limits: Limits,
    /// Wakes the hook deliverer after a redelivery is queued.
    pub hook_wake: Arc<tokio::sync::Notify>,
    /// Wakes the scheduler when schedules change.
    pub schedule_wake: Arc<tokio::sync::Notify>,
    /// The api listener's URL as webhook senders reach it, when known.
    pub api_url: Option<Arc<str>>,
    /// The workspace's egress gateway, when the operator gave it one.
    pub egress: Option<Arc<crate::egress::EgressGateway>>,
    /// The operator's image builds, when the workspace may push images.
    pub builds: Option<Arc<crate::builds::BuildService>>,
    /// The builds' logs, kept and followed.
    pub build_logs: Arc<crate::builds::BuildLogs>,
}
