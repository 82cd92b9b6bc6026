//! Triggers: things that create tasks without a person — inbound webhooks
//! and cron schedules.

pub mod schedule;
pub mod webhook;

use crate::error::{ApiError, ApiResult};
use crate::hooks::HookSpec;
use crate::tasks::TaskManager;

/// What webhooks and schedules check before storing a definition: a name a
/// person can read, an assistant that exists, and a hook the guard allows.
pub async fn validate_target(
    tasks: &TaskManager,
    name: &str,
    assistant: Option<&str>,
    hook: Option<&HookSpec>,
) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1 to 200 characters without control characters",
        ));
    }
    // The named assistant, or the default the task would get now; each
    // firing checks again (a program can be removed later).
    let name = assistant.map_or_else(|| tasks.assistants().default_name(), str::to_string);
    let Some(a) = tasks.assistants().get(&name) else {
        return Err(ApiError::bad_request(
            "unknown_assistant",
            format!("assistant `{name}` is not configured"),
        ));
    };
    if !a.is_installed() {
        return Err(ApiError::bad_request(
            "assistant_unavailable",
            a.unavailable_message(),
        ));
    }
    if let Some(h) = hook {
        tasks.check_hook(h).await?;
    }
    Ok(())
}
