//! A task's life after it starts: transitions (a final one writes the
//! completion hook's delivery with it), exit records turned into final
//! states, the quiet monitor (`running` ↔ `waiting_for_input`),
//! re-attachment after a restart, and the sweep for vanished sessions.

use std::sync::Arc;

use super::output_log;
use super::watch::EXIT_FILE;
use super::TaskManager;
use crate::events::ServerEvent;
use crate::metrics::FinishedLabels;
use crate::store::{Moved, TaskRecord, TransitionInfo};
use crate::task_state::TaskState;
use crate::views::TaskView;

const HOOK_TAIL_LINES: usize = 50;
const HOOK_TAIL_BYTES: u64 = 64 * 1024;
/// How long a finished task's output may take to reach its log.
const OUTPUT_END_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl TaskManager {
    /// Record a transition from any live state.
    pub(super) async fn move_to(
        &self,
        id: &str,
        to: TaskState,
        info: TransitionInfo,
    ) -> Option<TaskRecord> {
        self.transition(id, &TaskState::LIVE, to, info).await
    }

    /// Record a transition if the task is in one of `from`; tell its pulse
    /// and the event bus; finish the bookkeeping when it is final.
    pub(super) async fn transition(
        &self,
        id: &str,
        from: &'static [TaskState],
        to: TaskState,
        mut info: TransitionInfo,
    ) -> Option<TaskRecord> {
        if to.is_final() {
            // For a completion hook's payload, read before the transaction;
            // the store writes the delivery with the final state.
            let dir = self.task_dir(id);
            let tail = tokio::task::spawn_blocking(move || {
                output_log::tail(&dir, HOOK_TAIL_LINES, HOOK_TAIL_BYTES)
                    .ok()
                    .map(|b| output_log::to_plain_text(&b))
            })
            .await
            .ok()
            .flatten();
            info.completion = Some(Box::new(move |rec, delivery_id| {
                crate::hooks::payload::completion(rec, tail.as_deref(), delivery_id)
            }));
        }
        let moved = match self.store.transition(id, from, to, info).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(task.id = id, error = %e, "could not record a task transition");
                return None;
            }
        };
        let Moved {
            from,
            task: rec,
            delivery,
        } = moved?;
        if delivery.is_some() {
            self.hook_wake.notify_one();
        }
        tracing::info!(task.id = id, from = %from, to = %to, exit_code = ?rec.exit_code, "task state changed");
        let finished = to.is_final();
        if let Ok(m) = self.live.lock() {
            if let Some(tx) = m.get(id) {
                tx.send_modify(|p| p.state = to);
            }
        }
        if finished {
            self.unregister_live(id);
            if let Some(started) = rec.started_at {
                let secs = (rec.finished_at.unwrap_or(started) - started).max(0) as f64 / 1000.0;
                self.metrics
                    .task_duration
                    .get_or_create(&FinishedLabels {
                        assistant: rec.assistant.clone(),
                        state: to.as_str().into(),
                    })
                    .observe(secs);
            }
        }
        self.events.publish(ServerEvent::TaskState {
            task: TaskView::from(&rec),
            from: from.as_str().into(),
        });
        Some(rec)
    }

    /// The exit record is written just before the pane closes, and tmux
    /// hands the pane's last output to `pipe-log` just after: wait (briefly,
    /// bounded) until the log has all of it, so the final state, the hook's
    /// output tail and the stream's `end` come after the last line.
    pub(super) async fn wait_for_output_end(&self, id: &str) {
        let done = self.task_dir(id).join(output_log::DONE);
        let deadline = tokio::time::Instant::now() + OUTPUT_END_WAIT;
        while !done.exists() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub(super) fn read_exit_record(&self, id: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.task_dir(id).join(EXIT_FILE)).ok()?;
        text.trim().parse().ok()
    }

    pub(super) async fn finish_from_exit_record(&self, id: &str) {
        let Some(code) = self.read_exit_record(id) else {
            return;
        };
        self.wait_for_output_end(id).await;
        let to = if code == 0 {
            TaskState::Succeeded
        } else {
            TaskState::Failed
        };
        self.move_to(
            id,
            to,
            TransitionInfo {
                exit_code: Some(code),
                reason: Some("exited".into()),
                ..Default::default()
            },
        )
        .await;
    }

    /// Watch for quiet: `running` ↔ `waiting_for_input` by output activity.
    pub(super) fn spawn_monitor(self: &Arc<Self>, id: &str) {
        let Some(mut rx) = self.pulse(id) else { return };
        let weak = Arc::downgrade(self);
        let id = id.to_string();
        let idle = self.limits.input_idle;
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut seen = rx.borrow().output;
            loop {
                // The quiet timer runs only while the task is running: a
                // task already waiting for input sleeps until its next
                // output or state change (no wake-ups while nothing happens).
                let running = rx.borrow().state == TaskState::Running;
                let changed = if running {
                    tokio::select! {
                        changed = tokio::time::timeout(idle, rx.changed()) => changed,
                        _ = shutdown.cancelled() => return,
                    }
                } else {
                    tokio::select! {
                        changed = rx.changed() => Ok(changed),
                        _ = shutdown.cancelled() => return,
                    }
                };
                let Some(mgr) = weak.upgrade() else { return };
                match changed {
                    Ok(Err(_)) => return, // the task finished
                    Ok(Ok(())) => {
                        let p = *rx.borrow_and_update();
                        if p.state.is_final() {
                            return;
                        }
                        if p.output != seen {
                            seen = p.output;
                            if p.state == TaskState::WaitingForInput {
                                mgr.transition(
                                    &id,
                                    &[TaskState::WaitingForInput],
                                    TaskState::Running,
                                    reason("output"),
                                )
                                .await;
                            }
                        }
                    }
                    Err(_) => {
                        let state = rx.borrow().state;
                        if state == TaskState::Running {
                            mgr.transition(
                                &id,
                                &[TaskState::Running],
                                TaskState::WaitingForInput,
                                reason("quiet"),
                            )
                            .await;
                        }
                    }
                }
            }
        });
    }

    /// Re-attach to live tasks after a start: finished while we were down,
    /// still running in tmux, or lost.
    pub(super) async fn recover(self: &Arc<Self>) {
        let tasks = match self.store.live_tasks().await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "could not read live tasks to re-attach");
                return;
            }
        };
        let sessions = self.tmux.list_sessions().await.unwrap_or_default();
        // A session started for a task whose record was never written (the
        // process ended between the two) runs for nobody: end it.
        for name in &sessions {
            let Some(id) = super::tmux::task_of_session(name) else {
                continue;
            };
            if tasks.iter().any(|t| t.id == id) {
                continue;
            }
            if let Ok(Some(_)) = self.store.get_task(id).await {
                continue;
            }
            tracing::warn!(
                task.id = id,
                "ending a tmux session whose task was never recorded"
            );
            if let Err(e) = self.tmux.kill_session(name).await {
                tracing::warn!(task.id = id, error = %e, "could not end the session");
            }
        }
        for t in tasks {
            if let Err(e) = self.register_live(&t.id, t.state) {
                tracing::warn!(task.id = %t.id, error = %e, "could not watch a task directory");
            }
            if self.read_exit_record(&t.id).is_some() {
                self.finish_from_exit_record(&t.id).await;
            } else if sessions.contains(&t.tmux_session) {
                tracing::info!(task.id = %t.id, "re-attached to a running task");
                if t.state == TaskState::Starting {
                    self.move_to(&t.id, TaskState::Running, reason("re-attached"))
                        .await;
                }
                self.spawn_monitor(&t.id);
            } else {
                self.move_to(
                    &t.id,
                    TaskState::Lost,
                    reason("session vanished while the server was down"),
                )
                .await;
            }
        }
    }

    /// Backstop for sessions that vanish without an exit record (killed
    /// from outside, tmux server died).
    pub(super) async fn sweep_vanished(&self) {
        let ids: Vec<String> = match self.live.lock() {
            Ok(m) => m.keys().cloned().collect(),
            Err(_) => return,
        };
        if ids.is_empty() {
            return;
        }
        let Ok(sessions) = self.tmux.list_sessions().await else {
            return;
        };
        let mut unlisted = Vec::new();
        for id in ids {
            if sessions.contains(&super::tmux::session_name(&id)) {
                continue;
            }
            let Ok(Some(rec)) = self.store.get_task(&id).await else {
                continue;
            };
            // A session being created is not yet listed.
            if rec.state == TaskState::Starting {
                continue;
            }
            if self.read_exit_record(&id).is_some() {
                self.finish_from_exit_record(&id).await;
            } else {
                unlisted.push(id);
            }
        }
        if unlisted.is_empty() {
            return;
        }
        // A task that left Starting after the listing above was taken has
        // its session by now: only one missing from a second listing is lost.
        let Ok(sessions) = self.tmux.list_sessions().await else {
            return;
        };
        for id in unlisted {
            if sessions.contains(&super::tmux::session_name(&id)) {
                continue;
            }
            if self.read_exit_record(&id).is_some() {
                self.finish_from_exit_record(&id).await;
            } else {
                self.move_to(&id, TaskState::Lost, reason("session vanished"))
                    .await;
            }
        }
    }
}

pub(super) fn reason(r: &str) -> TransitionInfo {
    TransitionInfo {
        reason: Some(r.into()),
        ..Default::default()
    }
}
