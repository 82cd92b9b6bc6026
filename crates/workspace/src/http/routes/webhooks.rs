//! Inbound webhooks: definitions (Bearer, api listener) and the receiver
//! `POST /api/webhooks/{id}`, which is authenticated by its HMAC signature
//! instead of the token.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::hooks::HookSpec;
use crate::http::AppState;
use crate::metrics::ReceiptLabels;
use crate::secrets::{generate_id, generate_token};
use crate::store::{now_ms, Webhook};
use crate::tasks::{rfc3339, CreateTask};
use crate::triggers::validate_target;
use crate::triggers::webhook::{
    render, verify, DELIVERY_HEADERS, MAX_SKEW_SECS, SIGNATURE_HEADERS, TIMESTAMP_HEADER,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    name: String,
    /// The task prompt; `{{path.to.field}}` is filled from the JSON body.
    prompt_template: String,
    assistant: Option<String>,
    workdir: Option<String>,
    hook: Option<HookSpec>,
}

fn view(w: &Webhook) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "path": format!("/api/webhooks/{}", w.id),
        "prompt_template": w.prompt_template,
        "assistant": w.assistant,
        "workdir": w.workdir,
        "hook_url": w.hook_url,
        "created_at": rfc3339(w.created_at),
    })
}

pub async fn create(State(app): State<AppState>, Json(n): Json<NewWebhook>) -> ApiResult<Response> {
    validate_target(&app.tasks, &n.name, n.assistant.as_deref(), n.hook.as_ref()).await?;
    if n.prompt_template.trim().is_empty() || n.prompt_template.len() > 64 * 1024 {
        return Err(ApiError::bad_request(
            "invalid_template",
            "prompt_template must be 1 byte to 64 KiB",
        ));
    }
    let secret = generate_token();
    let w = Webhook {
        id: generate_id(),
        name: n.name,
        secret: secret.clone(),
        prompt_template: n.prompt_template,
        assistant: n.assistant,
        workdir: n.workdir,
        hook_url: n.hook.as_ref().map(|h| h.url.clone()),
        hook_secret: n.hook.and_then(|h| h.secret),
        created_at: now_ms(),
    };
    app.tasks.store().insert_webhook(w.clone()).await?;
    let mut body = view(&w);
    // Shown once: it is never returned again.
    body["secret"] = json!(secret);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response())
}

pub async fn list(State(app): State<AppState>) -> ApiResult<Response> {
    let all = app.tasks.store().list_webhooks().await?;
    Ok(axum::Json(json!({"webhooks": all.iter().map(view).collect::<Vec<_>>()})).into_response())
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    if !app.tasks.store().delete_webhook(&id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("webhook `{id}` does not exist"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
}

/// Receive a delivery: verify, de-duplicate, render, start a task.
pub async fn receive(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = receive_inner(&app, &id, &headers, body).await;
    let label = match &result {
        Ok((_, dup)) if *dup => "duplicate",
        Ok(_) => "accepted",
        Err(e) if e.status == StatusCode::UNAUTHORIZED => "rejected",
        Err(_) => "error",
    };
    app.metrics
        .webhook_receipts
        .get_or_create(&ReceiptLabels {
            result: label.into(),
        })
        .inc();
    match result {
        Ok((resp, _)) => resp,
        Err(e) => e.into_response(),
    }
}

async fn receive_inner(
    app: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(Response, bool)> {
    let cap = app.limits.json_body_bytes;
    let bytes = axum::body::to_bytes(body, cap).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("webhook bodies are limited to {cap} bytes"),
        )
    })?;
    let hook = app.tasks.store().get_webhook(id).await?;
    let signature = header(headers, &SIGNATURE_HEADERS).unwrap_or("");
    // An unknown id is checked against a throwaway key: same work, same answer.
    let secret = hook
        .as_ref()
        .map(|w| w.secret.clone())
        .unwrap_or_else(generate_token);
    let verified = verify(&secret, &bytes, signature);
    let Some(hook) = hook.filter(|_| verified) else {
        return Err(ApiError::unauthorized(
            "the webhook signature does not match",
        ));
    };
    if let Some(ts) = headers.get(TIMESTAMP_HEADER) {
        let ts: i64 = ts
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_timestamp",
                    "X-Kube-Coder-Timestamp must be unix seconds",
                )
            })?;
        if (now_ms() / 1000 - ts).abs() > MAX_SKEW_SECS {
            return Err(ApiError::bad_request(
                "stale_delivery",
                format!("the delivery timestamp is more than {MAX_SKEW_SECS} s from now"),
            ));
        }
    }
    if app.auth.read_only() {
        return Err(ApiError::read_only());
    }
    let delivery = header(headers, &DELIVERY_HEADERS)
        .filter(|d| !d.is_empty() && d.len() <= 200)
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_delivery_id",
                "send a delivery id (X-GitHub-Delivery or X-Kube-Coder-Delivery) for replay protection",
            )
        })?
        .to_string();
    let payload: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the webhook body is not JSON: {e}"))
    })?;
    if !app.tasks.store().claim_receipt(&hook.id, &delivery).await? {
        let resp = axum::Json(json!({"duplicate": true, "delivery_id": delivery})).into_response();
        return Ok((resp, true));
    }
    let task = app
        .tasks
        .create(CreateTask {
            prompt: Some(render(&hook.prompt_template, &payload)),
            assistant: hook.assistant.clone(),
            workdir: hook.workdir.clone(),
            name: Some(format!("webhook: {}", hook.name)),
            env: HashMap::new(),
            hook: hook.hook_url.clone().map(|url| HookSpec {
                url,
                secret: hook.hook_secret.clone(),
            }),
        })
        .await?;
    app.tasks
        .store()
        .set_receipt_task(&hook.id, &delivery, &task.id)
        .await?;
    let resp = (
        StatusCode::ACCEPTED,
        axum::Json(json!({"task_id": task.id, "delivery_id": delivery})),
    )
        .into_response();
    Ok((resp, false))
}
