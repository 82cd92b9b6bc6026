//! Schedules: create (validated cron and time zone), list, delete, and the
//! record of firings, missed ones included.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::clock::rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::hooks::{hook_url_view, HookSpec};
use crate::http::AppState;
use crate::secrets::generate_id;
use crate::store::{MissedPolicy, Schedule};
use crate::triggers::schedule::{next_after, parse_cron, parse_tz};
use crate::triggers::validate_target;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    name: String,
    /// Five fields (minute first) or six (seconds first).
    cron: String,
    /// IANA zone the expression is read in (default UTC).
    timezone: Option<String>,
    prompt: Option<String>,
    assistant: Option<String>,
    workdir: Option<String>,
    hook: Option<HookSpec>,
    /// `run_once` (default) or `skip`: firings missed while the server was down.
    missed: Option<String>,
}

/// `writer`: whether the caller may change the workspace; only writers
/// see a hook URL whole (its path is often a secret).
fn view(s: &Schedule, writer: bool) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "cron": s.cron,
        "timezone": s.timezone,
        "prompt": s.prompt,
        "assistant": s.assistant,
        "workdir": s.workdir,
        "hook_url": hook_url_view(s.hook_url.as_deref(), writer),
        "missed": s.missed_policy,
        "next_run": (s.next_at < i64::MAX).then(|| rfc3339(s.next_at)),
        "created_at": rfc3339(s.created_at),
    })
}

pub async fn create(
    State(app): State<AppState>,
    Json(n): Json<NewSchedule>,
) -> ApiResult<Response> {
    validate_target(&app.tasks, &n.name, n.assistant.as_deref(), n.hook.as_ref()).await?;
    let cron = parse_cron(&n.cron).map_err(|e| ApiError::bad_request("invalid_cron", e))?;
    let tz_name = n.timezone.unwrap_or_else(|| "UTC".into());
    let tz = parse_tz(&tz_name).map_err(|e| ApiError::bad_request("invalid_timezone", e))?;
    let missed = match n.missed.as_deref() {
        None => Some(MissedPolicy::RunOnce),
        Some(m) => MissedPolicy::parse(m),
    };
    let Some(missed) = missed else {
        return Err(ApiError::bad_request(
            "invalid_missed",
            format!("missed must be {}", MissedPolicy::words()),
        ));
    };
    let now = now_ms();
    let next_at = next_after(&cron, tz, now).ok_or_else(|| {
        ApiError::bad_request("invalid_cron", format!("`{}` never fires", n.cron))
    })?;
    let s = Schedule {
        id: generate_id(),
        name: n.name,
        cron: n.cron,
        timezone: tz_name,
        prompt: n.prompt.filter(|p| !p.trim().is_empty()),
        assistant: n.assistant,
        workdir: n.workdir,
        hook_url: n.hook.as_ref().map(|h| h.url.clone()),
        hook_secret: n.hook.and_then(|h| h.secret),
        missed_policy: missed,
        next_at,
        created_at: now,
    };
    app.store.insert_schedule(s.clone()).await?;
    app.schedule_wake.notify_one();
    Ok((StatusCode::CREATED, axum::Json(view(&s, true))).into_response())
}

pub async fn list(State(app): State<AppState>) -> ApiResult<Response> {
    let all = app.store.list_schedules().await?;
    Ok(axum::Json(
        json!({"schedules": all.iter().map(|x| view(x, app.auth.may_write())).collect::<Vec<_>>()}),
    )
    .into_response())
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    if !app.store.delete_schedule(&id).await? {
        return Err(not_found(&id));
    }
    app.schedule_wake.notify_one();
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("schedule `{id}` does not exist"))
}

pub async fn firings(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let store = app.store;
    if !store.list_schedules().await?.iter().any(|s| s.id == id) {
        return Err(not_found(&id));
    }
    let f = store.firings(&id, 500).await?;
    let list: Vec<_> = f
        .iter()
        .map(|f| {
            json!({
                "due_at": rfc3339(f.due_at),
                "fired_at": rfc3339(f.fired_at),
                "outcome": f.outcome,
                "task_id": f.task_id,
                "error": f.error,
            })
        })
        .collect();
    Ok(axum::Json(json!({"firings": list})).into_response())
}
