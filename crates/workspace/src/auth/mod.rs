//! Who is calling, decided by which listener the request arrived on.
//!
//! - The **api listener** accepts only `Authorization: Bearer <api token>`;
//!   identity headers and cookies mean nothing there.
//! - The **dashboard listener** accepts the Bearer token too, otherwise the
//!   credential of the configured [`AuthMode`]: basic auth checked here
//!   against an htpasswd file, oauth2-proxy identity headers from trusted
//!   peers only, a session cookie (token mode), or nobody (public read-only).
//!
//! After authentication come two guards: browser requests that change state
//! must prove same-origin ([`same_origin`]), and a read-only workspace
//! refuses every state change with 403 `read_only`.

pub mod htpasswd;
pub mod same_origin;
pub mod token_file;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ipnet::IpNet;
use serde::Serialize;

use crate::config::AuthMode;
use crate::error::ApiError;
use crate::secrets::SecretDigest;
use crate::store::Store;
use htpasswd::Htpasswd;

pub const SESSION_COOKIE: &str = "kc_session";
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const BASIC_CACHE_TTL: Duration = Duration::from_secs(300);

/// The authenticated caller, put in request extensions by the middleware.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    /// User name, `api-token`, or `anonymous`.
    pub user: String,
    /// How they proved it: `bearer`, `basic`, `oauth2`, `session`, `none`.
    pub via: &'static str,
    /// A browser credential: state changes must prove same-origin.
    #[serde(skip)]
    pub browser: bool,
}

pub struct AuthParts {
    pub mode: AuthMode,
    pub read_only: bool,
    pub token: String,
    pub htpasswd: Option<Htpasswd>,
    pub trusted_proxy: bool,
    pub trusted_proxy_cidrs: Vec<IpNet>,
    pub identity_headers: crate::config::IdentityHeaders,
    pub allowed_users: Vec<String>,
    pub store: Store,
}

pub struct Auth {
    mode: AuthMode,
    read_only: bool,
    // Replaced when the token is regenerated; only the digest is kept.
    token: RwLock<SecretDigest>,
    htpasswd: Option<Htpasswd>,
    // Successful basic-auth checks, keyed by a digest of user and password,
    // so a browser's every request does not pay for a bcrypt run.
    basic_ok: Mutex<HashMap<[u8; 32], Instant>>,
    trusted_proxy: bool,
    trusted_proxy_cidrs: Vec<IpNet>,
    identity_headers: crate::config::IdentityHeaders,
    allowed_users: Vec<String>,
    store: Store,
    // Held across "write or read the token file, end the sessions, replace
    // the token": the file watcher must not read the old file while a
    // regeneration writes the new one, then put the old token back; and a
    // login holds it too, so no session is made with a token being replaced.
    rotation: tokio::sync::Mutex<()>,
}

impl Auth {
    pub fn new(p: AuthParts) -> Self {
        Self {
            mode: p.mode,
            read_only: p.read_only,
            token: RwLock::new(SecretDigest::of(&p.token)),
            htpasswd: p.htpasswd,
            basic_ok: Mutex::new(HashMap::new()),
            trusted_proxy: p.trusted_proxy,
            trusted_proxy_cidrs: p.trusted_proxy_cidrs,
            identity_headers: p.identity_headers,
            allowed_users: p.allowed_users,
            store: p.store,
            rotation: tokio::sync::Mutex::new(()),
        }
    }

