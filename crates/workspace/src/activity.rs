//! When this server last served a person or a script: the operator's idle
//! stop asks for it (`GET /api/activity` on the api listener).
//! Only callers who proved who they are count (the auth layers leave the
//! [`Caller`] on the response): a stranger's 401s and 404s, a scanner's
//! requests, and the anonymous viewers of a public read-only workspace
//! never keep a workspace running. Probes, metrics scrapes and the activity
//! question itself do not count either. Live tasks are counted apart.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::Caller;

/// The time of the last counted request, in Unix seconds.
#[derive(Debug)]
pub struct Activity {
    last: AtomicI64,
}

/// Now in Unix seconds, from the server's one clock.
fn now() -> i64 {
    crate::clock::now_ms() / 1000
}

impl Default for Activity {
    /// Starting counts as activity: a fresh pod is not idle already.
    fn default() -> Self {
        Self {
            last: AtomicI64::new(now()),
        }
    }
}

impl Activity {
    pub fn touch(&self) {
        self.last.store(now(), Ordering::Relaxed);
    }

    /// When, in Unix milliseconds (whole seconds).
    pub fn last_ms(&self) -> i64 {
        self.last.load(Ordering::Relaxed) * 1000
    }

    pub fn idle_seconds(&self) -> u64 {
        (now() - self.last.load(Ordering::Relaxed)).max(0) as u64
    }
}

/// Paths that are not someone using the workspace.
fn counts(path: &str) -> bool {
    !matches!(path, "/livez" | "/readyz" | "/metrics" | "/api/activity")
}

/// Middleware: note the time of every counted request, once its caller is
/// known (the auth layers run inside this one).
pub async fn record(State(activity): State<Arc<Activity>>, req: Request, next: Next) -> Response {
    let counted = counts(req.uri().path());
    let resp = next.run(req).await;
    let identified = resp
        .extensions()
        .get::<Caller>()
        .is_some_and(|c| c.via != "none");
    if counted && identified {
        activity.touch();
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_do_not_count() {
        assert!(!counts("/livez"));
        assert!(!counts("/api/activity"));
        assert!(counts("/api/tasks"));
        assert!(counts("/"));
    }
}
