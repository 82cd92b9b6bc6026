//! The proxy port: what a workspace's `HTTPS_PROXY` and `HTTP_PROXY` point
//! at. `CONNECT host:port` (HTTPS, and anything else tunnelled) and plain
//! HTTP in absolute form (`GET http://host/path`) are checked by
//! [`crate::decision`] and then connected to the checked addresses only; a
//! refusal is a 403 whose body names the rule, and the workspace's dashboard
//! lists it too. Bodies stream both ways; nothing is buffered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::decision::Refusal;
use crate::Gateway;

/// Every answer's body: the errors of whatever it streams from.
pub type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Headers that belong to one hop, never forwarded (RFC 9110 §7.6.1, and
/// the proxy's own).
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Removes one hop's headers: the fixed ones, and those the Connection
/// header names as its own.
pub fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

/// Bytes each direction of a tunnel reads at a time.
const TUNNEL_BUFFER: usize = 64 << 10;

/// The header naming why a request was refused (its metric label).
pub const REFUSAL_HEADER: &str = "x-kube-coder-egress-refusal";

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{message}\n")))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn refused(refusal: &Refusal) -> Response<Body> {
    let mut r = text(
        StatusCode::FORBIDDEN,
        format!("kube-coder egress gateway: {refusal}"),
    );
    r.headers_mut()
        .insert(REFUSAL_HEADER, HeaderValue::from_static(refusal.label()));
    r
}

/// The first of `addrs` that accepts a connection within `timeout`.
async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: no answer within {}s", timeout.as_secs()),
        }
    }
    Err(last)
}

/// One request on the proxy port.
pub async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    shutdown: CancellationToken,
) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::CONNECT {
        return Ok(tunnel(gw, req, shutdown).await);
    }
    match req.uri().scheme_str() {
        Some("http") => Ok(forward(gw, req, shutdown).await),
        Some(_) => Ok(text(
            StatusCode::BAD_REQUEST,
            "kube-coder egress gateway: only http:// URLs are forwarded; HTTPS goes through CONNECT (set HTTPS_PROXY)".into(),
        )),
        None => Ok(text(
            StatusCode::BAD_REQUEST,
            "kube-coder egress gateway: this is the workspace's egress proxy; send requests through it with HTTP_PROXY / HTTPS_PROXY".into(),
        )),
    }
}

/// Checks `host:port`, connects, and records the decision.
async fn open(
    gw: &Gateway,
    host: &str,
    port: u16,
    kind: &'static str,
) -> Result<TcpStream, Response<Body>> {
    let addrs = match gw.check(host, port).await {
        Ok(addrs) => addrs,
        Err(refusal) => {
            gw.ledger.refused(host, port, &refusal);
            return Err(refused(&refusal));
        }
    };
    match connect(&addrs, gw.connect_timeout).await {
        Ok(stream) => {
            gw.ledger.allowed(host, port, kind);
            Ok(stream)
        }
        Err(e) => {
            gw.ledger.failed(host, port, &e);
            Err(text(
                StatusCode::BAD_GATEWAY,
                format!("kube-coder egress gateway: {host}:{port} is allowed but could not be reached ({e})"),
            ))
        }
    }
}

async fn tunnel(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    shutdown: CancellationToken,
) -> Response<Body> {
    let Some((host, port)) = req
        .uri()
        .authority()
        .and_then(|a| Some((a.host().to_string(), a.port_u16()?)))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "kube-coder egress gateway: CONNECT needs host:port".into(),
        );
    };
    let mut upstream = match open(&gw, &host, port, "connect").await {
        Ok(s) => s,
        Err(response) => return response,
    };
    // The client's side becomes a plain byte stream once we answer 200.
    tokio::spawn(async move {
        let client = match hyper::upgrade::on(req).await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "a CONNECT client left before its tunnel opened");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        // Large buffers: with the default 8 KiB a tunnel moved a fifth of
        // what a direct connection does (bench/egress.sh).
        tokio::select! {
            _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, TUNNEL_BUFFER, TUNNEL_BUFFER) => {}
            _ = shutdown.cancelled() => {}
        }
    });
    Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync())
}

async fn forward(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    shutdown: CancellationToken,
) -> Response<Body> {
    let Some(host) = req.uri().host().map(str::to_string) else {
        return text(
            StatusCode::BAD_REQUEST,
            "kube-coder egress gateway: the URL has no host".into(),
        );
    };
    let port = req.uri().port_u16().unwrap_or(80);
    let upstream = match open(&gw, &host, port, "http").await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(e) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("kube-coder egress gateway: {host}:{port} did not speak HTTP ({e})"),
                )
            }
        };
    tokio::spawn(async move {
        tokio::select! {
            _ = conn => {}
            _ = shutdown.cancelled() => {}
        }
    });
    // Origin form towards the server; the Host header says where.
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().map(|a| a.as_str().to_string());
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "kube-coder egress gateway: the request path is not valid".into(),
            )
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(HOST) {
        if let Some(v) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
            parts.headers.insert(HOST, v);
        }
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(|b| b.map_err(Into::into).boxed_unsync()),
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("kube-coder egress gateway: {host}:{port} failed the request ({e})"),
        ),
    }
}
