//! The admin port, for the cluster rather than the workspace's programs:
//! `/healthz` (probes), `/metrics` (Prometheus), `/refusals` (the recent
//! refusals, newest first, as JSON: the workspace server shows them on its
//! dashboard).

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
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
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
            gw.ledger.encode(),
        ),
        "/refusals" => respond(
            StatusCode::OK,
            JSON,
            serde_json::json!({ "refusals": gw.ledger.recent() }).to_string(),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            JSON,
            r#"{"error":"not_found","message":"the admin port serves /healthz, /metrics and /refusals"}"#.into(),
        ),
    })
}
