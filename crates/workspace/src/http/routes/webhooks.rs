//! Inbound webhooks: definitions (Bearer, api listener) and the receiver
//! `POST /api/webhooks/{id}`, which is authenticated by its HMAC signature
//! instead of the token.
//!
//! Replays: in the kube-coder scheme the timestamp and delivery id are
//! signed with the body, the timestamp must be fresh and the id is
//! remembered; in GitHub's scheme only the body is signed, so the body's
//! digest is what is remembered (a captured delivery sent again with a new
//! id is a duplicate). Receipts are kept, so the window is the webhook's
//! lifetime.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::clock::rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::hooks::{hook_url_view, HookSpec};
use crate::http::AppState;
use crate::metrics::ReceiptLabels;
use crate::secrets::{generate_id, generate_token};
use crate::signature::{
    verify_body, verify_delivery, DELIVERY_HEADER, GITHUB_DELIVERY_HEADER, GITHUB_SIGNATURE_HEADER,
    MAX_SKEW_SECS, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use crate::store::Webhook;
use crate::tasks::CreateTask;
use crate::triggers::validate_target;
use crate::triggers::webhook::render;

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

/// `writer`: whether the caller may change the workspace; only writers
/// see a hook URL whole (its path is often a secret).
fn view(w: &Webhook, writer: bool) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "path": format!("/api/webhooks/{}", w.id),
        "prompt_template": w.prompt_template,
        "assistant": w.assistant,
        "workdir": w.workdir,
        "hook_url": hook_url_view(w.hook_url.as_deref(), writer),
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
    app.store.insert_webhook(w.clone()).await?;
    let mut body = view(&w, true);
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
    let all = app.store.list_webhooks().await?;
    Ok(axum::Json(
        json!({"webhooks": all.iter().map(|x| view(x, app.auth.may_write())).collect::<Vec<_>>()}),
    )
    .into_response())
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    if !app.store.delete_webhook(&id).await? {
        return Err(ApiError::not_found(format!(
            "webhook `{id}` does not exist"
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What a delivery says about itself, by its scheme (see the module doc).
enum Delivery {
    Signed {
        signature: String,
        timestamp: i64,
        id: String,
    },
    GitHub {
        signature: String,
        id: String,
        /// What a replay would repeat: the signed body.
        body_digest: String,
    },
}

/// Read the scheme's headers. With a signature, missing ones are named (a
/// 400 before the webhook is looked up, so it tells nothing about which
/// ids exist); without one, the answer is a wrong signature's.
fn delivery_of(headers: &HeaderMap, body: &[u8]) -> ApiResult<Delivery> {
    let id_of = |name: &str| {
        header(headers, name)
            .map(str::trim)
            .filter(|d| !d.is_empty() && d.len() <= 200)
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "missing_delivery_id",
                    format!("send a delivery id in {name} (at most 200 characters) for replay protection"),
                )
            })
    };
    if let Some(signature) = header(headers, SIGNATURE_HEADER) {
        let timestamp = header(headers, TIMESTAMP_HEADER)
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_timestamp",
                    format!("{TIMESTAMP_HEADER} must be sent, in unix seconds, and signed with the body"),
                )
            })?;
        return Ok(Delivery::Signed {
            signature: signature.to_string(),
            timestamp,
            id: id_of(DELIVERY_HEADER)?,
        });
    }
    let Some(signature) = header(headers, GITHUB_SIGNATURE_HEADER) else {
        // The same answer as a wrong signature or an unknown webhook.
        return Err(ApiError::unauthorized(
            "the webhook signature does not match",
        ));
    };
    use sha2::Digest;
    Ok(Delivery::GitHub {
        signature: signature.to_string(),
        id: id_of(GITHUB_DELIVERY_HEADER)?,
        body_digest: format!("body-sha256:{}", hex::encode(sha2::Sha256::digest(body))),
    })
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
    let delivery = delivery_of(headers, &bytes)?;
    let hook = app.store.get_webhook(id).await?;
    // An unknown id is checked against a throwaway key: same work, same answer.
    let secret = hook
        .as_ref()
        .map(|w| w.secret.clone())
        .unwrap_or_else(generate_token);
    let verified = match &delivery {
        Delivery::Signed {
            signature,
            timestamp,
            id,
        } => verify_delivery(&secret, *timestamp, id, &bytes, signature),
        Delivery::GitHub { signature, .. } => verify_body(&secret, &bytes, signature),
    };
    let Some(hook) = hook.filter(|_| verified) else {
        return Err(ApiError::unauthorized(
            "the webhook signature does not match",
        ));
    };
    if let Delivery::Signed { timestamp, .. } = &delivery {
        if (now_ms() / 1000 - timestamp).abs() > MAX_SKEW_SECS {
            return Err(ApiError::bad_request(
                "stale_delivery",
                format!("the delivery timestamp is more than {MAX_SKEW_SECS} s from now"),
            ));
        }
    }
    if app.auth.read_only() {
        return Err(ApiError::read_only());
    }
    let (delivery, replay_key) = match delivery {
        Delivery::Signed { id, .. } => (id.clone(), id),
        Delivery::GitHub {
            id, body_digest, ..
        } => (id, body_digest),
    };
    let payload: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the webhook body is not JSON: {e}"))
    })?;
    if !app.store.claim_receipt(&hook.id, &replay_key).await? {
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
    app.store
        .set_receipt_task(&hook.id, &replay_key, &task.id)
        .await?;
    let resp = (
        StatusCode::ACCEPTED,
        axum::Json(json!({"task_id": task.id, "delivery_id": delivery})),
    )
        .into_response();
    Ok((resp, false))
}
