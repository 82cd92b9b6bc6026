//! `GET /api/egress/refusals`: the connections the workspace's egress
//! gateway refused lately, newest first, each with the rule that refused
//! it; `gateway: false` and no refusals when the workspace has no gateway
//! (its egress is by address, not by name).
//!
//! `GET /api/usage`: the month's model tokens as the gateway counted them
//! (the keys are the gateway's; the workspace only sees the figures), and
//! the budget; `models: false` when the workspace has no model providers.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;

pub async fn refusals(State(app): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let Some(gateway) = &app.egress else {
        return Ok(axum::Json(json!({"gateway": false, "refusals": []})));
    };
    let refusals = gateway
        .refusals()
        .await
        .map_err(|why| ApiError::new(StatusCode::BAD_GATEWAY, "egress_gateway_unreachable", why))?;
    Ok(axum::Json(json!({"gateway": true, "refusals": refusals})))
}

pub async fn usage(State(app): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let Some(gateway) = &app.egress else {
        return Ok(axum::Json(json!({"models": false})));
    };
    let usage = gateway
        .usage()
        .await
        .map_err(|why| ApiError::new(StatusCode::BAD_GATEWAY, "egress_gateway_unreachable", why))?;
    Ok(axum::Json(usage))
}
