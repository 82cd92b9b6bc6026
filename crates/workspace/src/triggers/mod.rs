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
    if let Some(a) = assistant {
        if tasks.assistants().get(a).is_none() {
            return Err(ApiError::bad_request(
                "unknown_assistant",
                format!("assistant `{a}` is not configured"),
            ));
        }
    }
    if let Some(h) = hook {
        tasks.check_hook(h).await?;
    }
    Ok(())
}
