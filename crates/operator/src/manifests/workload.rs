//! Where the workspace Deployment is built: one replica (zero when
//! stopped), Recreate (the home volume is ReadWriteOnce), non-root,
//! no privilege escalation, no capabilities, RuntimeDefault seccomp, a
//! read-only root filesystem with writable home and /tmp, no service
//! account token, probes on the api port.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, KeyToPath, LocalObjectReference,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ProjectedVolumeSource, SeccompProfile, SecretVolumeSource, ServiceAccountTokenProjection,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::container::{hardened, http_probe, resources, startup_probe};
use super::{meta, oauth2_proxy};
use crate::crd::{AuthType, Workspace};
use crate::names;
use crate::settings::Settings;

const CREDENTIALS_DIR: &str = "/etc/kube-coder/credentials";

pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// The arguments of `kube-coder serve` in the pod.
pub fn serve_args(ws: &Workspace) -> Vec<String> {
    let auth = &ws.spec.auth;
    // With oauth2-proxy as a sidecar the dashboard listens on loopback
    // only: nothing outside the pod reaches it without the proxy, and the
    // server's trusted-proxy range stays its loopback default.
    let dashboard_host = if auth.kind == AuthType::Oauth2 {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    };
    let mut args: Vec<String> = vec![
        "serve".into(),
        format!("--listen={dashboard_host}:{}", names::DASHBOARD_PORT),
        format!("--api-listen=0.0.0.0:{}", names::API_PORT),
        format!("--home={}", names::HOME),
        format!("--data-dir={}/.kube-coder", names::HOME),
        format!("--api-token-file={CREDENTIALS_DIR}/api-token"),
        "--log-format=json".into(),
        format!("--name={}", ws.metadata.name.as_deref().unwrap_or_default()),
        // Webhook senders are shown this address (the dashboard's webhooks).
        format!("--api-url={}", names::urls(ws).1),
    ];
    match auth.kind {
        AuthType::Basic => {
            args.push("--auth=basic".into());
            args.push(format!("--htpasswd-file={CREDENTIALS_DIR}/htpasswd"));
        }
        AuthType::Oauth2 => {
            args.push("--auth=oauth2".into());
            let users = oauth2_proxy::allowed_users(ws);
            if !users.is_empty() {
                args.push(format!("--allowed-users={}", users.join(",")));
            }
        }
        AuthType::None => args.push("--auth=none".into()),
    }
    if auth.read_only {
        args.push("--read-only".into());
    }
    if super::ssh::enabled(ws) {
        args.extend(super::ssh::args());
    }
    if super::egress_gateway::enabled(ws) {
        // The dashboard lists what the gateway refused, and its usage.
        args.push(format!(
            "--egress-gateway-url=http://{}:{}",
            names::EGRESS_GATEWAY,
            names::EGRESS_ADMIN_PORT
        ));
        if super::egress_gateway::by_name(ws) {
            args.push("--egress-by-name".into());
        }
    }
    args
}

pub fn image(ws: &Workspace, settings: &Settings) -> String {
    let i = &ws.spec.image;
    let repo = i
        .repository
        .as_deref()
        .unwrap_or(&settings.image_repository);
    let tag = i.tag.as_deref().unwrap_or(&settings.image_tag);
    format!("{repo}:{tag}")
}