    /// Serialises token rotations (see the field).
    pub async fn rotation(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.rotation.lock().await
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether callers may change anything: they alone see what only a
    /// writer needs (whole hook URLs).
    pub fn may_write(&self) -> bool {
        !self.read_only
    }

    pub fn token_matches(&self, presented: &str) -> bool {
        self.token
            .read()
            .map(|d| d.matches(presented))
            .unwrap_or(false)
    }

    /// Whether `token` is the current API token.
    pub fn token_is(&self, token: &str) -> bool {
        self.token.read().map(|d| d.matches(token)).unwrap_or(false)
    }

    pub fn replace_token(&self, token: &str) {
        if let Ok(mut d) = self.token.write() {
            *d = SecretDigest::of(token);
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn bearer_caller(&self, headers: &HeaderMap) -> Option<Result<Caller, ApiError>> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?;
        Some(if self.token_matches(token.trim()) {
            Ok(Caller {
                user: "api-token".into(),
                via: "bearer",
                browser: false,
            })
        } else {
            Err(bearer_refused("the Bearer token is not valid"))
        })
    }

    async fn basic_caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let refused = || basic_refused();
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(refused)?;
        let encoded = value.strip_prefix("Basic ").ok_or_else(refused)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| refused())?;
        let text = String::from_utf8(decoded).map_err(|_| refused())?;
        let (user, password) = text.split_once(':').ok_or_else(refused)?;
        let key: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::new()
                .chain_update(user.as_bytes())
                .chain_update([0u8])
                .chain_update(password.as_bytes())
                .finalize()
                .into()
        };
        let cached = self
            .basic_ok
            .lock()
            .map(|m| m.get(&key).is_some_and(|t| t.elapsed() < BASIC_CACHE_TTL))
            .unwrap_or(false);
        if !cached {
            let Some(h) = self.htpasswd.clone() else {
                return Err(refused());
            };
            let (u, p) = (user.to_string(), password.to_string());
            let ok = tokio::task::spawn_blocking(move || h.verify(&u, &p))
                .await
                .unwrap_or(false);
            if !ok {
                return Err(refused());
            }
            if let Ok(mut m) = self.basic_ok.lock() {
                m.retain(|_, t| t.elapsed() < BASIC_CACHE_TTL);
                m.insert(key, Instant::now());
            }
        }
        Ok(Caller {
            user: user.to_string(),
            via: "basic",
            browser: true,
        })
    }

    fn proxy_caller(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Caller, ApiError> {
        let trusted = self.trusted_proxy
            && peer.is_some_and(|p| self.trusted_proxy_cidrs.iter().any(|c| c.contains(&p.ip())));
        if !trusted {
            // Headers from anyone else are ignored, as if absent.
            return Err(ApiError::unauthorized(
                "sign in through the workspace's login proxy",
            ));
        }
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        // Only the configured family: the proxy passes the other one
        // through from the client as it came.
        let (user_header, email_header) = self.identity_headers.names();
        let user = get(user_header);
        let email = get(email_header);
        let Some(name) = user.clone().or_else(|| email.clone()) else {
            return Err(ApiError::unauthorized(
                "sign in through the workspace's login proxy",
            ));
        };
        if !self.allowed_users.is_empty() {
            let allowed = [&user, &email].into_iter().flatten().any(|id| {
                self.allowed_users
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(id))
            });
            if !allowed {
                return Err(ApiError::forbidden(
                    "not_allowed",
                    format!("`{name}` is not allowed to use this workspace"),
                ));
            }
        }
        Ok(Caller {
            user: name,
            via: "oauth2",
            browser: true,
        })
    }

    async fn session_caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let refused = || ApiError::unauthorized("log in with the workspace's API token");
        let id = session_cookie(headers).ok_or_else(refused)?;
        let valid = self
            .store
            .session_valid(SecretDigest::of(&id).to_hex())
            .await
            .map_err(ApiError::from)?;
        if !valid {
            return Err(refused());
        }
        Ok(Caller {
            user: "token".into(),
            via: "session",
            browser: true,
        })
    }

    /// The dashboard listener's decision for one request.
    async fn dashboard_caller(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Caller, ApiError> {
        if let Some(bearer) = self.bearer_caller(headers) {
            return bearer;
        }
        match self.mode {
            AuthMode::Basic => self.basic_caller(headers).await,
            AuthMode::Oauth2 => self.proxy_caller(headers, peer),
            AuthMode::Token => self.session_caller(headers).await,
            AuthMode::None => Ok(Caller {
                user: "anonymous".into(),
                via: "none",
                browser: true,
            }),
        }
    }

    /// The guards that follow authentication on both listeners.
    fn guard(&self, caller: &Caller, req: &Request) -> Result<(), ApiError> {
        let changes = same_origin::is_state_changing(req.method());
        if changes && caller.browser {
            same_origin::check(req.headers())?;
        }
        if changes && self.read_only {
            return Err(ApiError::read_only());
        }
        Ok(())
    }
}

pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

fn bearer_refused(msg: &str) -> ApiError {
    ApiError::unauthorized(msg)
}

fn basic_refused() -> ApiError {
    ApiError::unauthorized("a user name and password are required")
}

fn with_challenge(err: ApiError, challenge: &'static str) -> Response {
    let mut resp = err.into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    resp
}

fn peer_of(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Middleware for the api listener: Bearer token only.
pub async fn api_layer(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let caller = match auth.bearer_caller(req.headers()) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return with_challenge(e, "Bearer"),
        None => {
            return with_challenge(
                ApiError::unauthorized("send the API token as `Authorization: Bearer <token>`"),
                "Bearer",
            )
        }
    };
    if let Err(e) = auth.guard(&caller, &req) {
        return e.into_response();
    }
    proceed(caller, req, next).await
}

/// Middleware for the dashboard listener: per auth mode.
pub async fn dashboard_layer(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let peer = peer_of(&req);
    let caller = match auth.dashboard_caller(req.headers(), peer).await {
        Ok(c) => c,
        Err(e)
            if auth.mode == AuthMode::Basic && e.status == axum::http::StatusCode::UNAUTHORIZED =>
        {
            return with_challenge(e, "Basic realm=\"kube-coder\", charset=\"UTF-8\"")
        }
        Err(e) => return e.into_response(),
    };
    if let Err(e) = auth.guard(&caller, &req) {
        return e.into_response();
    }
    proceed(caller, req, next).await
}

/// Run the handler for an authenticated caller, who is also left on the
/// response for the outer layers (activity counts only known callers).
async fn proceed(caller: Caller, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(caller);
    resp
}

/// Same-origin proof for the public login/logout routes.
pub fn require_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    same_origin::check(headers)
}
