//! Who am I, browser login with the API token (token mode), logout, and
//! token regeneration (shown once, never readable afterwards).

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{require_same_origin, session_cookie, Caller, SESSION_COOKIE, SESSION_TTL};
use crate::config::AuthMode;
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::http::AppState;
use crate::secrets::{generate_token, write_secret_file, SecretDigest};

pub async fn whoami(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> impl IntoResponse {
    axum::Json(json!({
        "user": caller.user,
        "via": caller.via,
        "auth_mode": app.auth.mode().as_str(),
        "read_only": app.auth.read_only(),
        "egress_gateway": app.egress.as_ref().is_some_and(|g| g.by_name()),
        "gateway": app.egress.is_some(),
        "builds": app.builds.is_some(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    token: String,
}

/// `POST /auth/login {token}` → an HttpOnly, SameSite=Strict session cookie.
pub async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<Login>,
) -> ApiResult<Response> {
    if app.auth.mode() != AuthMode::Token {
        return Err(ApiError::bad_request(
            "wrong_auth_mode",
            format!(
                "logging in with the token is for --auth token; this dashboard uses `{}`",
                app.auth.mode().as_str()
            ),
        ));
    }
    // Login CSRF: a foreign page must not log the browser into our session.
    require_same_origin(&headers)?;
    // A login checked against a token that a rotation is replacing would
    // make a session the rotation never sees.
    let _rotation = app.auth.rotation().await;
    if !app.auth.token_matches(body.token.trim()) {
        return Err(ApiError::unauthorized(
            "that is not this workspace's API token",
        ));
    }
    let session = generate_token();
    app.store
        .create_session(
            SecretDigest::of(&session).to_hex(),
            SESSION_TTL.as_millis() as i64,
        )
        .await?;
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        secure_attribute(&headers)
    );
    Ok((
        StatusCode::OK,
        [(header::SET_COOKIE, cookie)],
        axum::Json(json!({"user": "token", "via": "session"})),
    )
        .into_response())
}

/// `; Secure` when the browser reached us over HTTPS: its page's Origin is
/// `https://…`, or a proxy in front says so (`X-Forwarded-Proto`,
/// `Forwarded: proto=https`). This server speaks plain HTTP itself (TLS
/// ends at the ingress). Believed from anyone: the attribute only narrows
/// where the browser sends the cookie, so a false claim harms no one else.
fn secure_attribute(headers: &HeaderMap) -> &'static str {
    let get = |name: header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
    };
    let https = get(header::ORIGIN)
        .iter()
        .any(|o| o.starts_with("https://"))
        || get(header::HeaderName::from_static("x-forwarded-proto"))
            .iter()
            .any(|v| v.split(',').next().is_some_and(|p| p.trim() == "https"))
        || get(header::FORWARDED)
            .iter()
            .any(|v| v.split([';', ',']).any(|kv| kv.trim() == "proto=https"));
    if https {
        "; Secure"
    } else {
        ""
    }
}

/// `POST /auth/logout`: forget the session and clear the cookie.
pub async fn logout(State(app): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    require_same_origin(&headers)?;
    if let Some(id) = session_cookie(&headers) {
        app.store
            .delete_session(SecretDigest::of(&id).to_hex())
            .await?;
    }
    let clear = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure_attribute(&headers)
    );
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

/// `POST /api/token`: a new API token, returned once. The old token and all
/// browser sessions stop working at once; no restart needed.
pub async fn regenerate_token(State(app): State<AppState>) -> ApiResult<Response> {
    let token = generate_token();
    let _rotation = app.auth.rotation().await;
    let file = app.token_file.clone();
    let t = token.clone();
    let written = tokio::task::spawn_blocking(move || write_secret_file(&file, &t))
        .await
        .map_err(|e| ApiError::internal("could not write the token file", e))?;
    match written {
        Ok(()) => {}
        // A token file on a read-only mount is managed elsewhere (the
        // operator's Secret): say where to rotate it instead.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            return Err(ApiError::conflict(
                "token_managed",
                format!(
                    "the API token file {} is read-only here, so the token is managed outside this server; on Kubernetes rotate it with `kube-coder token NAME --rotate`",
                    app.token_file.display()
                ),
            ));
        }
        Err(e) => return Err(ApiError::internal("could not write the token file", e)),
    }
    // Sessions first: no request may find the old token refused and an old
    // session still good (logins wait for the rotation lock).
    app.store.delete_all_sessions().await?;
    app.auth.replace_token(&token);
    tracing::info!("API token regenerated");
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"token": token})),
    )
        .into_response())
}
