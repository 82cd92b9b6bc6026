//! `GET /metrics` (api listener, Bearer): Prometheus text format.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;

pub async fn metrics(State(app): State<AppState>) -> ApiResult<impl IntoResponse> {
    let counts = app.store.count_by_state().await?;
    app.metrics.set_task_counts(&counts);
    let dead = app.store.count_dead_deliveries().await?;
    app.metrics.hook_dead_letters.set(dead);
    let body = app
        .metrics
        .encode()
        .map_err(|e| ApiError::internal("could not encode metrics", e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}
