//! The dashboard app (`web/`, built by Vite into `web/dist`), embedded in
//! the binary at compile time, and the headers it is served with.
//!
//! - `index.html` is never cached and carries a fresh CSP nonce per
//!   response (Vite writes `__CSP_NONCE__` where the nonce goes).
//! - `/assets/*` have content hashes in their names: cached for a year,
//!   immutable. Precompressed `.br`/`.gz` siblings (written by the build)
//!   are sent when the browser accepts them.
//! - Without a build (`cargo build` alone) a small page says how to build it.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Dist;

const NONCE_PLACEHOLDER: &str = "__CSP_NONCE__";

/// The policy for every dashboard page. Scripts only from this origin;
/// styles from this origin or carrying this response's nonce (xterm.js
/// writes its theme into `<style>` elements; the app gives them the nonce).
fn csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; \
         img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

fn common_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// Is the app built into this binary?
pub fn built() -> bool {
    Dist::get("index.html").is_some()
}

/// `GET /`: the app's page, or the how-to-build page.
pub fn index() -> Response {
    let nonce = crate::secrets::generate_token();
    let body = page(
        Dist::get("index.html").as_ref().map(|f| &f.data[..]),
        &nonce,
    );
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&csp(&nonce)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    common_headers(h);
    resp
}

/// The built `index.html` with this response's nonce, or the how-to-build page.
fn page(built: Option<&[u8]>, nonce: &str) -> String {
    match built {
        Some(html) => String::from_utf8_lossy(html).replace(NONCE_PLACEHOLDER, nonce),
        None => NOT_BUILT.to_string(),
    }
}

/// `GET /assets/{file}`: one hashed build file.
pub fn asset(file: &str, req_headers: &HeaderMap) -> Response {
    let path = format!("assets/{file}");
    let Some(plain) = Dist::get(&path) else {
        return ApiError::not_found(format!("no dashboard asset `{file}`")).into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&plain.metadata.sha256_hash()[..16]));
    let accepts = req_headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut resp = if req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut chosen = (plain.data.clone(), None);
        for (enc, ext) in [("br", "br"), ("gzip", "gz")] {
            if accepts_encoding(accepts, enc) {
                if let Some(c) = Dist::get(&format!("{path}.{ext}")) {
                    chosen = (c.data, Some(enc));
                    break;
                }
            }
        }
        let mut r = (StatusCode::OK, chosen.0.into_owned()).into_response();
        if let Some(enc) = chosen.1 {
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
        }
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type(file)) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    common_headers(h);
    resp
}

fn accepts_encoding(header: &str, enc: &str) -> bool {
    header.split(',').any(|part| {
        let mut it = part.split(';');
        let name = it.next().unwrap_or_default().trim();
        let refused = it.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                == Some(0.0)
        });
        name.eq_ignore_ascii_case(enc) && !refused
    })
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, e)| e) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        Some("map") => "application/json",
        _ => "application/octet-stream",
    }
}

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>kube-coder workspace</title></head><body>\
<h1>kube-coder workspace</h1>\
<p>The dashboard app is not built into this binary. Build it with \
<code>make build</code> (or <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>, \
then <code>cargo build</code> again).</p>\
<p>The task API is served here and on the api listener: \
<code>GET /api/tasks</code>, <code>POST /api/tasks</code> (see docs/api.md).</p>\
</body></html>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_matched_by_name_and_q() {
        assert!(accepts_encoding("gzip, deflate, br, zstd", "br"));
        assert!(accepts_encoding("gzip;q=0.8", "gzip"));
        assert!(!accepts_encoding("gzip;q=0", "gzip"));
        assert!(!accepts_encoding("", "br"));
        assert!(!accepts_encoding("brotli", "br"));
    }

    #[test]
    fn the_page_carries_the_nonce_or_says_how_to_build_the_app() {
        let html = br#"<script nonce="__CSP_NONCE__" src="/assets/a.js"></script>"#;
        assert_eq!(
            page(Some(html), "n1"),
            r#"<script nonce="n1" src="/assets/a.js"></script>"#
        );
        let missing = page(None, "n1");
        assert!(missing.contains("not built"), "{missing}");
        assert!(missing.contains("make build"), "{missing}");
    }

    #[test]
    fn the_policy_allows_no_inline_script() {
        let p = csp("abc");
        assert!(p.contains("script-src 'self';"));
        assert!(!p.contains("unsafe"));
        assert!(p.contains("'nonce-abc'"));
        assert!(p.contains("frame-ancestors 'none'"));
    }
}
