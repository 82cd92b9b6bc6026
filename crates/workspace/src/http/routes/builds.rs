//! `POST /api/builds` (the query and body of the operator's `POST
//! /builds`: `tag`, `file`, `build-arg`, `target`, `platform`, and the
//! context as a tar) and `GET /api/builds` (the history, newest first).
//! The build is the operator's (`crate::builds`); this records it: started
//! when the operator takes it, and how it ended (its digest or why not),
//! whether or not the caller stays to read the log it streams back.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::clock::{now_ms, rfc3339};
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::store::BuildEnd;

/// How many builds the history lists.
const HISTORY: usize = 100;

pub async fn list(State(app): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let builds: Vec<Value> = app
        .store
        .builds(HISTORY)
        .await?
        .into_iter()
        .map(|b| {
            json!({
                "id": b.id, "images": b.images, "state": b.state, "digest": b.digest,
                "size": b.size, "error": b.error, "started_at": rfc3339(b.started_at),
                "finished_at": b.finished_at.map(rfc3339),
            })
        })
        .collect();
    Ok(axum::Json(
        json!({"enabled": app.builds.is_some(), "builds": builds}),
    ))
}

/// `GET /api/builds/{id}/log`: the build's log as kept (NDJSON), then,
/// while it runs, each line as it comes, until it ends.
pub async fn log(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let Some(stream) = app.build_logs.follow(&id).await else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "build_not_found",
            format!("no build `{id}` with a log here (the last {HISTORY} builds keep theirs)"),
        ));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

pub async fn start(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    let Some(service) = app.builds.clone() else {
        return Err(ApiError::conflict(
            "builds_off",
            "this workspace does not build through the operator: its Workspace needs \
             spec.build.registries (and build.mode brokered, the default); with build.mode \
             buildkit, run kube-coder build in the workspace's terminal",
        ));
    };
    let query = query.unwrap_or_default();
    let images: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.into_owned())
        .collect();
    let upstream = service
        .start(&query, reqwest::Body::wrap_stream(body.into_data_stream()))
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "operator_unreachable", e))?;
    if !upstream.status().is_success() {
        // The operator's refusal, as it gave it.
        let status =
            StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let refusal: Value = upstream.json().await.unwrap_or_default();
        let message = refusal["error"]
            .as_str()
            .unwrap_or("the operator refused the build");
        return Err(ApiError::new(status, "build_refused", message.to_string()));
    }
    let id = format!("b{}", hex::encode(rand::random::<[u8; 6]>()));
    app.store.build_started(&id, &images, now_ms()).await?;
    // The logs of the builds the history lists stay; older ones go.
    let keep: Vec<String> = app
        .store
        .builds(HISTORY)
        .await?
        .into_iter()
        .map(|b| b.id)
        .collect();
    let mut kept = match app.build_logs.start(&id, &keep).await {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(build = %id, error = %e, "cannot keep a build's log");
            None
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let store = app.store.clone();
    tokio::spawn(async move {
        let mut stream = upstream.bytes_stream();
        let mut lines = crate::builds::LogLines::default();
        let mut outcome = BuildEnd::Failed("the build's log ended without a result".into());
        let mut caller = true;
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                outcome = BuildEnd::Failed("the operator's log was cut off".into());
                break;
            };
            for line in lines.push(&chunk) {
                let mut last = false;
                if let Ok(event) = serde_json::from_slice::<Value>(&line) {
                    last = event.get("done").is_some() || event.get("error").is_some();
                    if let Some(done) = event.get("done") {
                        outcome = BuildEnd::Pushed {
                            digest: done["digest"].as_str().unwrap_or_default().to_string(),
                            size: done["size"].as_u64(),
                        };
                    } else if let Some(error) = event["error"].as_str() {
                        outcome = BuildEnd::Failed(error.to_string());
                    }
                }
                if let Some(w) = kept.as_mut() {
                    w.line(&line, last).await;
                }
                // A caller that went away does not stop the record.
                if caller && tx.send(Bytes::from(line)).await.is_err() {
                    caller = false;
                }
            }
        }
        // Followers of the log see its end once the history has it.
        let result = store.build_finished(&id, outcome, now_ms()).await;
        drop(kept);
        if let Err(e) = result {
            tracing::warn!(build = %id, error = %e, "cannot record how a build ended");
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|b| b.map(Ok::<_, std::convert::Infallible>))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
