//! Cron schedules, fired by the server itself.
//!
//! Each schedule stores its next due time. The scheduler sleeps until the
//! earliest one (or until woken by a change), fires what is due, records
//! every firing, and moves the next time on — in one transaction. At start
//! it first looks for firings missed while the server was down: each is
//! recorded as `missed`, and the schedule's policy decides whether one task
//! runs now (`run_once`) or none (`skip`). Nothing is silently dropped.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::hooks::HookSpec;
use crate::metrics::{FiringLabels, Metrics};
use crate::store::{Firing, FiringOutcome, MissedPolicy, Schedule, Store};
use crate::tasks::{CreateTask, TaskManager};

/// Most missed occurrences recorded one by one after a long outage.
const MAX_MISSED_ROWS: usize = 100;
const IDLE_CHECK: Duration = Duration::from_secs(60);

/// Parse a cron expression (5 fields, or 6 with seconds first).
/// A schedule's cron expression, with errors in the words of the docs.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    const FORM: &str = "a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, such as `0 3 * * *`";
    let fields = expr.split_whitespace().count();
    if fields != 5 && fields != 6 {
        return Err(format!(
            "`{expr}` has {fields} field{}; {FORM}",
            if fields == 1 { "" } else { "s" }
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| format!("`{expr}` is not a valid cron expression ({e}); {FORM}"))
}

pub fn parse_tz(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| {
        format!("`{name}` is not a time zone (use an IANA name such as Europe/Berlin)")
    })
}

/// The first occurrence strictly after `after_ms`, in ms.
pub fn next_after(cron: &Cron, tz: Tz, after_ms: i64) -> Option<i64> {
    let start = tz.from_utc_datetime(&Utc.timestamp_millis_opt(after_ms).single()?.naive_utc());
    cron.find_next_occurrence(&start, false)
        .ok()
        .map(|t| t.timestamp_millis())
}

pub struct Scheduler {
    store: Store,
    tasks: Arc<TaskManager>,
    metrics: Arc<Metrics>,
    /// Rung when schedules change, so a sooner one is not slept through.
    wake: Arc<Notify>,
}

impl Scheduler {
    pub fn start(
        store: Store,
        tasks: Arc<TaskManager>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        let s = Arc::new(Self {
            store,
            tasks,
            metrics,
            wake,
        });
        tokio::spawn(s.run(shutdown));
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut startup = true;
        while !shutdown.is_cancelled() {
            let now = now_ms();
            let schedules = match self.store.list_schedules().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "could not read schedules");
                    Vec::new()
                }
            };
            for s in schedules.iter().filter(|s| s.next_at <= now) {
                self.process(s, now, startup).await;
            }
            startup = false;
            let soonest = match self.store.list_schedules().await {
                Ok(s) => s.iter().map(|s| s.next_at).min(),
                Err(_) => None,
            };
            let wait = soonest
                .map(|t| Duration::from_millis((t - now_ms()).max(0) as u64))
                .unwrap_or(IDLE_CHECK)
                .min(IDLE_CHECK);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// Fire (or record as missed) every occurrence of `s` due by `now`.
    async fn process(&self, s: &Schedule, now: i64, after_downtime: bool) {
        let (Ok(cron), Ok(tz)) = (parse_cron(&s.cron), parse_tz(&s.timezone)) else {
            tracing::error!(schedule.id = %s.id, "stored schedule no longer parses");
            return;
        };
        let mut due = vec![s.next_at];
        let mut t = s.next_at;
        while let Some(n) = next_after(&cron, tz, t).filter(|n| *n <= now) {
            if due.len() >= MAX_MISSED_ROWS {
                break;
            }
            due.push(n);
            t = n;
        }
        let mut firings = Vec::new();
        // After downtime every due occurrence was missed; while running,
        // only the latest fires (earlier ones were missed by a stall).
        let (missed, fire_at) = if after_downtime {
            let fire =
                (s.missed_policy == MissedPolicy::RunOnce).then(|| *due.last().unwrap_or(&now));
            (due.clone(), fire)
        } else {
            let last = due.pop().unwrap_or(now);
            (due.clone(), Some(last))
        };
        for m in missed {
            firings.push(Firing {
                due_at: m,
                fired_at: now,
                outcome: FiringOutcome::Missed,
                task_id: None,
                error: None,
            });
        }
        if let Some(at) = fire_at {
            firings.push(fire(&self.tasks, s, at).await);
        }
        count(&self.metrics, &firings);
        let next = next_after(&cron, tz, now).unwrap_or(i64::MAX);
        if let Err(e) = self.store.record_firings(&s.id, firings, Some(next)).await {
            tracing::error!(schedule.id = %s.id, error = %e, "could not record schedule firings");
        }
    }
}

/// Start the task of one firing of `s` (due at `due_at`; now for a run on
/// demand) and say how it went.
pub async fn fire(tasks: &Arc<TaskManager>, s: &Schedule, due_at: i64) -> Firing {
    let created = tasks
        .create(CreateTask {
            prompt: s.prompt.clone(),
            assistant: s.assistant.clone(),
            workdir: s.workdir.clone(),
            name: Some(format!("schedule: {}", s.name)),
            env: HashMap::new(),
            hook: s.hook_url.clone().map(|url| HookSpec {
                url,
                secret: s.hook_secret.clone(),
            }),
        })
        .await;
    let (outcome, task_id, error) = match created {
        Ok(t) => (FiringOutcome::Fired, Some(t.id), None),
        Err(e) => (FiringOutcome::Failed, None, Some(e.message)),
    };
    tracing::info!(schedule.id = %s.id, outcome = outcome.as_str(), task.id = ?task_id, "schedule fired");
    Firing {
        due_at,
        fired_at: now_ms(),
        outcome,
        task_id,
        error,
    }
}

/// Count firings in the metrics, by outcome.
pub fn count(metrics: &Metrics, firings: &[Firing]) {
    for f in firings {
        metrics
            .schedule_firings
            .get_or_create(&FiringLabels {
                outcome: f.outcome.as_str().into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_five_and_six_fields_in_a_time_zone() {
        let c = parse_cron("0 9 * * MON-FRI").unwrap();
        let tz = parse_tz("Europe/Berlin").unwrap();
        // 2026-11-27 (a Friday) 07:00 UTC → next is 09:00 Berlin = 08:00 UTC.
        let from = Utc
            .with_ymd_and_hms(2026, 11, 27, 7, 0, 0)
            .unwrap()
            .timestamp_millis();
        let next = next_after(&c, tz, from).unwrap();
        assert_eq!(
            next,
            Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
        // Strictly after: from the due time itself, the next is Monday.
        let after = next_after(&c, tz, next).unwrap();
        assert_eq!(
            after,
            Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
        let every_second = parse_cron("* * * * * *").unwrap();
        assert_eq!(next_after(&every_second, Tz::UTC, 1_000).unwrap(), 2_000);
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every day").is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
    }
}
