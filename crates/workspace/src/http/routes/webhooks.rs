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
use crate::store::{ReceiptOutcome, Webhook};
use crate::tasks::CreateTask;
use crate::triggers::webhook::render;
use crate::triggers::{validate_target, Target, TargetPatch};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    name: String,
    /// The task prompt; `{{path.to.field}}` is filled from the JSON body.
    prompt_template: String,
    assistant: Option<String>,
    workdir: Option<String>,
    hook: Option<HookSpec>,
    /// Created paused: deliveries are refused until resumed.
    #[serde(default)]
    paused: bool,
}

/// `PATCH /api/webhooks/{id}`: what changes; the rest (and the secret) stays.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    prompt_template: Option<String>,
    #[serde(flatten)]
    target: TargetPatch,
}

/// `writer`: whether the caller may change the workspace; only writers
/// see a hook URL whole (its path is often a secret).
fn view(app: &AppState, w: &Webhook, writer: bool) -> Value {
    let path = format!("/api/webhooks/{}", w.id);
    json!({
        "id": w.id,
        "name": w.name,
        "url": app.api_url.as_deref().map(|base| format!("{base}{path}")),
        "path": path,
        "paused": w.paused,
        "prompt_template": w.prompt_template,
        "assistant": w.assistant,
        "workdir": w.workdir,
        "hook_url": hook_url_view(w.hook_url.as_deref(), writer),
        "created_at": rfc3339(w.created_at),
    })
}

fn check_template(t: &str) -> ApiResult<()> {
    if t.trim().is_empty() || t.len() > 64 * 1024 {
        return Err(ApiError::bad_request(
            "invalid_template",
            "prompt_template must be 1 byte to 64 KiB",
        ));
    }
    Ok(())
}

pub async fn create(State(app): State<AppState>, Json(n): Json<NewWebhook>) -> ApiResult<Response> {
    validate_target(&app.tasks, &n.name, n.assistant.as_deref(), n.hook.as_ref()).await?;
    check_template(&n.prompt_template)?;
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
        paused: n.paused,
    };
    app.store.insert_webhook(w.clone()).await?;
    let mut body = view(&app, &w, true);
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
        json!({"webhooks": all.iter().map(|x| view(&app, x, app.auth.may_write())).collect::<Vec<_>>()}),
    )
    .into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("webhook `{id}` does not exist"))
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    if !app.store.delete_webhook(&id).await? {
        return Err(not_found(&id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn existing(app: &AppState, id: &str) -> ApiResult<Webhook> {
    app.store
        .get_webhook(id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Edit a webhook: pause (`{"paused": true}`), resume, or change its
/// template, assistant, workdir, hook or name. The secret stays.
pub async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(p): Json<WebhookPatch>,
) -> ApiResult<Response> {
    let mut w = existing(&app, &id).await?;
    if let Some(t) = p.prompt_template {
        check_template(&t)?;
        w.prompt_template = t;
    }
    p.target
        .apply(
            &app.tasks,
            Target {
                name: &mut w.name,
                assistant: &mut w.assistant,
                workdir: &mut w.workdir,
                hook_url: &mut w.hook_url,
                hook_secret: &mut w.hook_secret,
                paused: &mut w.paused,
            },
        )
        .await?;
    if !app.store.update_webhook(w.clone()).await? {
        return Err(not_found(&id));
    }
    Ok(axum::Json(view(&app, &w, true)).into_response())
}

/// A webhook's received deliveries, newest first: when, the sender's id,
/// and the task it started or why it did not.
pub async fn deliveries(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    existing(&app, &id).await?;
    let list: Vec<_> = app
        .store
        .receipts(&id, 200)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "delivery_id": r.delivery_id,
                "received_at": rfc3339(r.received_at),
                "outcome": r.outcome,
                "task_id": r.task_id,
                "error": r.error,
            })
        })
        .collect();
    Ok(axum::Json(json!({"deliveries": list})).into_response())
}

/// The dashboard listener's answer to a delivery: it names the listener
/// that receives them (a sender configured with the dashboard's address
/// shows this message in its delivery log).
pub async fn wrong_listener(State(app): State<AppState>, Path(id): Path<String>) -> ApiError {
    let to = app.api_url.as_deref().map_or_else(
        || "the api listener (--api-listen)".to_string(),
        |base| format!("{base}/api/webhooks/{id}"),
    );
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "wrong_listener",
        format!("webhook deliveries are received on the api listener, not the dashboard's: send them to {to}"),
    )
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
    if !app
        .store
        .claim_receipt(&hook.id, &replay_key, &delivery)
        .await?
    {
        let resp = axum::Json(json!({"duplicate": true, "delivery_id": delivery})).into_response();
        return Ok((resp, true));
    }
    if hook.paused {
        app.store
            .finish_receipt(&hook.id, &replay_key, ReceiptOutcome::Paused, None, None)
            .await?;
        return Err(ApiError::conflict(
            "webhook_paused",
            format!(
                "webhook `{}` is paused; deliver again once it is resumed",
                hook.name
            ),
        ));
    }
    let created = app
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
        .await;
    let task = match created {
        Ok(task) => task,
        Err(e) => {
            // Recorded, and open to a redelivery (a full task limit passes).
            app.store
                .finish_receipt(
                    &hook.id,
                    &replay_key,
                    ReceiptOutcome::Failed,
                    None,
                    Some(e.message.clone()),
                )
                .await?;
            return Err(e);
        }
    };
    app.store
        .finish_receipt(
            &hook.id,
            &replay_key,
            ReceiptOutcome::Started,
            Some(task.id.clone()),
            None,
        )
        .await?;
    let resp = (
        StatusCode::ACCEPTED,
        axum::Json(json!({"task_id": task.id, "delivery_id": delivery})),
    )
        .into_response();
    Ok((resp, false))
}
