//! Where the egress gateway is built, for a Workspace that lists
//! `network.egress.allowDomains`: the allow list as a ConfigMap (the
//! cluster's default names, then the workspace's), the gateway's
//! Deployment (the kube-coder image running `egress-gateway`, hardened like
//! every workspace container, no token, stopped with the workspace) and its
//! Service, and the proxy variables the workspace container gets. The list
//! is mounted, not put in the pod template, so a change reaches the running
//! gateway without restarting it or the workspace.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, PodSpec, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::container::{hardened, http_probe, resources};
use super::meta;
use super::workload::{locked_down_pod, one_pod_deployment};
use crate::crd::Workspace;
use crate::names;
use crate::settings::Settings;

/// Where the gateway finds its list.
const LIST_DIR: &str = "/etc/kube-coder/egress";
const LIST_KEY: &str = "allow";

/// Whether this workspace goes out through a gateway.
pub fn enabled(ws: &Workspace) -> bool {
    ws.spec.network.egress.allow_domains.is_some()
}

/// The list as the gateway reads it: the cluster's names, then the
/// workspace's, each once.
pub fn allow_list(ws: &Workspace, settings: &Settings) -> String {
    let own = ws
        .spec
        .network
        .egress
        .allow_domains
        .as_deref()
        .unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = String::from("# Written by the kube-coder operator from the Workspace's\n# network.egress.allowDomains and the cluster's defaults.\n");
    for name in settings.egress_default_domains.iter().chain(own) {
        if seen.insert(name.as_str()) {
            out.push_str(name);
            out.push('\n');
        }
    }
    out
}

pub fn config_map(ws: &Workspace, settings: &Settings) -> ConfigMap {
    ConfigMap {
        metadata: meta(ws, names::EGRESS_ALLOW_LIST, true, true),
        data: Some(BTreeMap::from([(
            LIST_KEY.into(),
            allow_list(ws, settings),
        )])),
        ..Default::default()
    }
}

/// The proxy variables of the workspace container (both spellings: curl
/// reads only the lower-case `http_proxy`, many tools only upper case).
pub fn proxy_env() -> Vec<EnvVar> {
    let proxy = format!(
        "http://{}:{}",
        names::EGRESS_GATEWAY,
        names::EGRESS_PROXY_PORT
    );
    let var = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let local = "localhost,127.0.0.1,::1";
    vec![
        var("HTTP_PROXY", &proxy),
        var("HTTPS_PROXY", &proxy),
        var("http_proxy", &proxy),
        var("https_proxy", &proxy),
        var("NO_PROXY", local),
        var("no_proxy", local),
    ]
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
    let mut security = hardened();
    security.run_as_user = Some(names::IMAGE_UID);
    security.run_as_group = Some(names::IMAGE_UID);
    let container = Container {
        name: names::EGRESS_GATEWAY.into(),
        image: Some(settings.egress_gateway_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        ports: Some(vec![
            port("proxy", names::EGRESS_PROXY_PORT),
            port("admin", names::EGRESS_ADMIN_PORT),
        ]),
        liveness_probe: Some(http_probe("/healthz", names::EGRESS_ADMIN_PORT, 20)),
        readiness_probe: Some(http_probe("/healthz", names::EGRESS_ADMIN_PORT, 5)),
        resources: Some(resources(("10m", "16Mi"), ("500m", "128Mi"))),
        security_context: Some(security),
        volume_mounts: Some(vec![VolumeMount {
            name: "allow-list".into(),
            mount_path: LIST_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: "allow-list".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::EGRESS_ALLOW_LIST.into(),
                default_mode: Some(0o444),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..locked_down_pod(settings, names::IMAGE_UID)
    };
    // Stopped with the workspace: a stopped workspace costs nothing.
    one_pod_deployment(ws, names::EGRESS_GATEWAY, labels, pod, None)
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
            ports: Some(vec![
                port("proxy", names::EGRESS_PROXY_PORT),
                port("admin", names::EGRESS_ADMIN_PORT),
            ]),
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
    }

    #[test]
    fn the_gateway_is_locked_down_and_stops_with_the_workspace() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"}, "running": false,
                   "network": {"egress": {"allowDomains": [], "allowCIDRs": ["10.20.0.0/16"]}}}),
        );
        let d = deployment(&ws, &Settings::default());
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
}
