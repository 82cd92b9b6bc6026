//! How stored things look on the wire, for every caller that shows them
//! (routes, the event bus, streams): one place, below all of them.

use serde::Serialize;

use crate::clock::rfc3339;
use crate::store::TaskRecord;
use crate::task_state::TaskState;

/// A task as the API shows it. Secrets and env values are never included.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    pub name: Option<String>,
    pub assistant: String,
    pub prompt: Option<String>,
    pub workdir: String,
    pub env_keys: Vec<String>,
    pub state: TaskState,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub tmux_session: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: String,
}

impl From<&TaskRecord> for TaskView {
    fn from(r: &TaskRecord) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            assistant: r.assistant.clone(),
            prompt: r.prompt.clone(),
            workdir: r.workdir.clone(),
            env_keys: r.env_keys.clone(),
            state: r.state,
            exit_code: r.exit_code,
            error: r.error.clone(),
            tmux_session: r.tmux_session.clone(),
            created_at: rfc3339(r.created_at),
            started_at: r.started_at.map(rfc3339),
            finished_at: r.finished_at.map(rfc3339),
            updated_at: rfc3339(r.updated_at),
        }
    }
}
