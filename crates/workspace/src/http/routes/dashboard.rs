//! `GET /`: the dashboard page. Until the SPA is embedded, a small page
//! that says what this server is and how to reach its API.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};

use crate::http::AppState;

pub async fn index(State(app): State<AppState>) -> impl IntoResponse {
    let mode = app.auth.mode().as_str();
    let ro = if app.auth.read_only() {
        " (read-only)"
    } else {
        ""
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>kube-coder workspace</title></head><body>\
         <h1>kube-coder workspace{ro}</h1>\
         <p>The dashboard app is not built into this binary. The task API is served here \
         and on the api listener: <code>GET /api/tasks</code>, <code>POST /api/tasks</code>.</p>\
         <p>Dashboard authentication: <code>{mode}</code>.</p></body></html>"
    );
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(page),
    )
}
