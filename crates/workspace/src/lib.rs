//! The kube-coder workspace server as a library: everything `kube-coder
//! serve` does, from auth to tasks in tmux. See ARCHITECTURE.md for the map.

pub mod activity;
pub mod auth;
pub mod builds;
pub mod clock;
pub mod config;
pub mod egress;
pub mod error;
pub mod events;
pub mod extract;
pub mod files;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod secret_box;
pub mod secrets;
pub mod server;
pub mod signature;
pub mod ssh;
pub mod store;
pub mod system_stats;
pub mod task_state;
pub mod tasks;
pub mod terminal;
pub mod triggers;
pub mod views;
pub mod web_assets;

pub use config::{AuthMode, Limits, ServeConfig};
pub use server::{ServeError, Server, Started};

#[cfg(test)]
mod layers;
