//! The waker the operator serves: while a workspace is not Ready (stopped
//! by hand or when idle, starting, in trouble), its Ingresses lead here
//! (`manifests::routing`). A caller who proves who they are with the
//! workspace's own credential (its API token, or on the dashboard host
//! its basic login) starts a stopped workspace and is told it is
//! starting: a browser gets a page that follows its progress and opens
//! the dashboard once it answers, an API client 503 with `Retry-After`. Anyone else starts nothing, so
//! crawlers and scanners never wake a workspace. Wakes are rate-limited,
//! counted (`kube_coder_operator_wake_requests_total`) and recorded as
//! Events on the Workspace.
//!
//! On an oauth2 workspace's dashboard host the browser's session of the
//! workspace's own login proxy counts too (`oauth2_session` reads it with
//! the proxy's cookie secret), when the login in it is on the same allow
//! list the workspace server applies: the proxy makes a validly signed
//! session for any login the provider accepts, so the signature alone
//! would let strangers in.

mod limits;
pub mod oauth2_session;
mod page;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::Resource;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::controller::Context;
use crate::crd::{AuthType, Workspace};
use crate::manifests::{oauth2_proxy, Kind};
use crate::names;
use limits::{Limits, Wake};

/// How long an API client is told to wait before asking again.
const RETRY_AFTER_SECS: u64 = 5;
/// The header that tells the waiting page an answer came from the waker
/// (any other answer means the workspace itself is answering).
const WAKER_HEADER: &str = "x-kube-coder-waker";

pub struct Waker {
    ctx: Arc<Context>,
    workspaces: Store<Workspace>,
    limits: Limits,
    counts: Counts,
}

/// What became of wake requests, for `/metrics`.
#[derive(Default)]
struct Counts {
    woken: AtomicU64,
    starting: AtomicU64,
    unauthenticated: AtomicU64,
    limited: AtomicU64,
    unknown_host: AtomicU64,
}

/// How a caller proved who they are.
#[derive(Clone, Debug, PartialEq)]
enum Via {
    Token,
    Login,
    /// A session of the workspace's login proxy, for this login.
    OAuth2(String),
}

impl Waker {
    pub fn new(ctx: Arc<Context>, workspaces: Store<Workspace>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            workspaces,
            limits: Limits::default(),
            counts: Counts::default(),
        })
    }

    /// Serve on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        crate::serve::until(self.router(), listener, shutdown).await
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new().fallback(handle).with_state(self)
    }

    /// Prometheus text of the counts.
    pub fn metrics_text(&self) -> String {
        let c = &self.counts;
        let mut out = String::from("# TYPE kube_coder_operator_wake_requests_total counter\n");
        for (outcome, n) in [
            ("woken", &c.woken),
            ("starting", &c.starting),
            ("unauthenticated", &c.unauthenticated),
            ("rate_limited", &c.limited),
            ("unknown_host", &c.unknown_host),
        ] {
            out.push_str(&format!(
                "kube_coder_operator_wake_requests_total{{outcome=\"{outcome}\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
        out
    }

    /// The Workspace one of whose hosts is `host`, and whether it is the api host.
    fn find(&self, host: &str) -> Option<(Arc<Workspace>, bool)> {
        self.workspaces.state().into_iter().find_map(|ws| {
            let ingress = ws.spec.ingress.as_ref()?;
            if ingress.host.eq_ignore_ascii_case(host) {
                Some((ws.clone(), false))
            } else if names::api_host(ingress).eq_ignore_ascii_case(host) {
                Some((ws.clone(), true))
            } else {
                None
            }
        })
    }

    /// Start the workspace, unless it runs already or was started moments
    /// ago; `Busy` when too many were started in the last minute.
    async fn wake(&self, ws: &Workspace, host: &str, via: &Via) -> Result<Wake, String> {
        let name = names::workspace_name(ws);
        if ws.spec.running {
            return Ok(Wake::JustStarted);
        }
        match self.limits.may_wake(name) {
            Wake::Now => {}
            other => return Ok(other),
        }
        Api::<Workspace>::all(self.ctx.client.clone())
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"running": true}})),
            )
            .await
            .map_err(|e| format!("cannot start workspace {name}: {e}"))?;
        self.ctx.stats.wrote(name);
        let how = match via {
            Via::Token => "its API token".to_string(),
            Via::Login => "its dashboard login".to_string(),
            Via::OAuth2(login) => format!("a login-proxy session of {login}"),
        };
        let event = Event {
            type_: EventType::Normal,
            reason: "Woken".into(),
            note: Some(format!("started by a request to {host} with {how}")),
            action: "Wake".into(),
            secondary: None,
        };
        if let Err(e) = self.ctx.recorder.publish(&event, &ws.object_ref(&())).await {
            tracing::debug!(error = %e, "could not publish an event");
        }
        tracing::info!(workspace = %name, %host, ?via, "woken by a request");
        Ok(Wake::Now)
    }
}

