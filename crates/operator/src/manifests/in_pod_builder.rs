//! Where the in-pod builder of `build.mode: buildkit` is built (accepted
//! only with `build.acknowledgeBuildkitRisk: true`): BuildKit as a second
//! container of the workspace pod, in the same container spec as a build
//! pod's (`build_pod::builder_container`: root of the pod's own user
//! namespace, `CAP_SYS_ADMIN` there, RuntimeDefault seccomp, never
//! privileged). The whole workspace pod then runs in a user namespace of
//! its own (`hostUsers: false`), and the workspace's user reaches the
//! daemon's socket (group 1000) through a volume they share:
//! `kube-coder build` (and any `buildctl`) in the workspace builds there,
//! pushing with the credentials the user keeps in `~/.docker`.
//!
//! What it costs, and why it needs the acknowledgement: the workspace's
//! own code drives a builder that holds `CAP_SYS_ADMIN` in the pod's user
//! namespace, so the kernel's user-namespace and mount code is reachable
//! from the workspace, and its namespace must admit such a pod (Pod
//! Security `privileged`, `namespace.rs`). The steps share the workspace's
//! network and so its NetworkPolicy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::build_pod::{self, BUILDKIT_SOCKET, CONFIG_MAP};
use super::container::env;
use super::meta;
use super::workload::mount;
use crate::crd::{BuildMode, Workspace};
use crate::settings::Settings;

/// The volume holding the daemon's socket, shared with the workspace.
const RUN: &str = "buildkit-run";
/// Where the workspace sees the socket's directory.
const SOCKET_DIR: &str = "/run/buildkit";
/// BuildKit's state: the layers it pulls and makes.
const STATE_LIMIT: &str = "10Gi";

pub fn enabled(ws: &Workspace) -> bool {
    ws.spec.build.mode == BuildMode::Buildkit && ws.spec.build.acknowledge_buildkit_risk
}

/// The builder container: the workspace's own CPU and memory limits (the
/// namespace's LimitRange allows no more per container).
pub fn sidecar(ws: &Workspace, settings: &Settings) -> Container {
    let r = &ws.spec.resources.limits;
    let mounts = vec![
        mount("buildkit-state", "/var/lib/buildkit", false),
        // runc keeps its state in /run/runc; the socket is in /run/buildkit.
        mount(RUN, "/run", false),
        mount("buildkit-tmp", "/tmp", false),
        mount("buildkit-config", "/etc/buildkit", true),
    ];
    build_pod::builder_container(
        settings,
        (&r.cpu, &r.memory),
        Vec::new(),
        mounts,
        // The workspace's user (group 1000) may use the socket.
        &["--group=1000"],
    )
}

pub fn volumes() -> Vec<Volume> {
    let empty = |name: &str, size: Option<&str>| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: size.map(|s| Quantity(s.into())),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        empty("buildkit-state", Some(STATE_LIMIT)),
        empty(RUN, Some("16Mi")),
        empty("buildkit-tmp", Some("1Gi")),
        Volume {
            name: "buildkit-config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: CONFIG_MAP.into(),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
}

/// The socket's directory, in the workspace container.
pub fn workspace_mount() -> VolumeMount {
    VolumeMount {
        sub_path: Some("buildkit".into()),
        ..mount(RUN, SOCKET_DIR, true)
    }
}

/// What tells `kube-coder build` (and `buildctl`) where the builder is,
/// and which registries it reaches over plain HTTP.
pub fn workspace_env(ws: &Workspace, settings: &Settings) -> Vec<EnvVar> {
    if !enabled(ws) {
        return Vec::new();
    }
    vec![
        env("BUILDKIT_HOST", BUILDKIT_SOCKET),
        env(
            "KUBE_CODER_BUILD_INSECURE_REGISTRIES",
            settings.insecure_registries.join(","),
        ),
    ]
}

/// BuildKit's configuration in the workspace's namespace.
pub fn config_map(ws: &Workspace, settings: &Settings) -> ConfigMap {
    ConfigMap {
        metadata: meta(ws, CONFIG_MAP, true, true),
        data: Some(BTreeMap::from([(
            "buildkitd.toml".to_string(),
            build_pod::buildkitd_toml(settings),
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::{env_of, workspace};
    use serde_json::json;

    #[test]
    fn an_acknowledged_buildkit_mode_puts_an_unprivileged_builder_in_a_user_namespaced_pod() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"},
                   "build": {"mode": "buildkit", "acknowledgeBuildkitRisk": true}}),
        );
        let settings = Settings {
            insecure_registries: vec!["192.0.2.2:5000".into()],
            ..Settings::default()
        };
        let pod = crate::manifests::workload::deployment(&ws, &settings)
            .spec
            .template
            .spec
            .unwrap();
        assert_eq!(pod.host_users, Some(false));
        let builder = pod
            .containers
            .iter()
            .find(|c| c.name == "buildkit")
            .unwrap();
        let sc = builder.security_context.as_ref().unwrap();
        assert_eq!(sc.privileged, Some(false));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert!(builder
            .args
            .as_ref()
            .unwrap()
            .contains(&"--group=1000".to_string()));
        let limits = builder.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(
            limits["memory"],
            Quantity(ws.spec.resources.limits.memory.clone())
        );
        // The workspace finds the socket and the plain-HTTP registries.
        let workspace = &pod.containers[0];
        let env = env_of(workspace);
        assert_eq!(env["BUILDKIT_HOST"], BUILDKIT_SOCKET);
        assert_eq!(
            env["KUBE_CODER_BUILD_INSECURE_REGISTRIES"],
            "192.0.2.2:5000"
        );
        assert!(workspace
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == SOCKET_DIR && m.read_only == Some(true)));
        assert!(config_map(&ws, &settings).data.unwrap()["buildkitd.toml"]
            .contains("[registry.\"192.0.2.2:5000\"]"));
        // Its namespace admits the builder (and says so); the quota makes
        // room for it.
        let labels = crate::manifests::namespace::namespace(&ws)
            .metadata
            .labels
            .unwrap();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");
        assert_eq!(labels["pod-security.kubernetes.io/warn"], "baseline");
        let quota = crate::manifests::limits::resource_quota(&ws).unwrap();
        let hard = quota.spec.unwrap().hard.unwrap();
        let limit = ws.spec.resources.limits.memory.trim_end_matches("Gi");
        assert_eq!(
            hard["limits.memory"].0,
            format!("{}Gi", limit.parse::<u32>().unwrap() * 3)
        );
        // Brokered (the default): none of it, and the host's users.
        let plain = workspace_for_mode("brokered");
        let pod = crate::manifests::workload::deployment(&plain, &settings)
            .spec
            .template
            .spec
            .unwrap();
        assert_eq!(pod.host_users, None);
        assert_eq!(pod.containers.len(), 1);
        let labels = crate::manifests::namespace::namespace(&plain)
            .metadata
            .labels
            .unwrap();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert!(!env_of(&pod.containers[0]).contains_key("BUILDKIT_HOST"));
    }

    fn workspace_for_mode(mode: &str) -> Workspace {
        workspace(
            "bob",
            json!({"owner": {"name": "bob"}, "build": {"mode": mode}}),
        )
    }
}
