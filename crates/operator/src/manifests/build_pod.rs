//! Where a build pod is built: the one pod spec a brokered image build
//! runs as (`build.mode: brokered`). The operator creates it in its build
//! namespace, never the workspace, and no field of it comes from the
//! workspace but the build's limits, which the operator has checked.
//!
//! BuildKit runs as root of the pod's **own user namespace**
//! (`hostUsers: false`): its root is an unprivileged range of host IDs.
//! It needs `CAP_SYS_ADMIN` there (overlay mounts, and runc making each
//! `RUN` step's mount and PID namespaces) plus the capabilities a `RUN`
//! step gets (Docker's default set), all of them over namespaces the pod
//! owns; never `privileged`. The seccomp profile stays RuntimeDefault,
//! which refuses `keyctl` and `pivot_root`, so the image's runc wrapper
//! runs runc with `--no-new-keyring --no-pivot` (a `RUN` step chroots
//! into its root inside its own mount namespace). Each `RUN` step has its
//! own PID namespace (BuildKit's process sandbox), so it cannot see the
//! build client holding the push credentials. `CAP_SYS_ADMIN` is outside
//! Pod Security `baseline`, so the build namespace enforces `privileged`
//! and admits only these pods (docs/operator.md, "Builds").
//!
//! Steps share the pod's network: the build namespace's NetworkPolicies
//! (`network_policy::build_pods*`) are what a `RUN` step can reach, chosen
//! by the pod's `Egress`: public addresses, or, for a workspace whose
//! egress goes by name, only its egress gateway (the proxy variables point
//! there, for BuildKit's pulls and pushes and, as build arguments, for the
//! steps).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, Pod, PodSecurityContext, PodSpec,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::container::{env, resources};
use super::network_policy::BUILD_EGRESS_LABEL;
use super::quantity::canonical;
use crate::names;
use crate::settings::Settings;

/// Where a build's steps and BuildKit's own pulls and pushes may go,
/// beyond DNS and the plain-HTTP registries (reached directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Egress {
    /// Addresses outside the denied ranges (the workspace's egress goes by
    /// address).
    Public,
    /// Its workspace's egress gateway alone, at this proxy URL (the
    /// workspace's egress goes by name).
    Gateway { proxy: String },
}

impl Egress {
    fn label(&self) -> &'static str {
        match self {
            Egress::Public => "public",
            Egress::Gateway { .. } => "gateway",
        }
    }

    /// The proxy variables (both spellings), for BuildKit's environment and
    /// for each build's steps; none for `Public`.
    pub fn proxy_vars(&self, settings: &Settings) -> Vec<(String, String)> {
        let Egress::Gateway { proxy } = self else {
            return Vec::new();
        };
        let mut direct = vec!["localhost".to_string(), "127.0.0.1".into()];
        direct.extend(settings.insecure_registries.iter().cloned());
        let direct = direct.join(",");
        let mut vars = Vec::new();
        for (name, value) in [
            ("HTTP_PROXY", proxy.as_str()),
            ("HTTPS_PROXY", proxy),
            ("NO_PROXY", &direct),
        ] {
            vars.push((name.to_string(), value.to_string()));
            vars.push((name.to_lowercase(), value.to_string()));
        }
        vars
    }
}

/// Where the build client finds the push credentials (`config.json`).
pub const DOCKER_CONFIG_DIR: &str = "/run/kube-coder/docker";
/// Where the context is unpacked before the build.
pub const CONTEXT_DIR: &str = "/work/context";
/// BuildKit's socket, for the client run in the same container.
pub const BUILDKIT_SOCKET: &str = "unix:///run/buildkit/buildkitd.sock";
/// The label every build pod carries (its value: the build's id).
pub const BUILD_LABEL: &str = "kube-coder.dev/build";
/// The ConfigMap of the build namespace holding `buildkitd.toml`
/// (registries reached over plain HTTP), where buildkitd reads it.
pub const CONFIG_MAP: &str = "buildkitd";

/// The capabilities of the build container: Docker's default set (what
/// each `RUN` step gets) and `SYS_ADMIN`, all within the pod's own user
/// namespace.
pub const CAPABILITIES: [&str; 15] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_CHROOT",
];

/// What one build may use.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildLimits {
    pub cpu: String,
    pub memory: String,
    /// BuildKit's state, the context and the layers it makes.
    pub disk: String,
    /// The whole build, after which the pod is stopped.
    pub seconds: i64,
}

impl Default for BuildLimits {
    fn default() -> Self {
        BuildLimits {
            cpu: "2".into(),
            memory: "4Gi".into(),
            disk: "10Gi".into(),
            seconds: 30 * 60,
        }
    }
}

