//! The task API: list, create, detail, output, message, keys, kill.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::http::AppState;
use crate::store::TaskFilter;
use crate::task_state::TaskState;
use crate::tasks::output_log::{tail, to_plain_text};
use crate::tasks::CreateTask;
use crate::views::TaskView;

const MAX_PAGE: usize = 500;
const MAX_TAIL_LINES: usize = 10_000;
/// How far back `tail` reads at most.
const TAIL_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated states.
    state: Option<String>,
    assistant: Option<String>,
    /// Substring of the task name.
    name: Option<String>,
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
}

#[derive(Serialize)]
pub struct Page {
    tasks: Vec<TaskView>,
    next_cursor: Option<i64>,
}

pub async fn list(
    State(app): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Page>> {
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let mut states = Vec::new();
    for s in q
        .state
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
    {
        states.push(TaskState::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("unknown state `{s}`"))
        })?);
    }
    let tasks = app
        .store
        .list_tasks(TaskFilter {
            states,
            assistant: q.assistant,
            name: q.name,
            before: q.cursor,
            limit: limit + 1,
        })
        .await?;
    let more = tasks.len() > limit;
    let tasks: Vec<_> = tasks.into_iter().take(limit).collect();
    let next_cursor = if more {
        tasks.last().map(|t| t.seq)
    } else {
        None
    };
    Ok(axum::Json(Page {
        tasks: tasks.iter().map(TaskView::from).collect(),
        next_cursor,
    }))
}

pub async fn create(
    State(app): State<AppState>,
    Json(req): Json<CreateTask>,
) -> ApiResult<Response> {
    let rec = app.tasks.create(req).await?;
    let location = format!("/api/tasks/{}", rec.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(TaskView::from(&rec)),
    )
        .into_response())
}

pub async fn detail(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let rec = app.tasks.get(&id).await?;
    let transitions: Vec<_> = app
        .store
        .transitions(&id)
        .await?
        .into_iter()
        .map(|t| {
            json!({
                "from": t.from.map(|s| s.as_str()),
                "to": t.to.as_str(),
                "at": rfc3339(t.at),
                "reason": t.reason,
            })
        })
        .collect();
    let mut body = serde_json::to_value(TaskView::from(&rec))
        .map_err(|e| ApiError::internal("could not encode the task", e))?;
    body["transitions"] = transitions.into();
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputQuery {
    /// Last N lines (default 200).
    tail: Option<usize>,
    /// Keep terminal escape sequences.
    #[serde(default)]
    raw: bool,
}

/// Recent output, as text, or JSON when the client asks for it.
pub async fn output(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<OutputQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let lines = q.tail.unwrap_or(200);
    if lines > MAX_TAIL_LINES {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("tail must be at most {MAX_TAIL_LINES}"),
        ));
    }
    let rec = app.tasks.get(&id).await?;
    let dir = app.tasks.task_dir(&id);
    let bytes = tokio::task::spawn_blocking(move || tail(&dir, lines, TAIL_BYTES))
        .await
        .map_err(|e| ApiError::internal("could not read the task output", e))?
        .map_err(|e| ApiError::internal("could not read the task output", e))?;
    let text = if q.raw {
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        to_plain_text(&bytes)
    };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        Ok(axum::Json(json!({
            "id": rec.id,
            "state": rec.state,
            "exit_code": rec.exit_code,
            "output": text,
        }))
        .into_response())
    } else {
        Ok((
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            text,
        )
            .into_response())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    text: String,
    /// Press Enter after the text (default true).
    enter: Option<bool>,
}

pub async fn message(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(m): Json<Message>,
) -> ApiResult<Response> {
    app.tasks
        .message(&id, &m.text, m.enter.unwrap_or(true))
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"sent": true}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    keys: Vec<String>,
}

pub async fn keys(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(k): Json<Keys>,
) -> ApiResult<Response> {
    app.tasks.keys(&id, &k.keys).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"sent": k.keys.len()})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Forget a finished task and its logs instead of killing a live one.
    #[serde(default)]
    remove: bool,
}

/// Kill a live task (200 with it), or with `?remove=true` forget a
/// finished one and its files (204).
pub async fn kill(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Response> {
    if q.remove {
        app.tasks.remove(&id).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let rec = app.tasks.kill(&id).await?;
    Ok(axum::Json(TaskView::from(&rec)).into_response())
}

pub async fn assistants(State(app): State<AppState>) -> axum::Json<serde_json::Value> {
    let list: Vec<_> = app
        .tasks
        .assistants()
        .all()
        .iter()
        .map(|a| {
            let can = a.availability();
            json!({
                "name": a.name,
                "description": a.description,
                "prompt_delivery": a.prompt_delivery,
                "program": can.program,
                "available": can.available,
                "install": can.install,
            })
        })
        .collect();
    axum::Json(json!({
        "default": app.tasks.assistants().default_name(),
        "assistants": list,
    }))
}
