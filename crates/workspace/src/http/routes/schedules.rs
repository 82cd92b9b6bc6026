//! Schedules: create (validated cron and time zone), edit (pause and
//! resume too), run now, list, delete, and the record of firings, missed
//! ones included.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::clock::rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::extract::{nullable, Json, Path};
use crate::hooks::{hook_url_view, HookSpec};
use crate::http::AppState;
use crate::secrets::generate_id;
use crate::store::{MissedPolicy, Schedule};
use crate::triggers::schedule::{count, fire, next_after, parse_cron, parse_tz};
use crate::triggers::{validate_target, Target, TargetPatch};

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
    /// Created paused: fires nothing until resumed.
    #[serde(default)]
    paused: bool,
}

/// `PATCH /api/schedules/{id}`: what changes; the rest stays.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulePatch {
    cron: Option<String>,
    timezone: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    prompt: Option<Option<String>>,
    missed: Option<String>,
    #[serde(flatten)]
    target: TargetPatch,
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
        "paused": s.paused,
        "next_run": (s.next_at < i64::MAX).then(|| rfc3339(s.next_at)),
        "created_at": rfc3339(s.created_at),
    })
}

fn parse_missed(m: Option<&str>) -> ApiResult<MissedPolicy> {
    match m {
        None => Ok(MissedPolicy::RunOnce),
        Some(m) => MissedPolicy::parse(m).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_missed",
                format!("missed must be {}", MissedPolicy::words()),
            )
        }),
    }
}

/// The next due time of `s` after `now`, from its cron and time zone
/// (checked again here: both may have just changed); never while paused.
fn next_run(s: &Schedule, now: i64) -> ApiResult<i64> {
    let cron = parse_cron(&s.cron).map_err(|e| ApiError::bad_request("invalid_cron", e))?;
    let tz = parse_tz(&s.timezone).map_err(|e| ApiError::bad_request("invalid_timezone", e))?;
    let next = next_after(&cron, tz, now).ok_or_else(|| {
        ApiError::bad_request("invalid_cron", format!("`{}` never fires", s.cron))
    })?;
    Ok(if s.paused { i64::MAX } else { next })
}

pub async fn create(
    State(app): State<AppState>,
    Json(n): Json<NewSchedule>,
) -> ApiResult<Response> {
    validate_target(&app.tasks, &n.name, n.assistant.as_deref(), n.hook.as_ref()).await?;
    let now = now_ms();
    let mut s = Schedule {
        id: generate_id(),
        name: n.name,
        cron: n.cron,
        timezone: n.timezone.unwrap_or_else(|| "UTC".into()),
        prompt: n.prompt.filter(|p| !p.trim().is_empty()),
        assistant: n.assistant,
        workdir: n.workdir,
        hook_url: n.hook.as_ref().map(|h| h.url.clone()),
        hook_secret: n.hook.and_then(|h| h.secret),
        missed_policy: parse_missed(n.missed.as_deref())?,
        next_at: 0,
        created_at: now,
        paused: n.paused,
    };
    s.next_at = next_run(&s, now)?;
    app.store.insert_schedule(s.clone()).await?;
    app.schedule_wake.notify_one();
    Ok((StatusCode::CREATED, axum::Json(view(&s, true))).into_response())
}

async fn existing(app: &AppState, id: &str) -> ApiResult<Schedule> {
    app.store
        .get_schedule(id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Edit a schedule: pause (`{"paused": true}`), resume, or change any of
/// its fields. Its next run is worked out again from now.
pub async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(p): Json<SchedulePatch>,
) -> ApiResult<Response> {
    let mut s = existing(&app, &id).await?;
    if let Some(c) = p.cron {
        s.cron = c;
    }
    if let Some(tz) = p.timezone {
        s.timezone = tz;
    }
    if let Some(prompt) = p.prompt {
        s.prompt = prompt.filter(|p| !p.trim().is_empty());
    }
    if p.missed.is_some() {
        s.missed_policy = parse_missed(p.missed.as_deref())?;
    }
    p.target
        .apply(
            &app.tasks,
            Target {
                name: &mut s.name,
                assistant: &mut s.assistant,
                workdir: &mut s.workdir,
                hook_url: &mut s.hook_url,
                hook_secret: &mut s.hook_secret,
                paused: &mut s.paused,
            },
        )
        .await?;
    s.next_at = next_run(&s, now_ms())?;
    if !app.store.update_schedule(s.clone()).await? {
        return Err(not_found(&id));
    }
    app.schedule_wake.notify_one();
    Ok(axum::Json(view(&s, true)).into_response())
}

/// Run a schedule's task now, paused or not, without moving its next run;
/// recorded among its firings. 201 with the task id, or the reason it
/// could not start.
pub async fn run_now(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let s = existing(&app, &id).await?;
    let firing = fire(&app.tasks, &s, now_ms()).await;
    count(&app.metrics, std::slice::from_ref(&firing));
    let answer = match (&firing.task_id, &firing.error) {
        (Some(task_id), _) => Ok((
            StatusCode::CREATED,
            axum::Json(json!({"task_id": task_id, "schedule_id": s.id})),
        )
            .into_response()),
        (None, error) => Err(ApiError::conflict(
            "run_failed",
            format!(
                "schedule `{}` could not start its task: {}",
                s.name,
                error.as_deref().unwrap_or("unknown error")
            ),
        )),
    };
    app.store.record_firings(&s.id, vec![firing], None).await?;
    answer
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
    existing(&app, &id).await?;
    let f = app.store.firings(&id, 500).await?;
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
