//! `GET /api/system`: the workspace's name, version and CPU/memory/disk
//! figures (the dashboard header; later figures arrive as `system` events).

use axum::extract::State;
use serde_json::{json, Value};

use crate::http::AppState;

pub async fn system(State(app): State<AppState>) -> axum::Json<Value> {
    let sampler = app.system.clone();
    let stats = tokio::task::spawn_blocking(move || sampler.sample())
        .await
        .ok();
    axum::Json(json!({
        "name": app.name,
        "version": env!("CARGO_PKG_VERSION"),
        "read_only": app.auth.read_only(),
        "stats": stats,
    }))
}
