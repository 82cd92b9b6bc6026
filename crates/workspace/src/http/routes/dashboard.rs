//! `GET /` and `GET /assets/{file}`: the dashboard app (see `web_assets`).
//! The app routes with the URL fragment (`/#/files`), so no other path
//! serves it and unknown paths keep answering JSON 404.

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::web_assets;

pub async fn index() -> Response {
    web_assets::index()
}

pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    web_assets::asset(&file, &headers)
}
