//! What a completion hook sends (`crate::signature` signs it).

use serde_json::json;

use crate::clock::rfc3339;
use crate::store::TaskRecord;

/// The JSON body for a task that reached a final state. Written into the
/// outbox with the state, so every attempt sends the same bytes.
pub fn completion(rec: &TaskRecord, output_tail: Option<&str>, delivery_id: &str) -> String {
    json!({
        "event": "task.finished",
        "delivery_id": delivery_id,
        "task_id": rec.id,
        "name": rec.name,
        "assistant": rec.assistant,
        "status": rec.state,
        "exit_code": rec.exit_code,
        "error": rec.error,
        "workdir": rec.workdir,
        "created_at": rfc3339(rec.created_at),
        "started_at": rec.started_at.map(rfc3339),
        "finished_at": rec.finished_at.map(rfc3339),
        "output_tail": output_tail,
    })
    .to_string()
}
