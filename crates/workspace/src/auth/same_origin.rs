//! Proof that a state-changing browser request comes from our own pages.
//!
//! Browsers send `Sec-Fetch-Site` (and `Origin`) on such requests and page
//! scripts cannot forge them. A request authenticated by a browser
//! credential (cookie, basic, proxy headers) that changes state must carry
//! `Sec-Fetch-Site: same-origin`, or, from older browsers, an `Origin` whose
//! host is the `Host` it was sent to. Bearer-token requests are exempt: a
//! browser never attaches a Bearer token by itself.

use axum::http::{header, HeaderMap, Method};

use crate::error::ApiError;

pub fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub fn check(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |why: String| {
        ApiError::forbidden(
            "cross_origin",
            format!("state-changing browser requests must come from this site: {why}"),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.to_str() {
            Ok("same-origin") => Ok(()),
            Ok(other) => Err(refuse(format!("Sec-Fetch-Site is `{other}`"))),
            Err(_) => Err(refuse("Sec-Fetch-Site is not text".into())),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Err(refuse("no Origin or Sec-Fetch-Site header".into()));
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(refuse(format!("Origin `{origin}` is not this host")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn accepts_same_origin_only() {
        assert!(check(&h(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(check(&h(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(check(&h(&[("sec-fetch-site", "same-site")])).is_err());
        assert!(check(&h(&[
            ("origin", "http://ws.example:6080"),
            ("host", "ws.example:6080")
        ]))
        .is_ok());
        assert!(check(&h(&[
            ("origin", "https://WS.example"),
            ("host", "ws.example")
        ]))
        .is_ok());
        assert!(check(&h(&[
            ("origin", "https://evil.example"),
            ("host", "ws.example")
        ]))
        .is_err());
        assert!(check(&h(&[("origin", "null"), ("host", "ws.example")])).is_err());
        assert!(check(&h(&[("host", "ws.example")])).is_err());
        // A lookalike that only starts with the host.
        assert!(check(&h(&[
            ("origin", "https://ws.example.evil"),
            ("host", "ws.example")
        ]))
        .is_err());
    }
}
