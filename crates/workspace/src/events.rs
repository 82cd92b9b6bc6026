//! The server-wide event bus behind `GET /api/events`, and the pusher of
//! `system` samples while anyone listens.
//!
//! A broadcast channel: publishers never wait, and a subscriber that falls
//! too far behind is told to resync instead of slowing everyone down.

use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::system_stats::{Sampler, PUSH_EVERY};
use crate::views::TaskView;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    TaskCreated {
        task: TaskView,
    },
    TaskState {
        task: TaskView,
        from: String,
    },
    /// A finished task was removed with its files.
    TaskRemoved {
        id: String,
    },
    /// CPU, memory and disk of the workspace, pushed every few seconds
    /// while someone listens.
    System {
        stats: crate::system_stats::SystemStats,
    },
    /// The file API changed something under this directory of the home.
    FilesChanged {
        dir: String,
    },
    /// A hook delivery ended: `delivered` or `dead`.
    HookDelivery {
        delivery_id: String,
        task_id: String,
        state: String,
        status: Option<u16>,
    },
}

impl ServerEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ServerEvent::TaskCreated { .. } => "task_created",
            ServerEvent::TaskState { .. } => "task_state",
            ServerEvent::TaskRemoved { .. } => "task_removed",
            ServerEvent::HookDelivery { .. } => "hook_delivery",
            ServerEvent::System { .. } => "system",
            ServerEvent::FilesChanged { .. } => "files_changed",
        }
    }
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<ServerEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self { tx }
    }

    pub fn publish(&self, ev: ServerEvent) {
        // No subscribers is fine.
        let _ = self.tx.send(ev);
    }

    /// Open `/api/events` streams (work done only for listeners checks this).
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.tx.subscribe()
    }
}

/// Push a `system` sample every `PUSH_EVERY` while the bus has listeners.
pub fn spawn_system_pusher(bus: EventBus, sampler: Sampler, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PUSH_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if bus.listeners() == 0 {
                continue;
            }
            let s = sampler.clone();
            if let Ok(stats) = tokio::task::spawn_blocking(move || s.sample()).await {
                bus.publish(ServerEvent::System { stats });
            }
        }
    });
}
