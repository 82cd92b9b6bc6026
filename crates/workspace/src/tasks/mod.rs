//! Tasks: coding-agent or shell sessions in tmux, and their lifecycle.
//!
//! [`TaskManager`] owns creating, messaging and killing tasks, turning exit
//! records into final states, noticing quiet sessions (`waiting_for_input`),
//! and re-attaching to sessions that outlived a previous server process.
//! Each live task has a `watch` channel ([`Pulse`]) that SSE streams and the
//! idle monitor wait on; it is driven by inotify, not polling.

pub mod assistants;
mod lifecycle;
pub mod output_log;
mod task_files;
pub mod tmux;
mod watch;

use lifecycle::reason;
pub use task_files::valid_env_name;

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch as tokio_watch;

use crate::config::Limits;
use crate::error::{ApiError, ApiResult};
use crate::events::{EventBus, ServerEvent};
use crate::hooks::ssrf::Guard;
use crate::hooks::HookSpec;
use crate::metrics::Metrics;
use crate::secrets::generate_id;
use crate::store::{NewTask, Store, TaskRecord, TaskRemoval, TransitionInfo};
use crate::task_state::TaskState;
use crate::views::TaskView;
use assistants::{Assistants, PromptDelivery};
use tmux::{sh_quote, started_channel, SessionSpec, Tmux};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use watch::{DirEvent, DirWatcher};

/// Keys a client may send to a task's pane (tmux key names).
pub const ALLOWED_KEYS: &[&str] = &[
    "Enter", "Escape", "Tab", "BTab", "Space", "BSpace", "Up", "Down", "Left", "Right", "Home",
    "End", "PPage", "NPage", "C-c", "C-d", "C-z", "C-l", "C-u", "y", "n", "0", "1", "2", "3", "4",
    "5", "6", "7", "8", "9",
];

const MAX_NAME: usize = 200;

/// How long the sweep for vanished sessions lets a burst of session changes
/// settle before it looks.
const SWEEP_SETTLE: Duration = Duration::from_millis(200);

/// The latest news about a live task.
#[derive(Debug, Clone, Copy)]
pub struct Pulse {
    /// Bumped whenever its log changes.
    pub output: u64,
    pub state: TaskState,
}

/// `POST /api/tasks` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    pub prompt: Option<String>,
    pub assistant: Option<String>,
    pub workdir: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub env: HashMap<String, String>,
    /// Called when the task reaches a final state.
    pub hook: Option<HookSpec>,
}

pub struct TaskManager {
    store: Store,
    tmux: Tmux,
    assistants: Assistants,
    /// Canonical workspace root.
    home: PathBuf,
    tasks_dir: PathBuf,
    pipe_log_command: Vec<String>,
    limits: Limits,
    events: EventBus,
    metrics: Arc<Metrics>,
    watcher: DirWatcher,
    /// Live tasks' pulses. Its size is the live-task count the cap checks.
    live: Mutex<HashMap<String, tokio_watch::Sender<Pulse>>>,
    /// Serialises the cap check with the insert, so concurrent creates
    /// cannot overshoot `max_tasks`.
    create_lock: tokio::sync::Mutex<()>,
    hook_guard: Guard,
    default_hook: Option<HookSpec>,
    /// Wakes the hook deliverer when a final state wrote an outbox row.
    hook_wake: Arc<Notify>,
    shutdown: CancellationToken,
}

pub struct TaskManagerParts {
    pub store: Store,
    pub tmux: Tmux,
    pub assistants: Assistants,
    pub home: PathBuf,
    pub data_dir: PathBuf,
    pub pipe_log_command: Vec<String>,
    pub limits: Limits,
    pub events: EventBus,
    pub metrics: Arc<Metrics>,
    pub hook_guard: Guard,
    pub default_hook: Option<HookSpec>,
    pub hook_wake: Arc<Notify>,
    /// Ends the manager's background work (tasks themselves keep running:
    /// they live in tmux).
    pub shutdown: CancellationToken,
}

