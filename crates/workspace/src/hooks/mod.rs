//! Completion hooks: where the server talks to the outside world on a
//! user's behalf. `ssrf` decides where a hook may go, `payload` what it
//! says, `deliver` drains the durable outbox the store writes with each
//! final task state.

pub mod deliver;
pub mod payload;
pub mod ssrf;

use serde::Deserialize;

/// A hook as given at task creation (or per assistant, or server-wide).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    pub url: String,
    /// Signs each delivery (`X-Kube-Coder-Signature-256`); never returned.
    #[serde(default)]
    pub secret: Option<String>,
}
