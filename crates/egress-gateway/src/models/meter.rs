//! This workspace's model usage for the calendar month (UTC): counted from
//! every answer, held against the optional monthly budget before a request
//! goes out, exported as metrics, and kept in a store so that neither a
//! gateway restart nor a stopped workspace forgets it (in the cluster, a
//! ConfigMap only the gateway may write; locally, a file).
//!
//! Writes are coalesced: a change is saved a moment later, never per
//! request, and an idle gateway writes nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use workspace::clock;

use super::usage::Tokens;

/// How long a change waits to be saved with the ones after it.
const SAVE_AFTER: Duration = Duration::from_secs(2);
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub requests: u64,
}

/// One month's usage, as stored and as `GET /usage` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthUsage {
    /// `YYYY-MM`, UTC.
    pub month: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub requests: u64,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderUsage>,
}

impl MonthUsage {
    pub fn used(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// The month `now_ms` falls in, `YYYY-MM`.
pub fn month_of(ms: i64) -> String {
    clock::rfc3339(ms).chars().take(7).collect()
}

/// The first day of the month after `month` (`YYYY-MM`), `YYYY-MM-01`.
pub fn next_month(month: &str) -> String {
    let (y, m) = month.split_once('-').unwrap_or(("1970", "01"));
    let (y, m): (u32, u32) = (y.parse().unwrap_or(1970), m.parse().unwrap_or(1));
    if m >= 12 {
        format!("{:04}-01-01", y + 1)
    } else {
        format!("{y:04}-{:02}-01", m + 1)
    }
}

/// The monthly budget is used up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this workspace's monthly model token budget is used up: {used} of {budget} tokens in {month} (spec.models.monthlyTokenBudget); it renews on {renews} UTC")]
pub struct BudgetExceeded {
    pub budget: u64,
    pub used: u64,
    pub month: String,
    pub renews: String,
}

/// Where the month's usage is kept between runs.
pub trait UsageStore: Send + Sync {
    fn load(&self) -> BoxFuture<'_, Result<Option<MonthUsage>, String>>;
    fn save<'a>(&'a self, usage: &'a MonthUsage) -> BoxFuture<'a, Result<(), String>>;
}

/// A JSON file, replaced whole (written beside it, synced, renamed), so a
/// crash leaves the old figures or the new, never half of either.
pub struct FileStore(pub std::path::PathBuf);

impl UsageStore for FileStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<MonthUsage>, String>> {
        Box::pin(async move {
            match tokio::fs::read(&self.0).await {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| format!("{} is not a usage file: {e}", self.0.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read {}: {e}", self.0.display())),
            }
        })
    }

    fn save<'a>(&'a self, usage: &'a MonthUsage) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let path = self.0.clone();
            let bytes = serde_json::to_vec_pretty(usage).map_err(|e| e.to_string())?;
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let tmp = path.with_extension("tmp");
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot write {}: {e}", self.0.display()))
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    provider: String,
    outcome: &'static str,
}

pub struct Meter {
    month: Mutex<MonthUsage>,
    changed: Notify,
    /// A change not yet in the store.
    unsaved: AtomicBool,
    tokens: Family<TokenLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
}

impl Meter {
    pub fn new(registry: &mut Registry) -> Meter {
        let tokens = Family::<TokenLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "model_tokens",
            "Model tokens used through the gateway, by provider and direction",
            tokens.clone(),
        );
        registry.register(
            "model_requests",
            "Requests to model providers through the gateway, by outcome",
            requests.clone(),
        );
        Meter {
            month: Mutex::new(MonthUsage {
                month: month_of(clock::now_ms()),
                ..Default::default()
            }),
            changed: Notify::new(),
            unsaved: AtomicBool::new(false),
            tokens,
            requests,
        }
    }

    /// The month in force, started afresh when the calendar moved on.
    fn current(&self) -> std::sync::MutexGuard<'_, MonthUsage> {
        let mut m = self.month.lock().unwrap_or_else(|p| p.into_inner());
        let now = month_of(clock::now_ms());
        if m.month != now {
            *m = MonthUsage {
                month: now,
                ..Default::default()
            };
        }
        m
    }

    /// Takes what the store kept, if it is this month's.
    pub fn restore(&self, stored: MonthUsage) {
        let mut m = self.current();
        if stored.month == m.month {
            *m = stored;
        }
    }

    pub fn snapshot(&self) -> MonthUsage {
        self.current().clone()
    }

