//! One request on the model port: `/{provider}/{path}` goes to the
//! provider's base URL joined with `{path}`, with the client's credential
//! replaced by the provider's key. The gateway's own answers (an unknown
//! provider, no key, the budget used up, an unreachable provider) are JSON
//! in the shape the providers' clients read: `{"type":"error","error":
//! {"type":…,"message":…}}`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use super::meter::Meter;
use super::usage::UsageReader;
use crate::decision::Refusal;
use crate::proxy::{Body, HOP_BY_HOP};
use crate::Gateway;

fn error(status: StatusCode, kind: &str, message: String) -> Response<Body> {
    let body = serde_json::json!({
        "type": "error",
        "error": {"type": kind, "message": format!("kube-coder egress gateway: {message}")},
    });
    let mut r = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The metric label of an upstream status.
fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The refusal inside a failed request's chain of causes, if the address
/// checks were what stopped it.
fn refusal_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<Refusal>() {
            return Some(r);
        }
        cause = c.source();
    }
    None
}

/// The query without a credential (Gemini's clients may send `key=`).
fn query_without_key(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("key="))
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let Some(models) = gw.models.as_ref() else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this workspace has no model providers (spec.models)".into(),
        ));
    };
    let loaded = models.current();
    let path = req.uri().path();
    let (name, rest) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path.trim_start_matches('/'), ""));
    let Some(provider) = loaded.config.provider(name) else {
        let names: Vec<&str> = loaded
            .config
            .providers
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        return Ok(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no model provider is named {name:?} here; this workspace's are: {} (the path starts with one, as in /anthropic/v1/messages)",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ),
        ));
    };
    let meter = gw.meter.clone();
    let Some(key) = loaded.key(&provider.name) else {
        meter.outcome(&provider.name, "no_key");
        return Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_key",
            format!(
                "no key is configured for the model provider {} (the cluster's model key Secret has no entry named {})",
                provider.name, provider.name
            ),
        ));
    };
    if let Err(e) = meter.admit(loaded.config.monthly_token_budget) {
        meter.outcome(&provider.name, "budget_exceeded");
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "budget_exceeded",
            e.to_string(),
        );
        // The providers' SDKs retry a 429 unless told not to.
        r.headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
        return Ok(r);
    }
    let mut url = format!(
        "{}/{}",
        provider.base_url.as_str().trim_end_matches('/'),
        rest
    );
    let query = query_without_key(req.uri().query().unwrap_or_default());
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    let url = match reqwest::Url::parse(&url) {
        Ok(u) => u,
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!(
                    "the path does not make a valid URL at {} ({e})",
                    provider.name
                ),
            ))
        }
    };
    // The key goes to the provider's own host and port, whatever the path.
    if url.host_str() != provider.base_url.host_str()
        || url.port_or_known_default() != provider.base_url.port_or_known_default()
    {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("the path leaves {}'s host", provider.name),
        ));
    }
    if let Err(refusal) = models.check_literal(url.host_str().unwrap_or_default()) {
        meter.outcome(&provider.name, "refused");
        return Ok(error(StatusCode::FORBIDDEN, "refused", refusal.to_string()));
    }

    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    for drop in HOP_BY_HOP
        .iter()
        .copied()
        .chain(super::config::Api::CREDENTIAL_HEADERS)
        // Identity bodies, so usage can be read from them.
        .chain(["host", "accept-encoding"])
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(drop);
    }
    let (header, value) = provider.api.credential(key);
    match HeaderValue::from_str(&value) {
        Ok(mut v) => {
            v.set_sensitive(true);
            headers.insert(HeaderName::from_static(header), v);
        }
        Err(_) => {
            meter.outcome(&provider.name, "no_key");
            return Ok(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_key",
                format!(
                    "the key configured for {} cannot be sent in a header",
                    provider.name
                ),
            ));
        }
    }
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    let sent = loaded
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(a) => a,
        Err(e) => {
            if let Some(refusal) = refusal_in(&e) {
                meter.outcome(&provider.name, "refused");
                return Ok(error(StatusCode::FORBIDDEN, "refused", refusal.to_string()));
            }
            meter.outcome(&provider.name, "upstream_failed");
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                why = format!("{why}: {c}");
                cause = c.source();
            }
            return Ok(error(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                format!(
                    "the model provider {} could not be reached ({why})",
                    provider.name
                ),
            ));
        }
    };
    let status = answer.status();
    meter.outcome(&provider.name, status_class(status));
    let mut response = Response::builder().status(status);
    let content_type = answer
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != hyper::header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    let tapped = Tapped {
        inner: answer.bytes_stream().boxed(),
        reader: UsageReader::new(&content_type),
        meter,
        provider: provider.name.clone(),
    };
    let body = StreamBody::new(tapped.map_ok(Frame::data).map_err(Into::into));
    Ok(response
        .body(BodyExt::boxed_unsync(body))
        .unwrap_or_else(|e| {
            error(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                format!("the provider's answer could not be passed on ({e})"),
            )
        }))
}

/// The answer's body on its way to the client, each chunk passed on as it
/// comes and read for usage; the usage is recorded when the body ends or
/// the client goes away, whichever is first.
struct Tapped {
    inner: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    reader: UsageReader,
    meter: Arc<Meter>,
    provider: String,
}

impl Stream for Tapped {
    type Item = reqwest::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            let chunk = chunk.clone();
            self.reader.feed(&chunk);
        }
        polled
    }
}

impl Drop for Tapped {
    fn drop(&mut self) {
        let used = self.reader.finish();
        self.meter.record(&self.provider, used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_in_the_query_is_dropped_and_the_rest_kept() {
        assert_eq!(query_without_key("alt=sse&key=AIza123"), "alt=sse");
        assert_eq!(query_without_key("key=x"), "");
        assert_eq!(query_without_key("a=1&b=2"), "a=1&b=2");
    }
}