fn workspace_container(ws: &Workspace, settings: &Settings) -> Container {
    let r = &ws.spec.resources;
    let mut ports = vec![ContainerPort {
        name: Some("api".into()),
        container_port: names::API_PORT,
        ..Default::default()
    }];
    if ws.spec.auth.kind != AuthType::Oauth2 {
        ports.insert(
            0,
            ContainerPort {
                name: Some("dashboard".into()),
                container_port: names::DASHBOARD_PORT,
                ..Default::default()
            },
        );
    }
    if super::ssh::enabled(ws) {
        ports.push(super::ssh::port());
    }
    Container {
        name: "workspace".into(),
        image: Some(image(ws, settings)),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(serve_args(ws)),
        env: Some(
            [
                EnvVar {
                    name: "HOME".into(),
                    value: Some(names::HOME.into()),
                    ..Default::default()
                },
                EnvVar {
                    name: "KUBE_CODER_ALLOW_INTERNAL_HOOKS".into(),
                    value: Some(ws.spec.network.allow_internal_hooks.to_string()),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(
                super::egress_gateway::by_name(ws)
                    .then(super::egress_gateway::proxy_env)
                    .unwrap_or_default(),
            )
            .chain(super::egress_gateway::model_env(ws, settings))
            .chain(super::github::env(ws, settings))
            .chain(super::build_client::env(ws, settings))
            .chain(super::in_pod_builder::workspace_env(ws, settings))
            .collect(),
        ),
        ports: Some(ports),
        startup_probe: Some(startup_probe("/readyz", names::API_PORT)),
        liveness_probe: Some(http_probe("/livez", names::API_PORT, 20)),
        readiness_probe: Some(http_probe("/readyz", names::API_PORT, 5)),
        resources: Some(resources(
            (&r.requests.cpu, &r.requests.memory),
            (&r.limits.cpu, &r.limits.memory),
        )),
        security_context: Some(hardened()),
        volume_mounts: Some(
            [
                mount("home", names::HOME, false),
                mount("tmp", "/tmp", false),
                mount("credentials", CREDENTIALS_DIR, true),
            ]
            .into_iter()
            .chain(super::ssh::enabled(ws).then(super::ssh::mount))
            .chain(super::github::enabled(ws).then(super::github::mount))
            .chain(super::build_client::enabled(ws).then(super::build_client::mount))
            .chain(super::in_pod_builder::enabled(ws).then(super::in_pod_builder::workspace_mount))
            .collect(),
        ),
        ..Default::default()
    }
}

pub fn deployment(ws: &Workspace, settings: &Settings) -> Deployment {
    let name = names::workspace_name(ws);
    let pod_labels = names::pod_labels(name);
    let mut containers = vec![workspace_container(ws, settings)];
    if ws.spec.auth.kind == AuthType::Oauth2 {
        containers.push(oauth2_proxy::sidecar(ws, settings));
    }
    let builder = super::in_pod_builder::enabled(ws);
    if builder {
        containers.push(super::in_pod_builder::sidecar(ws, settings));
    }
    // Only the keys the server needs: the plain login password in the same
    // Secret is for the admin, never mounted.
    let mut keys = vec!["api-token"];
    if ws.spec.auth.kind == AuthType::Basic {
        keys.push("htpasswd");
    }
    let credentials = Volume {
        name: "credentials".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names::CREDENTIALS_SECRET.into()),
            default_mode: Some(0o440),
            items: Some(
                keys.into_iter()
                    .map(|k| KeyToPath {
                        key: k.into(),
                        path: k.into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut pod = locked_down_pod(settings, names::UID);
    if let Some(sc) = pod.security_context.as_mut() {
        sc.fs_group = Some(names::UID);
    }
    let pod = PodSpec {
        image_pull_secrets: ws.spec.image.pull_secret.as_ref().map(|_| {
            vec![LocalObjectReference {
                name: names::PULL_SECRET.into(),
            }]
        }),
        containers,
        volumes: Some(
            vec![
                Volume {
                    name: "home".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: names::HOME_PVC.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "tmp".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
                credentials,
            ]
            .into_iter()
            .chain(oauth2_proxy::provider_ca_volume(ws))
            .chain(super::ssh::enabled(ws).then(super::ssh::volume))
            .chain(super::github::enabled(ws).then(super::github::volume))
            .chain(super::build_client::enabled(ws).then(super::build_client::volume))
            .chain(
                builder
                    .then(super::in_pod_builder::volumes)
                    .unwrap_or_default(),
            )
            .collect(),
        ),
        // The builder's root is the pod's own: so is every container's.
        host_users: builder.then_some(false),
        ..pod
    };
    one_pod_deployment(
        ws,
        names::WORKLOAD,
        pod_labels,
        pod,
        // The home volume is ReadWriteOnce: the old pod goes first.
        Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            ..Default::default()
        }),
    )
}

/// A volume with the pod's ServiceAccount token for `audience` (a token
/// the API server itself does not take), as `token`: the kubelet renews it
/// at 80% of its life, and it dies with the pod.
pub fn projected_token(volume: &str, audience: &str) -> Volume {
    Volume {
        name: volume.into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(audience.into()),
                    // The shortest the API server issues.
                    expiration_seconds: Some(600),
                    path: "token".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What every pod in a workspace namespace shares: the nodes set aside
/// for workspaces, the token-less ServiceAccount, no service links, and a
/// non-root user `uid` with the RuntimeDefault seccomp profile.
pub fn locked_down_pod(settings: &Settings, uid: i64) -> PodSpec {
    PodSpec {
        node_selector: (!settings.node_selector.is_empty()).then(|| settings.node_selector.clone()),
        tolerations: (!settings.tolerations.is_empty()).then(|| settings.tolerations.clone()),
        service_account_name: Some(names::SERVICE_ACCOUNT.into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(uid),
            run_as_group: Some(uid),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A Deployment of this workspace running one `pod` labelled `labels`
/// while the workspace runs, none while it is stopped.
pub fn one_pod_deployment(
    ws: &Workspace,
    name: &str,
    labels: BTreeMap<String, String>,
    pod: PodSpec,
    strategy: Option<DeploymentStrategy>,
) -> Deployment {
    Deployment {
        metadata: meta(ws, name, true, true),
        spec: DeploymentSpec {
            replicas: Some(if ws.spec.running { 1 } else { 0 }),
            strategy,
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    #[test]
    fn every_container_is_locked_down() {
        for auth in [
            json!({}),
            json!({"type": "oauth2", "oauth2": {"clientSecretRef": "gh"}}),
        ] {
            let ws = workspace("alice", json!({"owner": {"name": "alice"}, "auth": auth}));
            let d = deployment(&ws, &Settings::default());
            let pod = d.spec.template.spec.unwrap();
            assert_eq!(pod.automount_service_account_token, Some(false));
            for c in &pod.containers {
                let sc = c.security_context.clone().unwrap();
                assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
                assert_eq!(sc.run_as_non_root, Some(true));
                assert_eq!(sc.read_only_root_filesystem, Some(true));
                assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
                assert!(c.resources.as_ref().unwrap().limits.is_some(), "{}", c.name);
            }
        }
    }

    #[test]
    fn pods_go_to_the_nodes_the_settings_set_aside() {
        let ws = workspace("alice", json!({"owner": {"name": "alice"}}));
        let pod = deployment(&ws, &Settings::default())
            .spec
            .template
            .spec
            .unwrap();
        assert_eq!((pod.node_selector, pod.tolerations), (None, None));
        let settings = Settings {
            node_selector: [("kube-coder.dev/node".to_string(), "real".to_string())].into(),
            tolerations: vec![k8s_openapi::api::core::v1::Toleration {
                key: Some("kube-coder.dev/node".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
            ..Settings::default()
        };
        let pod = deployment(&ws, &settings).spec.template.spec.unwrap();
        assert_eq!(pod.node_selector.unwrap()["kube-coder.dev/node"], "real");
        assert_eq!(
            pod.tolerations.unwrap()[0].effect.as_deref(),
            Some("NoSchedule")
        );
    }

    #[test]
    fn stopped_means_zero_replicas() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"}, "running": false}),
        );
        assert_eq!(deployment(&ws, &Settings::default()).spec.replicas, Some(0));
    }

    #[test]
    fn with_oauth2_the_dashboard_listens_on_loopback_only() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"}, "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh"}}}),
        );
        let args = serve_args(&ws);
        assert!(args.contains(&"--listen=127.0.0.1:6080".to_string()));
        assert!(args.contains(&"--auth=oauth2".to_string()));
        let basic = workspace("bob", json!({"owner": {"name": "bob"}}));
        assert!(serve_args(&basic).contains(&"--listen=0.0.0.0:6080".to_string()));
    }
}
