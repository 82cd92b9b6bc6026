//! Every route of both listeners, and the layers around them.
//!
//! The **dashboard** listener serves browsers (and Bearer scripts through
//! the ingress); the **api** listener serves scripts, CI and other agents
//! with the Bearer token only. Task routes are mounted twice: at `/api` and
//! at `/api/claude`, the path scripts of the older implementation use.
//! Unknown paths and methods answer JSON 404/405; nothing falls through to
//! a file handler.

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{Method, Request, Uri};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use super::routes::{
    builds, dashboard, egress, events, files, files_watch, health, hooks, metrics as metrics_route,
    schedules, session, stream, system, tasks, terminal, webhooks,
};
use super::AppState;
use crate::auth;
use crate::config::AuthMode;
use crate::error::ApiError;
use crate::metrics::{self, Listener};

/// Task routes, relative to a prefix.
fn task_routes() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route("/tasks/{id}", get(tasks::detail).delete(tasks::kill))
        .route("/tasks/{id}/output", get(tasks::output))
        .route("/tasks/{id}/stream", get(stream::task_stream))
        .route("/tasks/{id}/message", post(tasks::message))
        .route("/tasks/{id}/keys", post(tasks::keys))
        .route("/tasks/{id}/terminal", get(terminal::terminal))
}

/// Routes that need a caller, on either listener.
fn authenticated_routes() -> Router<AppState> {
    let api = task_routes()
        .route("/events", get(events::event_stream))
        .route("/assistants", get(tasks::assistants))
        .route("/whoami", get(session::whoami))
        .route("/system", get(system::system))
        .route("/egress/refusals", get(egress::refusals))
        .route("/usage", get(egress::usage))
        .route("/builds", get(builds::list).post(builds::start))
        .route("/builds/{id}/log", get(builds::log))
        .route("/token", post(session::regenerate_token))
        .route("/files", get(files::list).delete(files::delete))
        .route(
            "/files/content",
            get(files::content).head(files::content).put(files::upload),
        )
        .route("/files/watch", get(files_watch::watch))
        .route("/files/upload", post(files::upload))
        .route("/files/mkdir", post(files::mkdir))
        .route("/files/rename", post(files::rename))
        .route("/files/extract", post(files::extract))
        .route("/hooks/deliveries", get(hooks::list))
        .route("/hooks/deliveries/{id}/redeliver", post(hooks::redeliver))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route(
            "/schedules/{id}",
            axum::routing::delete(schedules::delete).patch(schedules::update),
        )
        .route("/schedules/{id}/firings", get(schedules::firings))
        .route("/schedules/{id}/run", post(schedules::run_now))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries));
    Router::new()
        .nest("/api/claude", task_routes())
        .nest("/api", api)
}

pub fn dashboard_router(state: AppState) -> Router {
    // On the api listener this path also receives signed deliveries; here
    // it edits and deletes a definition, and a delivery sent here by
    // mistake is told where to go (before auth: the sender has no login).
    let mut protected = authenticated_routes().route(
        "/api/webhooks/{id}",
        axum::routing::delete(webhooks::delete).patch(webhooks::update),
    );
    let mut public = Router::new()
        .route("/auth/login", post(session::login))
        .route("/auth/logout", post(session::logout))
        .route("/api/webhooks/{id}", post(webhooks::wrong_listener));
    // In token mode the app itself is public: it is where one logs in (it
    // holds no data; every call it makes is authenticated).
    let app = Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset));
    if state.auth.mode() == AuthMode::Token {
        public = public.merge(app);
    } else {
        protected = protected.merge(app);
    }
    let protected = protected.layer(from_fn_with_state(
        state.auth.clone(),
        auth::dashboard_layer,
    ));
    finish(public.merge(protected), state, Listener::dashboard)
}

pub fn api_router(state: AppState) -> Router {
    let bearer = from_fn_with_state(state.auth.clone(), auth::api_layer);
    let protected = authenticated_routes()
        .route("/metrics", get(metrics_route::metrics))
        .route("/api/activity", get(health::activity))
        .layer(bearer.clone());
    // Webhook senders prove themselves with the HMAC signature, not the
    // token; deleting a definition still needs the token.
    let signed = Router::new().route(
        "/api/webhooks/{id}",
        post(webhooks::receive)
            .delete(webhooks::delete.layer(bearer.clone()))
            .patch(webhooks::update.layer(bearer)),
    );
    finish(
        Router::new().merge(protected).merge(signed),
        state,
        Listener::api,
    )
}

/// Layers shared by both listeners, outermost last.
fn finish(router: Router<AppState>, state: AppState, listener: Listener) -> Router {
    let metrics = state.metrics.clone();
    let activity = state.activity.clone();
    let body_limit = state.limits.json_body_bytes;
    router
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route_layer(from_fn(metrics::remember_route))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn_with_state(activity, crate::activity::record))
        .layer(from_fn_with_state((metrics, listener), metrics::track))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a request handler panicked", "panic").into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The path only: query strings never reach the logs.
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                // One line per request only when asked for (KUBE_CODER_LOG=debug):
                // at info they drown what a person needs to see.
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn no_route(method: Method, uri: Uri) -> Response {
    ApiError::no_route(method.as_str(), uri.path()).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::method_not_allowed(method.as_str(), uri.path()).into_response()
}
