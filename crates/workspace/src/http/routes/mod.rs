//! Request handlers, one file per resource.

pub mod builds;
pub mod dashboard;
pub mod egress;
pub mod events;
pub mod files;
pub mod files_watch;
pub mod health;
pub mod hooks;
pub mod metrics;
pub mod schedules;
pub mod session;
pub mod stream;
pub mod system;
pub mod tasks;
pub mod terminal;
pub mod webhooks;
