//! Where the egress gateway is built, for a Workspace that lists
//! `network.egress.allowDomains` or has `models`: the allow list and the
//! model settings as a ConfigMap (the cluster's default names, then the
//! workspace's; the providers, the budget, the extra CA), the gateway's
//! Deployment (the kube-coder image running `egress-gateway`, hardened like
//! every workspace container, stopped with the workspace) and its Service,
//! and the variables the workspace container gets: the proxy (egress by
//! name), the providers' base URLs and placeholder keys (models). Both
//! files are mounted, not put in the pod template, so a change reaches the
//! running gateway without restarting it or the workspace.
//!
//! With models, the gateway's pod alone mounts the key Secret, and it gets
//! an identity of its own whose one permission is to keep the month's
//! usage in the `model-usage` ConfigMap; the workspace's has no token.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, PodSecurityContext,
    PodSpec, SecretVolumeSource, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::container::{hardened, http_probe, resources};
use super::workload::{locked_down_pod, one_pod_deployment};
use super::{meta, BuildError};
use crate::crd::Workspace;
use crate::names;
use crate::settings::{ModelProvider, Settings};

/// Where the gateway finds its list and its model settings.
const LIST_DIR: &str = "/etc/kube-coder/egress";
const LIST_KEY: &str = "allow";
const MODELS_KEY: &str = "models.json";
/// Where it finds the keys (the Secret's volume).
const KEYS_DIR: &str = "/etc/kube-coder/model-keys";
/// What the workspace's clients send as their key: not a secret; the
/// gateway drops it and sends the real one.
pub const PLACEHOLDER_KEY: &str = "kube-coder-egress-gateway";

/// Whether this workspace has a gateway (egress by name, or models).
pub fn enabled(ws: &Workspace) -> bool {
    by_name(ws) || has_models(ws)
}

/// Whether the workspace's egress goes by name, through the gateway.
pub fn by_name(ws: &Workspace) -> bool {
    ws.spec.network.egress.allow_domains.is_some()
}

/// Whether the workspace calls model providers through the gateway.
pub fn has_models(ws: &Workspace) -> bool {
    ws.spec.models.is_some()
}

/// The cluster's providers this workspace may use.
pub fn providers<'a>(ws: &Workspace, settings: &'a Settings) -> Vec<&'a ModelProvider> {
    let Some(models) = &ws.spec.models else {
        return Vec::new();
    };
    settings
        .model_providers
        .iter()
        .filter(|p| {
            models
                .providers
                .as_ref()
                .is_none_or(|names| names.contains(&p.name))
        })
        .collect()
}

/// The model settings as the gateway reads them (`models.json`). A name
/// the cluster has no provider for is an error that lists the ones it has.
pub fn models_json(ws: &Workspace, settings: &Settings) -> Result<String, BuildError> {
    let models = ws.spec.models.clone().unwrap_or_default();
    for name in models.providers.iter().flatten() {
        if !settings.model_providers.iter().any(|p| &p.name == name) {
            let known: Vec<&str> = settings
                .model_providers
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return Err(BuildError::Invalid(
                names::workspace_name(ws).into(),
                format!(
                    "models.providers names {name:?}, which this cluster does not offer; its providers are: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    let body = serde_json::json!({
        "providers": providers(ws, settings),
        "monthlyTokenBudget": models.monthly_token_budget,
        "caBundle": settings.model_ca_bundle,
    });
    Ok(serde_json::to_string_pretty(&body).unwrap_or_default())
}

/// The list as the gateway reads it: the cluster's names, then the
/// workspace's, then the registries it pushes to through the operator
/// (whose build pods go through this gateway; the workspace holds no
/// credentials for them), each once.
pub fn allow_list(ws: &Workspace, settings: &Settings) -> String {
    let own = ws
        .spec
        .network
        .egress
        .allow_domains
        .as_deref()
        .unwrap_or_default();
    let registries = super::build_client::push_registries(ws);
    let mut seen = std::collections::BTreeSet::new();
    let mut out = String::from("# Written by the kube-coder operator from the Workspace's\n# network.egress.allowDomains, the cluster's defaults and build.registries.\n");
    for name in settings
        .egress_default_domains
        .iter()
        .chain(own)
        .chain(&registries)
    {
        if seen.insert(name.as_str()) {
            out.push_str(name);
            out.push('\n');
        }
    }
    out
}

/// The gateway's files: the allow list, and the model settings.
pub fn config_map(ws: &Workspace, settings: &Settings) -> Result<ConfigMap, BuildError> {
    let mut data = BTreeMap::from([(LIST_KEY.to_string(), allow_list(ws, settings))]);
    if has_models(ws) {
        data.insert(MODELS_KEY.into(), models_json(ws, settings)?);
    }
    Ok(ConfigMap {
        metadata: meta(ws, names::EGRESS_ALLOW_LIST, true, true),
        data: Some(data),
        ..Default::default()
    })
}

/// Where the gateway keeps the month's usage. The operator makes it and
/// never writes its data (the gateway does, under its own field manager),
/// so applying it again leaves the figures be.
pub fn usage_config_map(ws: &Workspace) -> ConfigMap {
    ConfigMap {
        metadata: meta(ws, names::MODEL_USAGE, true, true),
        ..Default::default()
    }
}

pub fn service_account(ws: &Workspace) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(ws, names::EGRESS_GATEWAY, true, true),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// Get and patch the usage ConfigMap by name: all the gateway may do.
pub fn role(ws: &Workspace) -> Role {
    Role {
        metadata: meta(ws, names::EGRESS_GATEWAY, true, true),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec![names::MODEL_USAGE.into()]),
            verbs: vec!["get".into(), "patch".into()],
            ..Default::default()
        }]),
    }
}