    /// Whether one more request fits `budget`.
    pub fn admit(&self, budget: Option<u64>) -> Result<(), BudgetExceeded> {
        let Some(budget) = budget else { return Ok(()) };
        let m = self.current();
        if m.used() >= budget {
            return Err(BudgetExceeded {
                budget,
                used: m.used(),
                month: m.month.clone(),
                renews: next_month(&m.month),
            });
        }
        Ok(())
    }

    /// An answer's outcome (`2xx`, `4xx`, `budget_exceeded`, …).
    pub fn outcome(&self, provider: &str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                provider: provider.to_string(),
                outcome,
            })
            .inc();
    }

    /// The tokens an answer used.
    pub fn record(&self, provider: &str, used: Tokens) {
        {
            let mut m = self.current();
            m.input_tokens = m.input_tokens.saturating_add(used.input);
            m.output_tokens = m.output_tokens.saturating_add(used.output);
            m.requests += 1;
            let p = m.providers.entry(provider.to_string()).or_default();
            p.input_tokens = p.input_tokens.saturating_add(used.input);
            p.output_tokens = p.output_tokens.saturating_add(used.output);
            p.requests += 1;
        }
        for (direction, n) in [("input", used.input), ("output", used.output)] {
            self.tokens
                .get_or_create(&TokenLabels {
                    provider: provider.to_string(),
                    direction,
                })
                .inc_by(n);
        }
        self.unsaved.store(true, Ordering::Release);
        self.changed.notify_one();
    }
}

/// Takes the month from `store`, before the first request is served.
pub async fn load(meter: &Meter, store: &dyn UsageStore) {
    match store.load().await {
        Ok(Some(stored)) => meter.restore(stored),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot load the month's model usage; counting from zero")
        }
    }
}

/// Saves the month to `store` after each change until `shutdown` (and
/// once more then, if anything is unsaved).
pub async fn keep(meter: Arc<Meter>, store: Arc<dyn UsageStore>, shutdown: CancellationToken) {
    let save = || async {
        if !meter.unsaved.swap(false, Ordering::AcqRel) {
            return true;
        }
        match store.save(&meter.snapshot()).await {
            Ok(()) => true,
            Err(e) => {
                meter.unsaved.store(true, Ordering::Release);
                tracing::warn!(error = %e, "cannot save the month's model usage; trying again");
                false
            }
        }
    };
    loop {
        tokio::select! {
            _ = meter.changed.notified() => {}
            _ = shutdown.cancelled() => break,
        }
        // Let the changes of the next moment join this one.
        tokio::select! {
            _ = tokio::time::sleep(SAVE_AFTER) => {}
            _ = shutdown.cancelled() => break,
        }
        while !save().await {
            tokio::select! {
                _ = tokio::time::sleep(RETRY_AFTER) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
    save().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_holds_until_the_month_renews() {
        let meter = Meter::new(&mut Registry::default());
        assert!(meter.admit(None).is_ok());
        assert!(meter.admit(Some(100)).is_ok());
        meter.record(
            "anthropic",
            Tokens {
                input: 60,
                output: 40,
            },
        );
        let e = meter.admit(Some(100)).unwrap_err();
        assert_eq!(e.used, 100);
        assert!(e.to_string().contains("100 of 100 tokens"), "{e}");
        assert!(e.to_string().contains("spec.models.monthlyTokenBudget"));
        assert!(meter.admit(Some(101)).is_ok());
        // Last month's figures are not this month's.
        meter.restore(MonthUsage {
            month: "1999-12".into(),
            input_tokens: 10_000,
            ..Default::default()
        });
        assert_eq!(meter.snapshot().used(), 100);
        let s = meter.snapshot();
        assert_eq!(s.providers["anthropic"].requests, 1);
        assert_eq!(next_month("2026-12"), "2027-01-01");
        assert_eq!(next_month("2026-02"), "2026-03-01");
    }

    #[tokio::test]
    async fn usage_survives_a_restart_through_its_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn UsageStore> = Arc::new(FileStore(dir.path().join("usage.json")));
        let meter = Arc::new(Meter::new(&mut Registry::default()));
        let stop = CancellationToken::new();
        let kept = tokio::spawn(keep(meter.clone(), store.clone(), stop.clone()));
        tokio::task::yield_now().await;
        meter.record(
            "openai",
            Tokens {
                input: 5,
                output: 7,
            },
        );
        // Stopping saves what is unsaved at once.
        stop.cancel();
        kept.await.unwrap();
        let again = Meter::new(&mut Registry::default());
        load(&again, store.as_ref()).await;
        assert_eq!(again.snapshot().used(), 12);
        assert_eq!(again.snapshot().providers["openai"].output_tokens, 7);
    }
}
