//! The file API: list, download, upload, mkdir, rename, delete, extract.
//! All paths are relative to the workspace home; `files/` does the work.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::events::ServerEvent;
use crate::extract::{Json, Query};
use crate::files::upload::Precondition;
use crate::files::{blocking, download, upload, zip_extract};
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    #[serde(default)]
    path: String,
    /// Delete a non-empty directory with everything in it.
    #[serde(default)]
    recursive: bool,
}

/// Tell open dashboards that the directory holding `path` changed.
fn changed(app: &AppState, path: &str) {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
    app.events.publish(ServerEvent::FilesChanged { dir });
}

pub async fn list(State(app): State<AppState>, Query(q): Query<PathQuery>) -> ApiResult<Response> {
    let files = app.files.clone();
    let path = files.path(&q.path)?;
    let listing = blocking(move || files.list(&path)).await?;
    Ok(axum::Json(listing).into_response())
}

pub async fn content(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<PathQuery>,
) -> ApiResult<Response> {
    let files = app.files.clone();
    let path = files.path(&q.path)?;
    let opened = blocking(move || download::open(&files, &path)).await?;
    download::respond(opened, &headers, method == Method::HEAD).await
}

pub async fn upload(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PathQuery>,
    body: Body,
) -> ApiResult<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    let mut shown = String::new();
    // A form upload would be stored with its boundaries and field headers
    // around the file: refuse it and say how to send the file itself.
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        });
    let result = match app.files.path(&q.path) {
        Ok(_) if form => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "uploads take the file's bytes as the body, not a multipart form: \
             curl -T FILE or --data-binary @FILE with any other Content-Type",
        )),
        Ok(path) => {
            shown = path.display();
            let value = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
            let expect =
                Precondition::from_headers(value(header::IF_MATCH), value(header::IF_NONE_MATCH));
            upload::upload(&app.files, path, declared, expect, body).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(done) => {
            app.metrics.upload_bytes.inc_by(done.size);
            changed(&app, &shown);
            let etag = done
                .etag
                .as_deref()
                .and_then(|t| HeaderValue::from_str(t).ok());
            let mut resp = (StatusCode::CREATED, axum::Json(done)).into_response();
            if let Some(t) = etag {
                resp.headers_mut().insert(header::ETAG, t);
            }
            Ok(resp)
        }
        // The body may be unread: the connection cannot carry another request.
        Err(e) => Ok(([(header::CONNECTION, "close")], e).into_response()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mkdir {
    path: String,
    #[serde(default)]
    parents: bool,
}

pub async fn mkdir(State(app): State<AppState>, Json(m): Json<Mkdir>) -> ApiResult<Response> {
    let files = app.files.clone();
    let path = files.path(&m.path)?;
    let shown = path.display();
    blocking(move || files.mkdir(&path, m.parents)).await?;
    // With `parents`, any directory on the way may be new: each parent
    // listing may have changed.
    changed(&app, &shown);
    if m.parents {
        let mut created = shown.as_str();
        while let Some((up, _)) = created.rsplit_once('/') {
            changed(&app, up);
            created = up;
        }
    }
    Ok((StatusCode::CREATED, axum::Json(json!({"path": shown}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    from: String,
    to: String,
    #[serde(default)]
    overwrite: bool,
}

pub async fn rename(State(app): State<AppState>, Json(r): Json<Rename>) -> ApiResult<Response> {
    let files = app.files.clone();
    let from = files.path(&r.from)?;
    let to = files.path(&r.to)?;
    let shown = to.display();
    let old = from.display();
    blocking(move || files.rename(&from, &to, r.overwrite)).await?;
    changed(&app, &old);
    changed(&app, &shown);
    Ok(axum::Json(json!({"path": shown})).into_response())
}

pub async fn delete(
    State(app): State<AppState>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Response> {
    let files = app.files.clone();
    let path = files.path(&q.path)?;
    let shown = path.display();
    blocking(move || files.delete(&path, q.recursive)).await?;
    changed(&app, &shown);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extract {
    /// The archive.
    path: String,
    /// A directory to create for its contents.
    dest: String,
}

pub async fn extract(State(app): State<AppState>, Json(x): Json<Extract>) -> ApiResult<Response> {
    let files = app.files.clone();
    let archive = files.path(&x.path)?;
    let dest = files.path(&x.dest)?;
    if dest.is_root() {
        return Err(ApiError::bad_request(
            "is_root",
            "extract into a new directory below the home",
        ));
    }
    let shown = dest.display();
    let done = blocking(move || zip_extract::extract(&files, &archive, &dest)).await?;
    changed(&app, &shown);
    Ok((StatusCode::CREATED, axum::Json(done)).into_response())
}
