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
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use super::config::{Api, ModelsConfig, Provider};
use super::meter::Meter;
use super::usage::UsageReader;
use crate::decision::Refusal;
use crate::proxy::{strip_hop_by_hop, Body, HOP_BY_HOP};
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
    Ok(forward(&gw, req).await.unwrap_or_else(|refusal| refusal))
}

/// The gateway's own answer instead of the provider's, counted under
/// `outcome` for `provider`.
fn refuse(
    meter: &Meter,
    provider: &str,
    outcome: &'static str,
    status: StatusCode,
    message: String,
) -> Response<Body> {
    meter.outcome(provider, outcome);
    error(status, outcome, message)
}

/// In order: the provider the path names, its key, the budget, the URL,
/// the request as the provider gets it, and the answer streamed back.
async fn forward(gw: &Gateway, req: Request<Incoming>) -> Result<Response<Body>, Response<Body>> {
    let models = gw.models.as_ref().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this workspace has no model providers (spec.models)".into(),
        )
    })?;
    let loaded = models.current();
    let (provider, rest) = route(&loaded.config, req.uri().path())
        .map_err(|why| error(StatusCode::NOT_FOUND, "not_found", why))?;
    let meter = &gw.meter;
    let name = provider.name.as_str();
    let key = loaded.key(name).ok_or_else(|| {
        refuse(
            meter,
            name,
            "no_key",
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no key is configured for the model provider {name} (the cluster's model key Secret has no entry named {name})"),
        )
    })?;
    meter
        .admit(loaded.config.monthly_token_budget)
        .map_err(|e| {
            let mut r = refuse(
                meter,
                name,
                "budget_exceeded",
                StatusCode::TOO_MANY_REQUESTS,
                e.to_string(),
            );
            // The providers' SDKs retry a 429 unless told not to.
            r.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
            r
        })?;
    let url = target(provider, &rest, req.uri().query())
        .map_err(|why| error(StatusCode::BAD_REQUEST, "invalid_request_error", why))?;
    models
        .check_literal(url.host_str().unwrap_or_default())
        .map_err(|refusal| {
            refuse(
                meter,
                name,
                "refused",
                StatusCode::FORBIDDEN,
                refusal.to_string(),
            )
        })?;
    let (parts, body) = req.into_parts();
    let headers = upstream_headers(parts.headers, provider, key).ok_or_else(|| {
        refuse(
            meter,
            name,
            "no_key",
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the key configured for {name} cannot be sent in a header"),
        )
    })?;
    let answer = loaded
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await
        .map_err(|e| match refusal_in(&e) {
            Some(refusal) => refuse(
                meter,
                name,
                "refused",
                StatusCode::FORBIDDEN,
                refusal.to_string(),
            ),
            None => {
                let mut why = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    why = format!("{why}: {c}");
                    cause = c.source();
                }
                refuse(
                    meter,
                    name,
                    "upstream_failed",
                    StatusCode::BAD_GATEWAY,
                    format!("the model provider {name} could not be reached ({why})"),
                )
            }
        })?;
    meter.outcome(name, status_class(answer.status()));
    Ok(relay(answer, gw.meter.clone(), name))
}

/// The provider the path's first segment names, and the rest of the path.
fn route<'a>(config: &'a ModelsConfig, path: &str) -> Result<(&'a Provider, String), String> {
    let path = path.trim_start_matches('/');
    let (name, rest) = path.split_once('/').unwrap_or((path, ""));
    match config.provider(name) {
        Some(p) => Ok((p, rest.to_string())),
        None => {
            let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
            Err(format!(
                "no model provider is named {name:?} here; this workspace's are: {} (the path starts with one, as in /anthropic/v1/messages)",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ))
        }
    }
}

/// The provider's base URL joined with the rest of the path, and the query
/// without a key; never another host than the provider's.
fn target(provider: &Provider, rest: &str, query: Option<&str>) -> Result<url::Url, String> {
    let mut url = format!(
        "{}/{}",
        provider.base_url.as_str().trim_end_matches('/'),
        rest
    );
    let query = query_without_key(query.unwrap_or_default());
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    let url = url::Url::parse(&url).map_err(|e| {
        format!(
            "the path does not make a valid URL at {} ({e})",
            provider.name
        )
    })?;
    // The key goes to the provider's own host and port, whatever the path.
    if url.host_str() != provider.base_url.host_str()
        || url.port_or_known_default() != provider.base_url.port_or_known_default()
    {
        return Err(format!("the path leaves {}'s host", provider.name));
    }
    Ok(url)
}

/// The client's headers as the provider gets them: one hop's own, the
/// client's credential (a placeholder) and its encodings (bodies stay
/// readable for usage) dropped; the provider's key added. None when the
/// key cannot be a header value.
fn upstream_headers(mut headers: HeaderMap, provider: &Provider, key: &str) -> Option<HeaderMap> {
    strip_hop_by_hop(&mut headers);
    for drop in Api::CREDENTIAL_HEADERS
        .into_iter()
        .chain(["host", "accept-encoding"])
    {
        headers.remove(drop);
    }
    let (header, value) = provider.api.credential(key);
    let mut value = HeaderValue::from_str(&value).ok()?;
    value.set_sensitive(true);
    headers.insert(HeaderName::from_static(header), value);
    Some(headers)
}

/// The provider's answer, its body passed on chunk by chunk and read for
/// usage on the way.
fn relay(answer: reqwest::Response, meter: Arc<Meter>, provider: &str) -> Response<Body> {
    let mut response = Response::builder().status(answer.status());
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
        provider: provider.to_string(),
    };
    let body = StreamBody::new(tapped.map_ok(Frame::data).map_err(Into::into));
    response
        .body(BodyExt::boxed_unsync(body))
        .unwrap_or_else(|e| {
            error(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                format!("the provider's answer could not be passed on ({e})"),
            )
        })
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
