//! Idle stop: ask the workspace server (api port, Bearer token) when it
//! last saw an HTTP request and how many tasks run; stop the workload
//! once it has been quiet for `idle.stopAfter` with no task running.
//!
//! Stopping sets `spec.running: false`, so the Workspace itself says it
//! is stopped and `kube-coder user start` (or any edit back to true) is
//! the one way to start it again.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde::Deserialize;
use serde_json::json;

use super::Error;
use crate::crd::Workspace;
use crate::names;
use crate::settings::Settings;

/// What `GET /api/activity` answers.
#[derive(Debug, Deserialize)]
pub struct Activity {
    /// Seconds since the last HTTP request other than probes and metrics.
    pub idle_seconds: u64,
    pub running_tasks: u64,
    /// RFC 3339.
    pub last_activity: String,
}

pub async fn fetch(
    http: &reqwest::Client,
    settings: &Settings,
    ws: &Workspace,
    token: &str,
) -> Result<Activity, String> {
    let ns = names::namespace(names::workspace_name(ws));
    let base = settings.activity_url.replace("{namespace}", &ns);
    let url = format!("{}/api/activity", base.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("could not reach {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    // The workspace is the tenant's: read no more of its answer than the
    // small JSON object it should be.
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("{url}: unreadable answer: {e}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "{url}: answer larger than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: unreadable answer: {e}"))
}

/// More than `GET /api/activity` ever says.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Whether the workspace should be stopped now.
pub fn should_stop(activity: &Activity, stop_after_secs: u64) -> bool {
    activity.running_tasks == 0 && activity.idle_seconds >= stop_after_secs
}

pub async fn stop(client: &kube::Client, ws: &Workspace) -> Result<(), Error> {
    let api: Api<Workspace> = Api::all(client.clone());
    api.patch(
        names::workspace_name(ws),
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"running": false}})),
    )
    .await
    .map_err(|e| Error::Status {
        message: super::describe(e),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_task_keeps_the_workspace_up() {
        let busy = Activity {
            idle_seconds: 10_000,
            running_tasks: 1,
            last_activity: String::new(),
        };
        assert!(!should_stop(&busy, 60));
        let quiet = Activity {
            idle_seconds: 61,
            running_tasks: 0,
            last_activity: String::new(),
        };
        assert!(should_stop(&quiet, 60));
        let recent = Activity {
            idle_seconds: 59,
            running_tasks: 0,
            last_activity: String::new(),
        };
        assert!(!should_stop(&recent, 60));
    }
}
