//! Triggers: things that create tasks without a person — inbound webhooks
//! (and, next, schedules).

pub mod webhook;
