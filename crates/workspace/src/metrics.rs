//! Prometheus metrics: the registry, the families, and the HTTP middleware
//! that counts requests by route and status.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::task_state::TaskState;

/// Which listener served a request (a label value).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Listener {
    dashboard,
    api,
}

/// A request's method as a label value: the methods this server answers,
/// and `other` for anything a client makes up (each made-up method would
/// otherwise become a series of its own, kept forever).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum MethodLabel {
    GET,
    HEAD,
    POST,
    PUT,
    PATCH,
    DELETE,
    OPTIONS,
    other,
}

impl From<&axum::http::Method> for MethodLabel {
    fn from(m: &axum::http::Method) -> Self {
        use axum::http::Method;
        match *m {
            Method::GET => Self::GET,
            Method::HEAD => Self::HEAD,
            Method::POST => Self::POST,
            Method::PUT => Self::PUT,
            Method::PATCH => Self::PATCH,
            Method::DELETE => Self::DELETE,
            Method::OPTIONS => Self::OPTIONS,
            _ => Self::other,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub listener: Listener,
    pub method: MethodLabel,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub listener: Listener,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiptLabels {
    /// `accepted`, `duplicate`, `rejected` (signature) or `error`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FiringLabels {
    /// `fired`, `missed` or `failed`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    pub assistant: String,
    pub state: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub tasks: Family<StateLabels, Gauge>,
    pub tasks_created: Counter,
    pub task_duration: Family<FinishedLabels, Histogram>,
    pub sse_streams: Gauge,
    pub upload_bytes: Counter,
    pub hook_attempts: Family<HookLabels, Counter>,
    pub hook_dead_letters: Gauge,
    pub webhook_receipts: Family<ReceiptLabels, Counter>,
    pub schedule_firings: Family<FiringLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kube_coder");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let tasks = Family::<StateLabels, Gauge>::default();
        let tasks_created = Counter::default();
        let task_duration = Family::<FinishedLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 2.0, 16))
        });
        let sse_streams = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by listener, method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration by listener and route",
            http_duration.clone(),
        );
        registry.register("tasks", "Tasks by state", tasks.clone());
        registry.register("tasks_created", "Tasks created", tasks_created.clone());
        registry.register(
            "task_duration_seconds",
            "Duration of finished tasks, from start to final state",
            task_duration.clone(),
        );
        registry.register(
            "sse_streams",
            "Open server-sent-event streams",
            sse_streams.clone(),
        );
        let upload_bytes = Counter::default();
        let hook_attempts = Family::<HookLabels, Counter>::default();
        let hook_dead_letters = Gauge::default();
        let webhook_receipts = Family::<ReceiptLabels, Counter>::default();
        let schedule_firings = Family::<FiringLabels, Counter>::default();
        registry.register(
            "schedule_firings",
            "Schedule firings by outcome (missed ones included)",
            schedule_firings.clone(),
        );
        registry.register(
            "webhook_receipts",
            "Inbound webhook deliveries by result",
            webhook_receipts.clone(),
        );
        registry.register(
            "hook_attempts",
            "Completion-hook delivery attempts by outcome",
            hook_attempts.clone(),
        );
        registry.register(
            "hook_dead_letters",
            "Hook deliveries that gave up (re-deliverable through the API)",
            hook_dead_letters.clone(),
        );
        registry.register(
            "upload_bytes",
            "Bytes received by completed uploads",
            upload_bytes.clone(),
        );
        Self {
            hook_attempts,
            hook_dead_letters,
            webhook_receipts,
            schedule_firings,
            upload_bytes,
            registry,
            http_requests,
            http_duration,
            tasks,
            tasks_created,
            task_duration,
            sse_streams,
        }
    }

    /// Set the per-state gauge from counts taken at scrape time.
    pub fn set_task_counts(&self, counts: &[(TaskState, i64)]) {
        for st in TaskState::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| *s == st)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.tasks
                .get_or_create(&StateLabels {
                    state: st.as_str().into(),
                })
                .set(n);
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Route layer: hand the matched route template to [`track`] on the
/// response, since an outer layer runs before routing and cannot see it.
pub async fn remember_route(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        resp.extensions_mut().insert(m);
    }
    resp
}

/// Count and time every request by its route template (never the raw path)
/// and a fixed set of methods: no client can create label values.
pub async fn track(
    State((metrics, listener)): State<(Arc<Metrics>, Listener)>,
    req: Request,
    next: Next,
) -> Response {
    let method = MethodLabel::from(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    let route = resp
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            listener: listener.clone(),
            method,
            route: route.clone(),
            status: resp.status().as_u16(),
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&RouteLabels { listener, route })
        .observe(started.elapsed().as_secs_f64());
    resp
}
