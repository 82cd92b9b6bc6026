//! `GET /livez` and `GET /readyz`: no auth, no details; and
//! `GET /api/activity` (api listener, Bearer) for the operator's idle stop.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::http::AppState;

pub async fn livez() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers.
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    match app.store.count_by_state().await {
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
        }
    }
}

/// When someone last used the workspace, and how many tasks are live.
pub async fn activity(State(app): State<AppState>) -> Json<Value> {
    let last = crate::clock::rfc3339(app.activity.last_ms());
    Json(json!({
        "last_activity": last,
        "idle_seconds": app.activity.idle_seconds(),
        "running_tasks": app.tasks.live_count(),
    }))
}
