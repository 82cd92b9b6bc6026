//! Triggers: things that create tasks without a person — inbound webhooks
//! and cron schedules.

pub mod schedule;
pub mod webhook;

use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::nullable;
use crate::hooks::HookSpec;
use crate::tasks::TaskManager;

/// What a PATCH of a schedule or a webhook may change in both: a field
/// left out stays, `null` clears it. A hook given without `secret` keeps
/// the current secret; `"secret": ""` removes it.
#[derive(Debug, Default, Deserialize)]
pub struct TargetPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub workdir: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub hook: Option<Option<HookSpec>>,
    pub paused: Option<bool>,
}

/// The fields of a stored trigger that [`TargetPatch`] edits.
pub struct Target<'a> {
    pub name: &'a mut String,
    pub assistant: &'a mut Option<String>,
    pub workdir: &'a mut Option<String>,
    pub hook_url: &'a mut Option<String>,
    pub hook_secret: &'a mut Option<String>,
    pub paused: &'a mut bool,
}

impl TargetPatch {
    /// Apply to `t`, then check what changed as creation would (the hook
    /// only when it changed: the guard resolves its host).
    pub async fn apply(self, tasks: &TaskManager, t: Target<'_>) -> ApiResult<()> {
        if let Some(n) = self.name {
            *t.name = n;
        }
        // Pausing always works; the assistant is checked when it changes
        // or the trigger is resumed.
        let check_assistant_now = self.assistant.is_some() || self.paused == Some(false);
        if let Some(a) = self.assistant {
            *t.assistant = a;
        }
        if let Some(w) = self.workdir {
            *t.workdir = w.filter(|w| !w.trim().is_empty());
        }
        if let Some(p) = self.paused {
            *t.paused = p;
        }
        let new_hook = match self.hook {
            None => None,
            Some(None) => {
                *t.hook_url = None;
                *t.hook_secret = None;
                None
            }
            Some(Some(h)) => {
                match h.secret.as_deref() {
                    None => {}
                    Some("") => *t.hook_secret = None,
                    Some(s) => *t.hook_secret = Some(s.to_string()),
                }
                *t.hook_url = Some(h.url.clone());
                Some(h)
            }
        };
        check_name(t.name)?;
        if check_assistant_now {
            check_assistant(tasks, t.assistant.as_deref())?;
        }
        if let Some(h) = &new_hook {
            tasks.check_hook(h).await?;
        }
        Ok(())
    }
}

/// What webhooks and schedules check before storing a definition: a name a
/// person can read, an assistant that exists, and a hook the guard allows.
pub async fn validate_target(
    tasks: &TaskManager,
    name: &str,
    assistant: Option<&str>,
    hook: Option<&HookSpec>,
) -> ApiResult<()> {
    check_name(name)?;
    check_assistant(tasks, assistant)?;
    if let Some(h) = hook {
        tasks.check_hook(h).await?;
    }
    Ok(())
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1 to 200 characters without control characters",
        ));
    }
    Ok(())
}

/// The named assistant, or the default the task would get now, must exist
/// and be installed; each firing checks again (a program can be removed
/// later).
fn check_assistant(tasks: &TaskManager, assistant: Option<&str>) -> ApiResult<()> {
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
    Ok(())
}