/// The request's host name, lower-case, without a port.
fn host_of(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    host.to_ascii_lowercase()
}

fn same(a: &str, b: &str) -> bool {
    !b.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn secret_value(secret: Option<&Secret>, key: &str) -> Option<String> {
    let data = secret?.data.as_ref()?;
    String::from_utf8(data.get(key)?.0.clone()).ok()
}

/// Whether the request carries the workspace's own credential: its API
/// token (either host), or on the dashboard host its login (basic auth)
/// or a session of its login proxy (oauth2). `credentials` is its
/// credentials Secret, `oauth2` its login proxy's Secret.
fn authenticate(
    ws: &Workspace,
    api: bool,
    headers: &HeaderMap,
    credentials: Option<&Secret>,
    oauth2: Option<&Secret>,
) -> Option<Via> {
    let value = |key: &str| secret_value(credentials, key);
    if !api && ws.spec.auth.kind == AuthType::Oauth2 && !headers.contains_key(header::AUTHORIZATION)
    {
        return oauth2_login(ws, headers, oauth2);
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return same(token.trim(), &value("api-token")?).then_some(Via::Token);
    }
    let basic = auth.strip_prefix("Basic ")?;
    if api || ws.spec.auth.kind != AuthType::Basic {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    (same(user, &ws.spec.owner.name) && same(password, &value("password")?)).then_some(Via::Login)
}

/// A session of the workspace's login proxy for a login on its allow
/// list (the one the server applies behind the proxy; empty when GitHub
/// organisations decide, which the proxy checked before making it).
fn oauth2_login(ws: &Workspace, headers: &HeaderMap, oauth2: Option<&Secret>) -> Option<Via> {
    let secret = secret_value(oauth2, "cookie-secret")?;
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let who = oauth2_session::identity(cookies, &secret, std::time::SystemTime::now())
        .map_err(|e| tracing::debug!(workspace = %names::workspace_name(ws), error = %e, "no wake by session"))
        .ok()?;
    let allowed = oauth2_proxy::allowed_users(ws);
    let on_list = allowed.is_empty()
        || [&who.user, &who.email]
            .into_iter()
            .flatten()
            .any(|id| allowed.iter().any(|a| a.eq_ignore_ascii_case(id)));
    on_list.then(|| Via::OAuth2(who.name().to_string()))
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn json_error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// The workspace's state in words, for the page and for API clients.
fn progress(ws: &Workspace) -> (String, String) {
    let status = ws.status.clone().unwrap_or_default();
    let phase = match (&status.phase, ws.spec.running) {
        (_, false) => "Stopped".to_string(),
        (Some(p), true) => p.to_string(),
        (None, true) => "Pending".to_string(),
    };
    (phase, status.message.unwrap_or_default())
}

async fn handle(State(waker): State<Arc<Waker>>, request: Request) -> Response {
    let headers = request.headers();
    let host = host_of(headers);
    let Some((ws, api)) = waker.find(&host) else {
        waker.counts.unknown_host.fetch_add(1, Ordering::Relaxed);
        return json_error(
            StatusCode::NOT_FOUND,
            format!("no workspace has the host {host:?}"),
        );
    };
    let name = names::workspace_name(&ws).to_string();
    let namespace = names::namespace(&name);
    let credentials = waker.ctx.caches.get_as::<Secret>(
        Kind::Secret,
        names::CREDENTIALS_SECRET,
        Some(&namespace),
    );
    let oauth2 = (ws.spec.auth.kind == AuthType::Oauth2)
        .then(|| {
            waker
                .ctx
                .caches
                .get_as::<Secret>(Kind::Secret, names::OAUTH2_SECRET, Some(&namespace))
        })
        .flatten();
    let mut response = match authenticate(&ws, api, headers, credentials.as_ref(), oauth2.as_ref())
    {
        None => refuse(&waker, &ws, api, headers),
        Some(via) => {
            let path = request.uri().path();
            if path == names::WAKE_STATUS_PATH {
                let (phase, message) = progress(&ws);
                return (
                    [
                        (WAKER_HEADER, "1"),
                        (header::CACHE_CONTROL.as_str(), "no-store"),
                    ],
                    Json(json!({"workspace": name, "phase": phase, "message": message})),
                )
                    .into_response();
            }
            match waker.wake(&ws, &host, &via).await {
                Ok(Wake::Now) => waker.counts.woken.fetch_add(1, Ordering::Relaxed),
                Ok(Wake::JustStarted) => waker.counts.starting.fetch_add(1, Ordering::Relaxed),
                Ok(Wake::Busy) => {
                    waker.counts.limited.fetch_add(1, Ordering::Relaxed);
                    let mut r = json_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        format!(
                            "too many workspaces were started in the last minute; \
                             workspace {name} is not started yet, retry in a minute"
                        ),
                    );
                    let h = r.headers_mut();
                    h.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
                    h.insert(WAKER_HEADER, HeaderValue::from_static("1"));
                    return r;
                }
                Err(e) => {
                    tracing::warn!(workspace = %name, error = %e, "wake failed");
                    return json_error(StatusCode::SERVICE_UNAVAILABLE, e);
                }
            };
            let (phase, message) = progress(&ws);
            let phase = if ws.spec.running {
                phase
            } else {
                "Starting".into()
            };
            if !api && wants_html(headers) {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    page::starting(&name, &phase),
                )
                    .into_response()
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({
                        "error": format!("workspace {name} is starting; retry in {RETRY_AFTER_SECS} s"),
                        "workspace": name,
                        "phase": phase,
                        "message": message,
                    })),
                )
                    .into_response()
            }
        }
    };
    let unavailable = response.status() == StatusCode::SERVICE_UNAVAILABLE;
    let h = response.headers_mut();
    h.insert(WAKER_HEADER, HeaderValue::from_static("1"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if unavailable {
        h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// No credential: nothing starts. Say how to start it; too many wrong
/// credentials for one workspace in a minute are refused outright.
fn refuse(waker: &Waker, ws: &Workspace, api: bool, headers: &HeaderMap) -> Response {
    let name = names::workspace_name(ws);
    let tried = headers.contains_key(header::AUTHORIZATION)
        || headers.get_all(header::COOKIE).iter().any(|c| {
            c.to_str()
                .is_ok_and(|c| c.contains(oauth2_session::COOKIE_NAME))
        });
    if tried && !waker.limits.may_fail(name) {
        waker.counts.limited.fetch_add(1, Ordering::Relaxed);
        return json_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many wrong credentials for workspace {name}; wait a minute"),
        );
    }
    waker.counts.unauthenticated.fetch_add(1, Ordering::Relaxed);
    let (phase, _) = progress(ws);
    let state = if ws.spec.running {
        "starting"
    } else {
        "stopped"
    };
    if api {
        let mut r = json_error(
            StatusCode::UNAUTHORIZED,
            format!(
                "workspace {name} is {state} ({phase}); a request with its API token starts it"
            ),
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    match ws.spec.auth.kind {
        AuthType::Basic => {
            // The dashboard's own realm: the login the browser keeps is
            // the one the dashboard takes once it answers.
            let mut r = (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                page::sign_in(name, state),
            )
                .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"kube-coder\", charset=\"UTF-8\""),
            );
            r
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page::how_to_start(name, state),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests;
