//! Triggers: things that create tasks without a person — inbound webhooks
//! and cron schedules.

pub mod schedule;
pub mod webhook;
