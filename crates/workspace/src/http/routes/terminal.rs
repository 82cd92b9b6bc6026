//! `GET /api/tasks/{id}/terminal`: the WebSocket behind the dashboard's
//! terminal. Checks before the upgrade, so refusals are JSON: the caller's
//! page must be ours (Origin), the task must still have its tmux session.
//! In read-only mode the terminal is view-only.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use crate::auth::{require_same_origin, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::http::sse::take_slot;
use crate::http::AppState;
use crate::terminal::{self, Attach};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalQuery {
    cols: Option<u16>,
    rows: Option<u16>,
}

pub async fn terminal(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<TerminalQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    // A WebSocket carries the browser's cookie from any page that opens it
    // (no CORS here): only our own pages may (cross-site WebSocket hijacking).
    if caller.via != "bearer" {
        require_same_origin(&headers)?;
    }
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(
            "websocket_expected",
            format!("this endpoint speaks WebSocket: {e}"),
        )
    })?;
    let task = app.tasks.get(&id).await?;
    if task.state.is_final() {
        return Err(ApiError::conflict(
            "task_finished",
            format!(
                "task {id} has ended ({}); its output is at /api/tasks/{id}/output",
                task.state.as_str()
            ),
        ));
    }
    let alive = app
        .tasks
        .tmux()
        .has_session(&task.tmux_session)
        .await
        .map_err(|e| ApiError::internal("could not ask tmux", e))?;
    if !alive {
        return Err(ApiError::conflict(
            "task_finished",
            format!("task {id} has no tmux session any more"),
        ));
    }
    // A terminal holds a tmux client process: it counts against the same
    // cap as event streams.
    let slot = take_slot(&app)?;
    let attach = Attach {
        tmux: app.tasks.tmux().clone(),
        session: task.tmux_session,
        read_only: app.auth.read_only(),
        cols: q.cols.unwrap_or(80),
        rows: q.rows.unwrap_or(24),
        activity: app.activity.clone(),
    };
    Ok(upgrade
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            terminal::run(socket, attach).await
        }))
}
