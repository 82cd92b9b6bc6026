//! Hook deliveries: list (with every attempt) and redeliver.
//! Secrets are never part of an answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::clock::rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::hooks::hook_url_view;
use crate::http::AppState;
use crate::store::DeliveryState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead`.
    state: Option<String>,
    task_id: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(app): State<AppState>,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<Response> {
    let state = q
        .state
        .as_deref()
        .map(|s| {
            DeliveryState::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("unknown delivery state `{s}` (pending, delivered, dead)"),
                )
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 500",
        ));
    }
    let rows = app.store.list_deliveries(state, q.task_id, limit).await?;
    let writer = app.auth.may_write();
    let deliveries: Vec<_> = rows
        .into_iter()
        .map(|(d, attempts)| {
            json!({
                "id": d.id,
                "task_id": d.task_id,
                "url": hook_url_view(Some(&d.url), writer),
                "signed": d.secret.is_some(),
                "state": d.state,
                "attempts": d.attempts,
                "next_attempt_at": (d.state == DeliveryState::Pending).then(|| rfc3339(d.next_attempt_at)),
                "last_status": d.last_status,
                "last_error": d.last_error,
                "created_at": rfc3339(d.created_at),
                "finished_at": d.finished_at.map(rfc3339),
                "history": attempts.iter().map(|a| json!({
                    "at": rfc3339(a.at),
                    "status": a.status,
                    "error": a.error,
                    "duration_ms": a.duration_ms,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "deliveries": deliveries })).into_response())
}

pub async fn redeliver(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    if !app.store.redeliver(&id).await? {
        return Err(ApiError::not_found(format!(
            "hook delivery `{id}` does not exist"
        )));
    }
    app.hook_wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"id": id, "state": DeliveryState::Pending})),
    )
        .into_response())
}
