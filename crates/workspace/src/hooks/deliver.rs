//! The delivery worker: drains the hook outbox in SQLite.
//!
//! Rows are written in the same transaction as a task's final state, so a
//! crash can neither lose a delivery nor invent one. The worker sleeps until
//! the next row is due or it is woken; each attempt re-checks the URL with
//! the SSRF guard, posts with a timeout through a pinned client, reads at
//! most a capped body, and records the attempt and the next step together.
//! Delivery is at least once: receivers deduplicate on the
//! `X-Kube-Coder-Delivery` / `Idempotency-Key` header.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ssrf::Guard;
use crate::clock::now_ms;
use crate::events::{EventBus, ServerEvent};
use crate::metrics::{HookLabels, Metrics};
use crate::signature::{sign_delivery, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::store::{AfterAttempt, Attempt, Delivery, Store};

#[derive(Debug, Clone)]
pub struct HookSettings {
    pub timeout: Duration,
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, with jitter, capped at an hour.
    pub retry_base: Duration,
    /// Most bytes of a receiver's answer that are read.
    pub response_cap: usize,
}

impl Default for HookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            retry_base: Duration::from_secs(2),
            response_cap: 64 * 1024,
        }
    }
}

pub struct Deliverer {
    store: Store,
    guard: Guard,
    settings: HookSettings,
    metrics: Arc<Metrics>,
    events: EventBus,
    /// Rung when a row is written or re-queued, so nothing waits for a timer.
    wake: Arc<Notify>,
}

const BATCH: usize = 32;
const IDLE_CHECK: Duration = Duration::from_secs(30);

impl Deliverer {
    pub fn start(
        store: Store,
        guard: Guard,
        settings: HookSettings,
        metrics: Arc<Metrics>,
        events: EventBus,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let d = Arc::new(Self {
            store,
            guard,
            settings,
            metrics,
            events,
            wake,
        });
        tokio::spawn(d.clone().run(shutdown));
        d
    }

    /// Until `shutdown`: attempts under way finish, no new ones start.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let due = match self.store.due_deliveries(now_ms(), BATCH).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the hook outbox");
                    Vec::new()
                }
            };
            if !due.is_empty() {
                let mut set = tokio::task::JoinSet::new();
                for d in due {
                    let me = self.clone();
                    set.spawn(async move { me.attempt(d).await });
                }
                while set.join_next().await.is_some() {}
                continue;
            }
            let wait = match self.store.next_delivery_due().await {
                Ok(Some(t)) => Duration::from_millis((t - now_ms()).max(0) as u64).min(IDLE_CHECK),
                _ => IDLE_CHECK,
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    async fn attempt(&self, d: Delivery) {
        let started = Instant::now();
        let (status, error) = self.post(&d).await;
        let attempts = d.attempts as u32 + 1;
        let next = match (status, &error) {
            (Some(s), None) if (200..300).contains(&s) => AfterAttempt::Delivered,
            // The receiver refused it for good: retrying cannot help.
            (Some(s), _) if (300..500).contains(&s) && s != 408 && s != 429 => AfterAttempt::Dead,
            (None, Some(e)) if e.starts_with("refused:") => AfterAttempt::Dead,
            _ if attempts >= self.settings.max_attempts => AfterAttempt::Dead,
            _ => AfterAttempt::RetryAt(now_ms() + self.backoff(attempts).as_millis() as i64),
        };
        let attempt = Attempt {
            at: now_ms(),
            status: status.map(i64::from),
            error: error.clone(),
            duration_ms: started.elapsed().as_millis() as i64,
        };
        if let Err(e) = self.store.record_attempt(&d.id, attempt, next).await {
            tracing::error!(delivery.id = %d.id, error = %e, "could not record a hook attempt");
            return;
        }
        let outcome = match next {
            AfterAttempt::Delivered => "delivered",
            AfterAttempt::RetryAt(_) => "retry",
            AfterAttempt::Dead => "dead",
        };
        self.metrics
            .hook_attempts
            .get_or_create(&HookLabels {
                outcome: outcome.into(),
            })
            .inc();
        tracing::info!(delivery.id = %d.id, task.id = %d.task_id, status = ?status, error = ?error, outcome, "hook attempt");
        if !matches!(next, AfterAttempt::RetryAt(_)) {
            self.events.publish(ServerEvent::HookDelivery {
                delivery_id: d.id.clone(),
                task_id: d.task_id.clone(),
                state: outcome.into(),
                status,
            });
        }
    }

    /// `base * 2^(n-1)`, jittered to 50–100%, at most an hour.
    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .settings
            .retry_base
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(Duration::from_secs(3600));
        exp.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// One POST. `(status, error)`; an error starting `refused:` is final.
    async fn post(&self, d: &Delivery) -> (Option<u16>, Option<String>) {
        let checked = match self.guard.check(&d.url).await {
            Ok(c) => c,
            Err(e) => return (None, Some(format!("refused: {e}"))),
        };
        let client = match checked.client(self.settings.timeout) {
            Ok(c) => c,
            Err(e) => return (None, Some(format!("client: {}", e.without_url()))),
        };
        let mut req = client
            .post(checked.url.clone())
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("kube-coder/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-kube-coder-event", "task.finished")
            .header(DELIVERY_HEADER, &d.id)
            .header("idempotency-key", &d.id)
            .body(d.payload.clone());
        if let Some(secret) = &d.secret {
            // Signed at each attempt with its own time, so a receiver can
            // refuse a stale (replayed) one.
            let now = now_ms() / 1000;
            req = req.header(TIMESTAMP_HEADER, now).header(
                SIGNATURE_HEADER,
                sign_delivery(secret, now, &d.id, d.payload.as_bytes()),
            );
        }
        match req.send().await {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                // Read a little of the answer, never all of it.
                let mut read = 0usize;
                while read < self.settings.response_cap {
                    match resp.chunk().await {
                        Ok(Some(c)) => read += c.len(),
                        _ => break,
                    }
                }
                (Some(status), None)
            }
            Err(e) if e.is_timeout() => (None, Some("timed out".into())),
            // Without the URL: its path may be a secret.
            Err(e) => (
                None,
                Some(format!("could not connect: {}", e.without_url())),
            ),
        }
    }
}
