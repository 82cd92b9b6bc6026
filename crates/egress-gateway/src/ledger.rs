//! What the gateway decided: every decision is logged and counted
//! (`egress_requests_total{decision}`), and the most recent refusals are
//! kept for the workspace's dashboard (`GET /refusals` on the admin port),
//! so a user sees why `npm install` failed.

use std::collections::VecDeque;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use workspace::clock;

use crate::decision::Refusal;

/// How many refusals the dashboard can show.
pub const RECENT: usize = 100;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

/// One refusal as the dashboard shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RecentRefusal {
    pub at: String,
    pub host: String,
    pub port: u16,
    pub decision: &'static str,
    pub message: String,
}

pub struct Ledger {
    requests: Family<DecisionLabel, Counter>,
    recent: Mutex<VecDeque<RecentRefusal>>,
}

impl Ledger {
    pub fn new(registry: &mut Registry) -> Ledger {
        let requests = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "egress_requests",
            "Connections asked of the egress gateway, by decision",
            requests.clone(),
        );
        Ledger {
            requests,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        }
    }

    pub fn allowed(&self, host: &str, port: u16, kind: &'static str) {
        tracing::info!(host, port, kind, decision = "allowed", "egress allowed");
        self.count("allowed");
    }

    /// The connection was allowed but the upstream could not be reached.
    pub fn failed(&self, host: &str, port: u16, error: &str) {
        tracing::warn!(
            host,
            port,
            error,
            decision = "upstream_failed",
            "egress upstream unreachable"
        );
        self.count("upstream_failed");
    }

    pub fn refused(&self, host: &str, port: u16, refusal: &Refusal) {
        let decision = refusal.label();
        let message = refusal.to_string();
        tracing::info!(host, port, decision, reason = %message, "egress refused");
        self.count(decision);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(RecentRefusal {
            at: clock::rfc3339(clock::now_ms()),
            host: host.to_string(),
            port,
            decision,
            message,
        });
    }

    fn count(&self, decision: &'static str) {
        self.requests
            .get_or_create(&DecisionLabel { decision })
            .inc();
    }

    /// The refusals kept, newest first.
    pub fn recent(&self) -> Vec<RecentRefusal> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().cloned().collect()
    }
}
