//! Where a workspace that builds through the operator (`build.mode:
//! brokered` with `build.registries`) is wired to it: a projected
//! ServiceAccount token of the builds' audience (`kube-coder-build`; the
//! kubelet rotates it, the API server does not accept it) and the URL
//! `kube-coder build` posts to. The push credentials are never here: only
//! the build pod gets them. The egress rule to the operator's port is
//! `network_policy.rs`'s.

use k8s_openapi::api::core::v1::{EnvVar, Volume, VolumeMount};

use crate::crd::Workspace;
use crate::names;
use crate::settings::Settings;

const VOLUME: &str = "build-token";
const DIR: &str = "/var/run/secrets/kube-coder/build";

/// Whether the workspace may ask the operator for builds.
pub fn enabled(ws: &Workspace) -> bool {
    ws.spec.build.mode.brokered() && !ws.spec.build.registries.is_empty()
}

/// The registry hosts (`name[:port]`) the workspace's builds push to, as
/// an egress allow list names them; registries given by address are left
/// out (an allow list holds names; the operator reaches plain-HTTP ones by
/// address).
pub fn push_registries(ws: &Workspace) -> Vec<String> {
    if !enabled(ws) {
        return Vec::new();
    }
    let mut hosts: Vec<String> = ws
        .spec
        .build
        .registries
        .iter()
        .filter_map(|r| r.split('/').next())
        .filter(|host| {
            let name = host.rsplit_once(':').map_or(*host, |(n, _)| n);
            name.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[')
        })
        .map(str::to_string)
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

/// Where `kube-coder build` posts, and the token it shows.
pub fn env(ws: &Workspace, settings: &Settings) -> Vec<EnvVar> {
    if !enabled(ws) {
        return Vec::new();
    }
    use super::container::env as var;
    vec![
        var(
            "KUBE_CODER_BUILD_URL",
            format!("{}/builds", super::github::broker_url(settings)),
        ),
        var("KUBE_CODER_BUILD_TOKEN_FILE", format!("{DIR}/token")),
    ]
}

pub fn volume() -> Volume {
    super::workload::projected_token(VOLUME, names::BUILD_AUDIENCE)
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
    fn a_workspace_that_may_push_gets_a_build_token_of_its_own_audience() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"}, "build": {"registries": ["r.io/team/"]}}),
        );
        let pod = crate::manifests::workload::deployment(&ws, &Settings::default())
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
        assert_eq!(token.audience.as_deref(), Some("kube-coder-build"));
        let env = pod.containers[0].env.clone().unwrap();
        let url = env
            .iter()
            .find(|e| e.name == "KUBE_CODER_BUILD_URL")
            .unwrap();
        assert!(url.value.as_deref().unwrap().ends_with("/builds"));
        // No registries, or builds off: nothing of it.
        for spec in [
            json!({"owner": {"name": "bob"}}),
            json!({"owner": {"name": "bob"}, "build": {"mode": "none", "registries": ["r.io/team/"]}}),
        ] {
            let ws = workspace("bob", spec);
            assert!(!enabled(&ws));
            let pod = crate::manifests::workload::deployment(&ws, &Settings::default())
                .spec
                .template
                .spec
                .unwrap();
            assert!(!pod
                .volumes
                .unwrap_or_default()
                .iter()
                .any(|v| v.name == VOLUME));
        }
    }
}
