//! Where a workspace with `spec.github` is wired to the operator's token
//! broker: a projected ServiceAccount token of the broker's audience (the
//! kubelet rotates it; the API server does not accept it), the broker's
//! URL, and git's credential helper for the GitHub host (the egress rule to
//! the broker is `network_policy.rs`'s). The App's key is never here: only
//! the broker holds it.

use k8s_openapi::api::core::v1::{EnvVar, Volume, VolumeMount};

use crate::crd::Workspace;
use crate::names;
use crate::settings::Settings;

const VOLUME: &str = "broker-token";
const DIR: &str = "/var/run/secrets/kube-coder/broker";

pub fn enabled(ws: &Workspace) -> bool {
    ws.spec.github.is_some()
}

/// The broker's URL as workspaces call it.
pub fn broker_url(settings: &Settings) -> String {
    settings
        .broker_url
        .replace("{namespace}", &settings.operator_namespace)
}

/// The broker's URL and token file, and git's helper (none without
/// `spec.github`).
pub fn env(ws: &Workspace, settings: &Settings) -> Vec<EnvVar> {
    if !enabled(ws) {
        return Vec::new();
    }
    use super::container::env as var;
    let host = &settings.github.git_host;
    // gh's host when it is not github.com (an Enterprise Server).
    let gh_host = (host != "github.com").then(|| var("GH_HOST", host.clone()));
    [
        var("KUBE_CODER_BROKER_URL", broker_url(settings)),
        var("KUBE_CODER_BROKER_TOKEN_FILE", format!("{DIR}/token")),
        // git asks the helper for the GitHub host only; set through the
        // environment, so the home's own git config stays the user's.
        var("GIT_CONFIG_COUNT", "1"),
        var(
            "GIT_CONFIG_KEY_0",
            format!("credential.https://{host}.helper"),
        ),
        var(
            "GIT_CONFIG_VALUE_0",
            "/usr/local/bin/kube-coder git-credential",
        ),
    ]
    .into_iter()
    .chain(gh_host)
    .collect()
}

pub fn volume() -> Volume {
    super::workload::projected_token(VOLUME, names::BROKER_AUDIENCE)
}

pub fn mount() -> VolumeMount {
    super::workload::mount(VOLUME, DIR, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    #[test]
    fn a_github_workspace_gets_a_broker_token_of_its_own_audience_and_the_helper() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"}, "github": {"repositories": ["acme/app"]}}),
        );
        assert!(enabled(&ws));
        let settings = Settings::default();
        let pod = crate::manifests::workload::deployment(&ws, &settings)
            .spec
            .template
            .spec
            .unwrap();
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == VOLUME)
            .unwrap();
        let token = volume.projected.unwrap().sources.unwrap()[0]
            .service_account_token
            .clone()
            .unwrap();
        assert_eq!(token.audience.as_deref(), Some("kube-coder-broker"));
        // Still no API server token anywhere.
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = &pod.containers[0];
        let env = crate::manifests::test_support::env_of(c);
        assert_eq!(
            env["KUBE_CODER_BROKER_URL"],
            "http://kube-coder-broker.kube-coder-system.svc:8443"
        );
        assert_eq!(
            env["GIT_CONFIG_KEY_0"],
            "credential.https://github.com.helper"
        );
        assert!(c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.name == VOLUME));

        // Without github: none of it.
        let plain = workspace("bob", json!({"owner": {"name": "bob"}}));
        let pod = crate::manifests::workload::deployment(&plain, &settings)
            .spec
            .template
            .spec
            .unwrap();
        assert!(!pod.volumes.unwrap().iter().any(|v| v.name == VOLUME));
    }
}