/// The build pod `name` for workspace `workspace`, in the build namespace
/// `namespace`; `push_secret` is a `kubernetes.io/dockerconfigjson`
/// Secret there holding the push credentials.
pub fn build_pod(
    settings: &Settings,
    namespace: &str,
    name: &str,
    workspace: &str,
    push_secret: Option<&str>,
    egress: &Egress,
    limits: &BuildLimits,
) -> Pod {
    let labels = BTreeMap::from([
        (BUILD_LABEL.to_string(), name.to_string()),
        (names::WORKSPACE_LABEL.to_string(), workspace.to_string()),
        (BUILD_EGRESS_LABEL.to_string(), egress.label().to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "kube-coder".to_string(),
        ),
    ]);
    let empty = |name: &str, size: Option<&str>| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: size.map(|s| Quantity(canonical(s))),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    };
    let mut volumes = vec![
        empty("state", Some(&limits.disk)),
        empty("run", Some("16Mi")),
        empty("tmp", Some("1Gi")),
    ];
    let mut mounts = vec![
        mount("state", "/var/lib/buildkit", false),
        mount("state", "/work", false),
        // runc keeps its state in /run/runc; the socket is in /run/buildkit.
        mount("run", "/run", false),
        mount("tmp", "/tmp", false),
    ];
    mounts[1].sub_path = Some("work".into());
    volumes.push(Volume {
        name: "config".into(),
        config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
            name: CONFIG_MAP.into(),
            optional: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    });
    mounts.push(mount("config", "/etc/buildkit", true));
    if let Some(secret) = push_secret {
        volumes.push(Volume {
            name: "push".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.into()),
                items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                    key: ".dockerconfigjson".into(),
                    path: "config.json".into(),
                    ..Default::default()
                }]),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount("push", DOCKER_CONFIG_DIR, true));
    }
    let env = std::iter::once(env("DOCKER_CONFIG", DOCKER_CONFIG_DIR))
        .chain(
            egress
                .proxy_vars(settings)
                .into_iter()
                .map(|(k, v)| env(&k, v)),
        )
        .collect();
    let container = builder_container(settings, (&limits.cpu, &limits.memory), env, mounts, &[]);
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            host_users: Some(false),
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(limits.seconds),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(5),
            node_selector: (!settings.node_selector.is_empty())
                .then(|| settings.node_selector.clone()),
            tolerations: (!settings.tolerations.is_empty()).then(|| settings.tolerations.clone()),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers: vec![container],
            volumes: Some(volumes),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// BuildKit's configuration (`buildkitd.toml`): the registries it reaches
/// over plain HTTP.
pub fn buildkitd_toml(settings: &Settings) -> String {
    settings
        .insecure_registries
        .iter()
        .map(|r| format!("[registry.\"{r}\"]\n  http = true\n"))
        .collect()
}

/// BuildKit's container, as a build pod and the in-pod builder of
/// `build.mode: buildkit` both run it: root of the pod's own user
/// namespace with `CAP_SYS_ADMIN` and Docker's default capabilities there,
/// RuntimeDefault seccomp, a read-only root, never privileged; `limit` its
/// CPU and memory.
pub fn builder_container(
    settings: &Settings,
    limit: (&str, &str),
    env: Vec<k8s_openapi::api::core::v1::EnvVar>,
    mounts: Vec<VolumeMount>,
    extra_args: &[&str],
) -> Container {
    Container {
        name: "buildkit".into(),
        image: Some(settings.builder_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(
            [
                format!("--addr={BUILDKIT_SOCKET}"),
                "--root=/var/lib/buildkit".into(),
                "--oci-worker-binary=/usr/local/bin/buildkit-runc".into(),
                // Steps use the pod's network namespace, and so its policy.
                "--oci-worker-net=host".into(),
            ]
            .into_iter()
            .chain(extra_args.iter().map(|a| a.to_string()))
            .collect(),
        ),
        env: Some(env),
        resources: Some(resources(("100m", "256Mi"), limit)),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            // Kubernetes requires it with SYS_ADMIN; setuid programs in a
            // step gain nothing beyond the pod's user namespace.
            allow_privilege_escalation: Some(true),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_pod_is_never_privileged_and_its_root_is_the_pods_own() {
        let pod = build_pod(
            &Settings::default(),
            "kube-coder-builds",
            "b-1",
            "alice",
            Some("push-b-1"),
            &Egress::Public,
            &BuildLimits::default(),
        );
        assert_eq!(pod.metadata.labels.unwrap()[BUILD_EGRESS_LABEL], "public");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.host_users, Some(false));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.active_deadline_seconds, Some(1800));
        assert!(spec.host_network.is_none() && spec.host_pid.is_none());
        let c = &spec.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.privileged, Some(false));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert!(sc.proc_mount.is_none(), "the masked /proc stays");
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
        assert!(!caps
            .add
            .as_ref()
            .unwrap()
            .iter()
            .any(|c| c == "SYS_PTRACE" || c == "NET_ADMIN" || c == "SYS_MODULE"));
        // Nothing from the host; the push credentials read-only, its own.
        let volumes = spec.volumes.unwrap();
        assert!(volumes.iter().all(|v| v.host_path.is_none()));
        let push = volumes.iter().find(|v| v.name == "push").unwrap();
        assert_eq!(
            push.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("push-b-1")
        );
        let state = volumes.iter().find(|v| v.name == "state").unwrap();
        assert_eq!(
            state.empty_dir.as_ref().unwrap().size_limit,
            Some(Quantity("10Gi".into()))
        );
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"],
            Quantity("4Gi".into())
        );
        assert!(!c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name.ends_with("PROXY")));
    }

    #[test]
    fn a_build_for_a_workspace_whose_egress_goes_by_name_goes_through_its_gateway() {
        let settings = Settings {
            insecure_registries: vec!["192.0.2.2:5000".into()],
            ..Settings::default()
        };
        let proxy = "http://10.96.0.9:3128".to_string();
        let pod = build_pod(
            &settings,
            "kube-coder-builds",
            "b-2",
            "alice",
            None,
            &Egress::Gateway {
                proxy: proxy.clone(),
            },
            &BuildLimits::default(),
        );
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels[BUILD_EGRESS_LABEL], "gateway");
        assert_eq!(labels[names::WORKSPACE_LABEL], "alice");
        let env = crate::manifests::test_support::env_of(&pod.spec.unwrap().containers[0]);
        assert_eq!(env["HTTPS_PROXY"], proxy);
        assert_eq!(env["http_proxy"], proxy);
        // The plain-HTTP registry is reached directly, as the policy lets it.
        assert!(env["NO_PROXY"].split(',').any(|h| h == "192.0.2.2:5000"));
    }
}