impl TaskManager {
    /// Build the manager and start its background work: the inotify event
    /// loop, the sweep for vanished sessions, and re-attachment to tasks
    /// left running by a previous process.
    pub async fn start(p: TaskManagerParts) -> std::io::Result<Arc<Self>> {
        let tasks_dir = p.data_dir.join("tasks");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tasks_dir)?;
        let (watcher, mut rx) =
            DirWatcher::new(tasks_dir.clone()).map_err(std::io::Error::other)?;
        let home = p.home.canonicalize()?;
        let mgr = Arc::new(Self {
            store: p.store,
            tmux: p.tmux,
            assistants: p.assistants,
            home,
            tasks_dir,
            pipe_log_command: p.pipe_log_command,
            limits: p.limits,
            events: p.events,
            metrics: p.metrics,
            watcher,
            live: Mutex::new(HashMap::new()),
            create_lock: tokio::sync::Mutex::new(()),
            hook_guard: p.hook_guard,
            default_hook: p.default_hook,
            hook_wake: p.hook_wake,
            shutdown: p.shutdown.clone(),
        });
        let weak = Arc::downgrade(&mgr);
        let shutdown = p.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = shutdown.cancelled() => return,
                };
                let Some(ev) = ev else { return };
                let Some(mgr) = weak.upgrade() else { break };
                match ev {
                    DirEvent::Output(id) => mgr.bump_output(&id),
                    DirEvent::Exited(id) => {
                        tokio::spawn(async move { mgr.finish_from_exit_record(&id).await });
                    }
                }
            }
        });
        mgr.recover().await;
        let weak = Arc::downgrade(&mgr);
        let shutdown = p.shutdown.clone();
        // Sessions are swept when tmux says they changed, not on a timer:
        // a quiet workspace does nothing.
        let tmux = mgr.tmux.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tmux.sessions_changed() => {}
                    _ = shutdown.cancelled() => return,
                }
                // One sweep for a burst of changes (every start is one).
                tokio::select! {
                    _ = tokio::time::sleep(SWEEP_SETTLE) => {}
                    _ = shutdown.cancelled() => return,
                }
                let Some(mgr) = weak.upgrade() else { break };
                mgr.sweep_vanished().await;
            }
        });
        Ok(mgr)
    }

    pub fn assistants(&self) -> &Assistants {
        &self.assistants
    }

    pub fn tmux(&self) -> &Tmux {
        &self.tmux
    }

    pub fn task_dir(&self, id: &str) -> PathBuf {
        self.tasks_dir.join(id)
    }

    /// Subscribe to a live task; `None` once it has finished.
    pub fn pulse(&self, id: &str) -> Option<tokio_watch::Receiver<Pulse>> {
        self.live.lock().ok()?.get(id).map(|tx| tx.subscribe())
    }

    /// Tasks running or waiting for input.
    pub fn live_count(&self) -> usize {
        self.live.lock().map(|m| m.len()).unwrap_or(usize::MAX)
    }

    fn bump_output(&self, id: &str) {
        if let Ok(m) = self.live.lock() {
            if let Some(tx) = m.get(id) {
                tx.send_modify(|p| p.output += 1);
            }
        }
    }

    fn register_live(&self, id: &str, state: TaskState) -> std::io::Result<()> {
        let (tx, _) = tokio_watch::channel(Pulse { output: 0, state });
        if let Ok(mut m) = self.live.lock() {
            m.insert(id.to_string(), tx);
        }
        self.watcher
            .watch(&self.task_dir(id))
            .map_err(std::io::Error::other)
    }

    /// Undo `register_live`: the task finished, or never started.
    fn unregister_live(&self, id: &str) {
        if let Ok(mut m) = self.live.lock() {
            m.remove(id);
        }
        self.watcher.unwatch(&self.task_dir(id));
    }

    pub async fn get(&self, id: &str) -> ApiResult<TaskRecord> {
        self.store
            .get_task(id)
            .await?
            .ok_or_else(|| ApiError::task_not_found(id))
    }

    /// Validate a create request, write the task, start its tmux session.
    pub async fn create(self: &Arc<Self>, req: CreateTask) -> ApiResult<TaskRecord> {
        let assistant_name = req
            .assistant
            .clone()
            .unwrap_or_else(|| self.assistants.default_name());
        let assistant = self.assistants.get(&assistant_name).ok_or_else(|| {
            let known: Vec<_> = self
                .assistants
                .all()
                .iter()
                .map(|a| a.name.as_str())
                .collect();
            ApiError::bad_request(
                "unknown_assistant",
                format!(
                    "assistant `{assistant_name}` is not configured (known: {})",
                    known.join(", ")
                ),
            )
        })?;
        // Checked now, so a missing program is a clear 4xx instead of a
        // task that fails with exit 127 a moment later.
        if !assistant.is_installed() {
            return Err(ApiError::bad_request(
                "assistant_unavailable",
                assistant.unavailable_message(),
            ));
        }
        if let Some(n) = &req.name {
            if n.chars().count() > MAX_NAME || n.chars().any(char::is_control) {
                return Err(ApiError::bad_request(
                    "invalid_name",
                    format!(
                        "name must be at most {MAX_NAME} characters without control characters"
                    ),
                ));
            }
        }
        let prompt = req.prompt.filter(|p| !p.trim().is_empty());
        if prompt.as_deref().is_some_and(|p| p.contains('\0')) {
            return Err(ApiError::bad_request(
                "invalid_prompt",
                "prompt contains a NUL byte",
            ));
        }
        let workdir = self.resolve_workdir(req.workdir.as_deref())?;
        let env = self.task_env(&assistant.env, req.env)?;
        let hook = req
            .hook
            .or_else(|| assistant.hook.clone())
            .or_else(|| self.default_hook.clone());
        if let Some(h) = &hook {
            self.check_hook(h).await?;
        }

        let _guard = self.create_lock.lock().await;
        if self.live_count() >= self.limits.max_tasks {
            return Err(ApiError::too_many(
                "task_limit",
                format!(
                    "{} tasks are live, the most this workspace allows (--max-tasks); wait for one to finish or kill one",
                    self.limits.max_tasks
                ),
            ));
        }
        let id = generate_id();
        let dir = self.task_dir(&id);
        let session = tmux::session_name(&id);
        let prompt_file = dir.join("prompt.txt");
        let command = assistant.command_line(prompt.as_deref(), &prompt_file);
        let started = started_channel(&session);
        self.write_task_files(&dir, prompt.as_deref(), &command, &started)
            .map_err(|e| ApiError::internal("could not write the task's files", e))?;
        // The slot counts against the cap from here, and the directory is
        // watched before anything can run in it.
        if let Err(e) = self.register_live(&id, TaskState::Starting) {
            self.unregister_live(&id);
            return Err(ApiError::internal("could not watch the task directory", e));
        }
        drop(_guard);

        let run = format!(
            "exec sh {}",
            sh_quote(&dir.join("run.sh").to_string_lossy())
        );
        let pipe = self.pipe_command(&dir);
        // What the tmux status bar shows: the task's name, else its prompt.
        let title = req
            .name
            .clone()
            .or_else(|| prompt.clone())
            .unwrap_or_else(|| format!("{} task", assistant.name));
        let spec = SessionSpec {
            name: &session,
            title: &title,
            workdir: &workdir,
            env: &env,
            command: &run,
            pipe_command: &pipe,
            started_channel: &started,
        };
        // The record is written while tmux starts the session, neither
        // waiting for the other (syncing the record to disk costs about as
        // much as the rest of a start). A session whose record never got
        // written (this process died in between) is ended at the next
        // start (`recover`).
        let insert = self.store.insert_task(NewTask {
            id: id.clone(),
            name: req.name,
            assistant: assistant.name.clone(),
            prompt: prompt.clone(),
            workdir: workdir.to_string_lossy().into_owned(),
            env_keys: env.iter().map(|(k, _)| k.clone()).collect(),
            tmux_session: session.clone(),
            hook_url: hook.as_ref().map(|h| h.url.clone()),
            hook_secret: hook.and_then(|h| h.secret),
        });
        let (inserted, started) = tokio::join!(insert, self.tmux.new_session(&spec));
        let rec = match inserted {
            Ok(rec) => rec,
            Err(e) => {
                // Nothing would ever refer to the session.
                if let Err(e) = self.tmux.kill_session(&session).await {
                    tracing::warn!(task.id = id, error = %e, "could not end the session of an unrecorded task");
                }
                self.unregister_live(&id);
                return Err(e.into());
            }
        };
        self.metrics.tasks_created.inc();
        self.events.publish(ServerEvent::TaskCreated {
            task: TaskView::from(&rec),
        });
        if let Err(e) = started {
            tracing::error!(task.id = id, error = %e, "could not start the tmux session");
            let msg = format!("could not start the tmux session: {}", e.public());
            self.move_to(
                &id,
                TaskState::Failed,
                TransitionInfo {
                    error: Some(msg.clone()),
                    reason: Some("tmux failed".into()),
                    ..Default::default()
                },
            )
            .await;
            return Err(ApiError::unavailable("tmux_failed", msg));
        }
        let rec = self
            .move_to(&id, TaskState::Running, reason("session started"))
            .await
            .unwrap_or(rec);
        // A command that ended before its record existed left an exit
        // record that nothing could finish yet.
        if self.read_exit_record(&id).is_some() {
            let mgr = self.clone();
            let id = id.clone();
            tokio::spawn(async move { mgr.finish_from_exit_record(&id).await });
        }
        self.spawn_monitor(&id);
        if let (Some(p), PromptDelivery::Typed) = (prompt, assistant.prompt_delivery) {
            let mgr = self.clone();
            let id = id.clone();
            tokio::spawn(async move { mgr.type_prompt_when_ready(&id, &session, &p).await });
        }
        Ok(rec)
    }

    /// A hook URL is checked when the task is created, so a refused one is
    /// a 400 now rather than a dead letter later.
    pub async fn check_hook(&self, h: &HookSpec) -> ApiResult<()> {
        if let Some(s) = &h.secret {
            if s.is_empty() || s.len() > 1024 || s.contains('\0') {
                return Err(ApiError::bad_request(
                    "invalid_hook",
                    "the hook secret must be 1 to 1024 bytes without NUL",
                ));
            }
        }
        self.hook_guard
            .check(&h.url)
            .await
            .map(|_| ())
            .map_err(|e| ApiError::bad_request("hook_refused", e.to_string()))
    }

    async fn type_prompt_when_ready(&self, id: &str, session: &str, prompt: &str) {
        // Ready means: the program drew something and then paused briefly.
        let Some(mut rx) = self.pulse(id) else { return };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let _ = tokio::time::timeout_at(deadline, async {
            while rx.borrow_and_update().output == 0 {
                if rx.changed().await.is_err() {
                    return;
                }
            }
            while let Ok(Ok(())) =
                tokio::time::timeout(Duration::from_millis(500), rx.changed()).await
            {}
        })
        .await;
        if let Err(e) = self.tmux.send_text(session, prompt).await {
            tracing::warn!(task.id = id, error = %e, "could not type the prompt");
            return;
        }
        let _ = self.tmux.send_keys(session, &["Enter"]).await;
    }

    /// Type a follow-up message into a live task.
    pub async fn message(&self, id: &str, text: &str, enter: bool) -> ApiResult<()> {
        let rec = self.get(id).await?;
        self.require_live(&rec)?;
        if text.contains('\0') {
            return Err(ApiError::bad_request(
                "invalid_text",
                "text contains a NUL byte",
            ));
        }
        if !text.is_empty() {
            self.tmux
                .send_text(&rec.tmux_session, text)
                .await
                .map_err(tmux_unavailable("could not type into the task"))?;
        }
        if enter {
            self.tmux
                .send_keys(&rec.tmux_session, &["Enter"])
                .await
                .map_err(tmux_unavailable("could not type into the task"))?;
        }
        Ok(())
    }

    /// Send allowlisted keys to a live task.
    pub async fn keys(&self, id: &str, keys: &[String]) -> ApiResult<()> {
        if keys.is_empty() || keys.len() > 32 {
            return Err(ApiError::bad_request(
                "invalid_keys",
                "send between 1 and 32 keys",
            ));
        }
        if let Some(bad) = keys.iter().find(|k| !ALLOWED_KEYS.contains(&k.as_str())) {
            return Err(ApiError::bad_request(
                "key_not_allowed",
                format!(
                    "key `{bad}` is not allowed (allowed: {})",
                    ALLOWED_KEYS.join(" ")
                ),
            ));
        }
        let rec = self.get(id).await?;
        self.require_live(&rec)?;
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.tmux
            .send_keys(&rec.tmux_session, &refs)
            .await
            .map_err(tmux_unavailable("could not send keys"))
    }

    /// Kill a live task's session; it ends `killed`.
    pub async fn kill(&self, id: &str) -> ApiResult<TaskRecord> {
        let rec = self.get(id).await?;
        self.require_live(&rec)?;
        // Record the kill first, so the exit the kill causes is not taken
        // for the task's own ending.
        let killed = self
            .move_to(id, TaskState::Killed, reason("killed by request"))
            .await;
        if let Err(e) = self.tmux.kill_session(&rec.tmux_session).await {
            tracing::warn!(task.id = id, error = %e, "could not kill the tmux session");
        }
        match killed {
            Some(r) => Ok(r),
            // It finished on its own in the meantime.
            None => self.get(id).await,
        }
    }

    /// Forget a finished task: its record, its transitions and its files
    /// (prompt, script, output log). A live one must be killed first.
    pub async fn remove(&self, id: &str) -> ApiResult<()> {
        let rec = self.get(id).await?;
        if !rec.state.is_final() {
            return Err(ApiError::conflict(
                "task_live",
                format!(
                    "task `{id}` is still {}; kill it first (DELETE /api/tasks/{id})",
                    rec.state
                ),
            ));
        }
        match self.store.delete_finished_task(id).await? {
            TaskRemoval::Removed => {}
            TaskRemoval::NotFinished => return Err(ApiError::task_not_found(id)),
            TaskRemoval::DeliveryPending => {
                return Err(ApiError::conflict(
                    "delivery_pending",
                    format!("task `{id}`'s completion hook is still being delivered; remove the task once it is delivered or dead"),
                ))
            }
        }
        let dir = self.task_dir(id);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(task.id = id, error = %e, "could not remove the task's files");
            }
        }
        self.events
            .publish(ServerEvent::TaskRemoved { id: id.to_string() });
        Ok(())
    }

    fn require_live(&self, rec: &TaskRecord) -> ApiResult<()> {
        if rec.state.is_final() {
            return Err(ApiError::conflict(
                "task_finished",
                format!("task `{}` has already finished ({})", rec.id, rec.state),
            ));
        }
        Ok(())
    }
}

/// A tmux failure as a 503 that names what could not be done.
fn tmux_unavailable(what: &'static str) -> impl Fn(tmux::TmuxError) -> ApiError {
    move |e| {
        tracing::error!(error = %e, "{what}");
        ApiError::unavailable("tmux_failed", format!("{what}: {}", e.public()))
    }
}