pub fn role_binding(ws: &Workspace) -> RoleBinding {
    RoleBinding {
        metadata: meta(ws, names::EGRESS_GATEWAY, true, true),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: names::EGRESS_GATEWAY.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names::EGRESS_GATEWAY.into(),
            namespace: Some(names::namespace(names::workspace_name(ws))),
            ..Default::default()
        }]),
    }
}

/// The model variables of the workspace container: each standard client's
/// base URL pointing at the gateway, with a placeholder key (the clients
/// insist on one), for the providers this workspace may use.
pub fn model_env(ws: &Workspace, settings: &Settings) -> Vec<EnvVar> {
    use super::container::env as var;
    let base = format!(
        "http://{}:{}",
        names::EGRESS_GATEWAY,
        names::EGRESS_MODELS_PORT
    );
    let offered = providers(ws, settings);
    let mut env = vec![var("KUBE_CODER_MODELS_URL", base.clone())];
    for (api, url_var, key_var) in [
        ("anthropic", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
        ("openai", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
        ("gemini", "GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY"),
    ] {
        // The provider named for the API, else the first that speaks it.
        let chosen = offered
            .iter()
            .find(|p| p.name == api)
            .or_else(|| offered.iter().find(|p| p.api == api));
        if let Some(p) = chosen {
            env.push(var(url_var, format!("{base}/{}", p.name)));
            env.push(var(key_var, PLACEHOLDER_KEY));
        }
    }
    env
}

/// The proxy variables of the workspace container (both spellings: curl
/// reads only the lower-case `http_proxy`, many tools only upper case).
pub fn proxy_env() -> Vec<EnvVar> {
    let proxy = format!(
        "http://{}:{}",
        names::EGRESS_GATEWAY,
        names::EGRESS_PROXY_PORT
    );
    use super::container::env as var;
    // The gateway's own name: its model port is called directly.
    let local = format!("localhost,127.0.0.1,::1,{}", names::EGRESS_GATEWAY);
    let local = local.as_str();
    vec![
        var("HTTP_PROXY", &proxy),
        var("HTTPS_PROXY", &proxy),
        var("http_proxy", &proxy),
        var("https_proxy", &proxy),
        var("NO_PROXY", local),
        var("no_proxy", local),
    ]
}

/// The gateway's ports: the proxy and the admin port, and the model port
/// when it has models.
pub fn ports(models: bool) -> Vec<(&'static str, i32)> {
    let mut p = vec![
        ("proxy", names::EGRESS_PROXY_PORT),
        ("admin", names::EGRESS_ADMIN_PORT),
    ];
    if models {
        p.push(("models", names::EGRESS_MODELS_PORT));
    }
    p
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        ..Default::default()
    }
}

pub fn deployment(ws: &Workspace, settings: &Settings) -> Deployment {
    let labels = names::gateway_pod_labels(names::workspace_name(ws));
    let mut args: Vec<String> = ["egress-gateway", "--log-format", "json", "--allow-file"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(format!("{LIST_DIR}/{LIST_KEY}"));
    for cidr in &ws.spec.network.egress.allow_cidrs {
        args.push("--allow-cidr".into());
        args.push(cidr.clone());
    }
    for endpoint in settings.api_server_sockets() {
        args.push("--api-server-endpoint".into());
        args.push(endpoint.to_string());
    }
    let models = has_models(ws);
    if models {
        args.extend([
            "--models-file".into(),
            format!("{LIST_DIR}/{MODELS_KEY}"),
            "--model-keys-dir".into(),
            KEYS_DIR.into(),
            "--usage-configmap".into(),
            names::MODEL_USAGE.into(),
        ]);
    }
    let mut security = hardened();
    security.run_as_user = Some(names::IMAGE_UID);
    security.run_as_group = Some(names::IMAGE_UID);
    let container = Container {
        name: names::EGRESS_GATEWAY.into(),
        image: Some(settings.egress_gateway_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        ports: Some(
            ports(models)
                .into_iter()
                .map(|(name, p)| port(name, p))
                .collect(),
        ),
        liveness_probe: Some(http_probe("/healthz", names::EGRESS_ADMIN_PORT, 20)),
        readiness_probe: Some(http_probe("/healthz", names::EGRESS_ADMIN_PORT, 5)),
        resources: Some(resources(("10m", "16Mi"), ("500m", "128Mi"))),
        security_context: Some(security),
        volume_mounts: Some(
            std::iter::once(VolumeMount {
                name: "allow-list".into(),
                mount_path: LIST_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            })
            .chain(models.then(|| VolumeMount {
                name: "model-keys".into(),
                mount_path: KEYS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }))
            .collect(),
        ),
        ..Default::default()
    };
    let locked = locked_down_pod(settings, names::IMAGE_UID);
    let mut pod = PodSpec {
        containers: vec![container],
        volumes: Some(
            std::iter::once(Volume {
                name: "allow-list".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::EGRESS_ALLOW_LIST.into(),
                    default_mode: Some(0o444),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .chain(models.then(|| Volume {
                name: "model-keys".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(names::MODEL_KEYS_SECRET.into()),
                    // Readable by the gateway's group only; absent until the
                    // cluster has keys (the gateway then says which is missing).
                    default_mode: Some(0o440),
                    optional: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }))
            .collect(),
        ),
        ..locked
    };
    if models {
        // Its own identity, with a token: it keeps the month's usage.
        pod.service_account_name = Some(names::EGRESS_GATEWAY.into());
        pod.automount_service_account_token = Some(true);
        let sc = pod
            .security_context
            .get_or_insert_with(PodSecurityContext::default);
        sc.fs_group = Some(names::IMAGE_UID);
    }
    // Stopped with the workspace: a stopped workspace costs nothing.
    one_pod_deployment(ws, names::EGRESS_GATEWAY, labels, pod, None)
}

/// A gateway the Workspace no longer asks for, as the operator leaves it
/// (it deletes nothing): scaled to zero.
pub fn retired_deployment(ws: &Workspace, settings: &Settings) -> Deployment {
    let mut d = deployment(ws, settings);
    d.spec.replicas = Some(0);
    d
}

/// Model keys the workspace may no longer use, as the operator leaves
/// them: the Secret without a single key.
pub fn emptied_keys(ws: &Workspace) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: meta(ws, names::MODEL_KEYS_SECRET, true, true),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

pub fn service(ws: &Workspace) -> Service {
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    Service {
        metadata: meta(ws, names::EGRESS_GATEWAY, true, true),
        spec: Some(ServiceSpec {
            selector: Some(names::gateway_pod_labels(names::workspace_name(ws))),
            ports: Some(
                ports(has_models(ws))
                    .into_iter()
                    .map(|(name, p)| port(name, p))
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    #[test]
    fn the_list_is_the_cluster_defaults_then_the_workspace_names_once_each() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"},
                   "network": {"egress": {"allowDomains": ["*.github.com", "registry.npmjs.org"]}}}),
        );
        let settings = Settings {
            egress_default_domains: vec!["registry.npmjs.org".into(), "pypi.org".into()],
            ..Default::default()
        };
        let list = allow_list(&ws, &settings);
        let entries: Vec<&str> = list.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(entries, ["registry.npmjs.org", "pypi.org", "*.github.com"]);
        assert!(enabled(&ws));
        assert!(!enabled(&workspace(
            "bob",
            json!({"owner": {"name": "bob"}})
        )));
        // Its build pods push through it: the registries it pushes to, by
        // name (an address is not an entry; builds off, none).
        let builds = json!({"owner": {"name": "carol"},
            "network": {"egress": {"allowDomains": ["pypi.org"]}},
            "build": {"registries": ["ghcr.io/team/", "r.io:5000/app", "ghcr.io/other/x", "192.0.2.2:5000/t/"]}});
        let list = allow_list(&workspace("carol", builds.clone()), &Settings::default());
        let entries: Vec<&str> = list.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(entries, ["pypi.org", "ghcr.io", "r.io:5000"]);
        let mut off = builds;
        off["build"]["mode"] = json!("none");
        let list = allow_list(&workspace("carol", off), &Settings::default());
        assert_eq!(list.lines().filter(|l| !l.starts_with('#')).count(), 1);
    }

    #[test]
    fn the_gateway_is_locked_down_and_stops_with_the_workspace() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"}, "running": false,
                   "network": {"egress": {"allowDomains": [], "allowCIDRs": ["10.20.0.0/16"]}}}),
        );
        let settings = Settings {
            api_server_endpoints: vec!["192.0.2.2:6443".into()],
            ..Default::default()
        };
        let d = deployment(&ws, &settings);
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(0));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_user, Some(names::IMAGE_UID));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
        assert!(c.resources.as_ref().unwrap().limits.is_some());
        let args = c.args.clone().unwrap().join(" ");
        assert!(args.starts_with("egress-gateway "), "{args}");
        assert!(args.contains("--allow-cidr 10.20.0.0/16"), "{args}");
        assert!(
            args.contains("--api-server-endpoint 192.0.2.2:6443"),
            "{args}"
        );
        // The workspace goes through it, and shows its refusals.
        let serve = crate::manifests::workload::serve_args(&ws).join(" ");
        assert!(
            serve.contains("--egress-gateway-url=http://egress-gateway:3129"),
            "{serve}"
        );
        let w = crate::manifests::workload::deployment(&ws, &Settings::default());
        let env = w.spec.template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let https_proxy = env
            .iter()
            .find(|e| e.name == "HTTPS_PROXY")
            .and_then(|e| e.value.clone());
        assert_eq!(https_proxy.as_deref(), Some("http://egress-gateway:3128"));
    }

    #[test]
    fn with_models_the_keys_are_the_gateways_and_the_workspace_gets_base_urls_only() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"},
                   "models": {"providers": ["anthropic", "local"], "monthlyTokenBudget": 1000}}),
        );
        let mut settings = Settings {
            api_server_endpoints: vec!["192.0.2.2:6443".into()],
            model_ca_bundle: Some("PEM".into()),
            ..Default::default()
        };
        settings
            .model_providers
            .push(ModelProvider::parse("local:openai:https://llm.corp/v1").unwrap());
        assert!(enabled(&ws) && has_models(&ws) && !by_name(&ws));

        // The gateway's settings: the providers the workspace may use.
        let cm = config_map(&ws, &settings).unwrap();
        let models: serde_json::Value =
            serde_json::from_str(&cm.data.unwrap()[MODELS_KEY]).unwrap();
        let names: Vec<&str> = models["providers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["anthropic", "local"]);
        assert_eq!(models["monthlyTokenBudget"], 1000);
        assert_eq!(models["caBundle"], "PEM");
        assert_eq!(models["providers"][1]["baseUrl"], "https://llm.corp/v1");

        // The workspace: base URLs and placeholders, no proxy, no key.
        let w = crate::manifests::workload::deployment(&ws, &settings);
        let pod = w.spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let env = crate::manifests::test_support::env_of(&pod.containers[0]);
        assert_eq!(
            env["ANTHROPIC_BASE_URL"],
            "http://egress-gateway:3130/anthropic"
        );
        assert_eq!(env["OPENAI_BASE_URL"], "http://egress-gateway:3130/local");
        assert_eq!(env["ANTHROPIC_API_KEY"], PLACEHOLDER_KEY);
        assert!(!env.contains_key("GOOGLE_GEMINI_BASE_URL"));
        assert!(!env.contains_key("HTTPS_PROXY"));
        assert!(pod.volumes.unwrap_or_default().iter().all(|v| v
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref())
            != Some(names::MODEL_KEYS_SECRET)));

        // The gateway: the keys' volume, its own identity, the model port.
        let g = deployment(&ws, &settings);
        let pod = g.spec.template.spec.unwrap();
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some(names::EGRESS_GATEWAY)
        );
        assert_eq!(pod.automount_service_account_token, Some(true));
        assert_eq!(
            pod.security_context.unwrap().fs_group,
            Some(names::IMAGE_UID)
        );
        let keys = pod
            .volumes
            .unwrap()
            .into_iter()
            .find_map(|v| v.secret)
            .unwrap();
        assert_eq!(keys.secret_name.as_deref(), Some(names::MODEL_KEYS_SECRET));
        assert_eq!(keys.default_mode, Some(0o440));
        let args = pod.containers[0].args.clone().unwrap().join(" ");
        assert!(args.contains("--usage-configmap model-usage"), "{args}");
        let svc_ports: Vec<i32> = service(&ws)
            .spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(svc_ports, [3128, 3129, 3130]);

        // Its one permission: its usage ConfigMap, by name.
        let rules = role(&ws).rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&[names::MODEL_USAGE.to_string()][..])
        );
        assert_eq!(rules[0].verbs, ["get", "patch"]);
        assert_eq!(
            role_binding(&ws).subjects.unwrap()[0].name,
            names::EGRESS_GATEWAY
        );

        // A provider the cluster does not offer is refused by name.
        let bad = workspace(
            "bob",
            json!({"owner": {"name": "bob"}, "models": {"providers": ["cohere"]}}),
        );
        let e = config_map(&bad, &settings).unwrap_err().to_string();
        assert!(
            e.contains(r#"models.providers names "cohere""#)
                && e.contains("anthropic, openai, gemini, local"),
            "{e}"
        );
    }
}
