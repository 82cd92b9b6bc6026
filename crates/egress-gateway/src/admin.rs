//! The admin port, for the cluster rather than the workspace's programs:
//! `/healthz` (probes), `/metrics` (Prometheus), `/refusals` (the recent
//! refusals, newest first, as JSON) and `/usage` (the month's model usage
//! and budget): the workspace server shows both on its dashboard and API.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::proxy::Body;
use crate::Gateway;

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The month's model usage, the budget, and the providers on offer.
fn usage(gw: &Gateway) -> serde_json::Value {
    let Some(models) = &gw.models else {
        return serde_json::json!({"models": false});
    };
    let loaded = models.current();
    let month = gw.meter.snapshot();
    let budget = loaded.config.monthly_token_budget;
    serde_json::json!({
        "models": true,
        "month": month.month,
        "renews": crate::models::meter::next_month(&month.month),
        "budget": budget,
        "used": month.used(),
        "remaining": budget.map(|b| b.saturating_sub(month.used())),
        "input_tokens": month.input_tokens,
        "output_tokens": month.output_tokens,
        "requests": month.requests,
        "by_provider": month.providers,
        "providers": loaded.config.providers.iter().map(|p| serde_json::json!({
            "name": p.name,
            "api": p.api,
            "has_key": loaded.key(&p.name).is_some(),
        })).collect::<Vec<_>>(),
    })
}

pub async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    const JSON: &str = "application/json";
    if req.method() != Method::GET {
        return Ok(respond(
            StatusCode::METHOD_NOT_ALLOWED,
            JSON,
            r#"{"error":"method_not_allowed","message":"the admin port answers GET only"}"#.into(),
        ));
    }
    Ok(match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            gw.encode_metrics(),
        ),
        "/usage" => respond(StatusCode::OK, JSON, usage(&gw).to_string()),
        "/refusals" => respond(
            StatusCode::OK,
            JSON,
            serde_json::json!({ "refusals": gw.ledger.recent() }).to_string(),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            JSON,
            r#"{"error":"not_found","message":"the admin port serves /healthz, /metrics, /refusals and /usage"}"#.into(),
        ),
    })
}
