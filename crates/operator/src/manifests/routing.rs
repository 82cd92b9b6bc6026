//! Where the Service and the Ingresses are built.
//!
//! The Service's `dashboard` port leads to the gate of the auth mode: the
//! server's own basic auth, or the oauth2-proxy sidecar (the server's
//! dashboard listener is then on loopback and has no port here at all).
//! The `api` port leads to the api listener, which takes only the Bearer
//! token. Each gets its own host, so the dashboard and the API are
//! separate origins. The Ingresses take the cluster's one ingress class
//! (settings), whose controller's namespace is the one the workspace's
//! NetworkPolicy lets in.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, BuildError};
use crate::crd::{AuthType, Workspace};
use crate::names;
use crate::settings::Settings;

pub fn service(ws: &Workspace) -> Service {
    let dashboard_target = if ws.spec.auth.kind == AuthType::Oauth2 {
        names::OAUTH2_PORT
    } else {
        names::DASHBOARD_PORT
    };
    let port = |name: &str, port: i32, target: i32| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    Service {
        metadata: meta(ws, names::WORKLOAD, true, true),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::pod_labels(names::workspace_name(ws))),
            ports: Some(vec![
                port("dashboard", names::DASHBOARD_PORT, dashboard_target),
                port("api", names::API_PORT, names::API_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The dashboard and api Ingresses, when the Workspace asks for a host.
/// A Workspace naming a class other than the cluster's is refused: that
/// controller's traffic would be dropped by the workspace's own policy.
pub fn ingresses(ws: &Workspace, settings: &Settings) -> Result<Vec<Ingress>, BuildError> {
    let Some(spec) = &ws.spec.ingress else {
        return Ok(vec![]);
    };
    let class = &settings.ingress_class;
    if let Some(named) = spec.class_name.as_ref().filter(|c| *c != class) {
        return Err(BuildError::Invalid(
            names::workspace_name(ws).to_string(),
            format!(
                "ingress.className {named:?} is not this cluster's ingress class {class:?} \
                 (the controller in namespace {:?}, the only one workspaces accept traffic \
                 from; the chart's network.ingressClassName): leave className out or set it to {class:?}",
                settings.ingress_namespace
            ),
        ));
    }
    let one = |name: &str, host: String, port: &str| {
        let mut m = meta(ws, name, true, true);
        if let Some(issuer) = spec.tls.as_ref().and_then(|t| t.issuer.clone()) {
            m.annotations = Some(BTreeMap::from([(
                "cert-manager.io/cluster-issuer".to_string(),
                issuer,
            )]));
        }
        Ingress {
            metadata: m,
            spec: Some(K8sIngressSpec {
                ingress_class_name: Some(class.clone()),
                tls: spec.tls.as_ref().map(|t| {
                    vec![IngressTLS {
                        hosts: Some(vec![host.clone()]),
                        secret_name: Some(format!("{}-{name}", t.secret_name)),
                    }]
                }),
                rules: Some(vec![IngressRule {
                    host: Some(host.clone()),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath {
                            path: Some("/".into()),
                            path_type: "Prefix".into(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: names::WORKLOAD.into(),
                                    port: Some(ServiceBackendPort {
                                        name: Some(port.into()),
                                        ..Default::default()
                                    }),
                                }),
                                ..Default::default()
                            },
                        }],
                    }),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    Ok(vec![
        one("dashboard", spec.host.clone(), "dashboard"),
        one("api", names::api_host(spec), "api"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    fn backend_target(ws: &Workspace, ingress: &Ingress) -> i32 {
        let port_name = ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0]
            .http
            .as_ref()
            .unwrap()
            .paths[0]
            .backend
            .service
            .as_ref()
            .unwrap()
            .port
            .as_ref()
            .unwrap()
            .name
            .clone()
            .unwrap();
        let svc = service(ws);
        let port = svc
            .spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .find(|p| p.name.as_deref() == Some(&port_name))
            .unwrap();
        match port.target_port.unwrap() {
            IntOrString::Int(p) => p,
            IntOrString::String(s) => panic!("named target {s}"),
        }
    }

    #[test]
    fn no_route_reaches_the_dashboard_listener_past_its_gate() {
        let oauth2 = workspace(
            "alice",
            json!({"owner": {"name": "alice"}, "ingress": {"host": "alice.dev.example.com"},
                   "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh"}}}),
        );
        let routes = ingresses(&oauth2, &Settings::default()).unwrap();
        assert_eq!(routes.len(), 2);
        let targets: Vec<i32> = routes.iter().map(|i| backend_target(&oauth2, i)).collect();
        assert_eq!(targets, vec![names::OAUTH2_PORT, names::API_PORT]);

        let basic = workspace(
            "bob",
            json!({"owner": {"name": "bob"}, "ingress": {"host": "bob.dev.example.com"}}),
        );
        let targets: Vec<i32> = ingresses(&basic, &Settings::default())
            .unwrap()
            .iter()
            .map(|i| backend_target(&basic, i))
            .collect();
        // basic: the server checks the password itself on the dashboard port.
        assert_eq!(targets, vec![names::DASHBOARD_PORT, names::API_PORT]);
    }

    #[test]
    fn no_ingress_without_a_host() {
        let ws = workspace("alice", json!({"owner": {"name": "alice"}}));
        assert!(ingresses(&ws, &Settings::default()).unwrap().is_empty());
    }

    #[test]
    fn ingresses_take_the_class_of_the_controller_the_policy_lets_in() {
        let settings = Settings {
            ingress_class: "traefik".into(),
            ingress_namespace: "traefik".into(),
            ..Default::default()
        };
        let class = |ws: &Workspace| -> Vec<Option<String>> {
            ingresses(ws, &settings)
                .unwrap()
                .into_iter()
                .map(|i| i.spec.unwrap().ingress_class_name)
                .collect()
        };
        let unnamed = workspace(
            "alice",
            json!({"owner": {"name": "alice"}, "ingress": {"host": "alice.dev.example.com"}}),
        );
        assert_eq!(class(&unnamed), vec![Some("traefik".to_string()); 2]);
        let same = workspace(
            "bob",
            json!({"owner": {"name": "bob"},
                   "ingress": {"host": "bob.dev.example.com", "className": "traefik"}}),
        );
        assert_eq!(class(&same), vec![Some("traefik".to_string()); 2]);

        let other = workspace(
            "carol",
            json!({"owner": {"name": "carol"},
                   "ingress": {"host": "carol.dev.example.com", "className": "nginx"}}),
        );
        let err = ingresses(&other, &settings).unwrap_err().to_string();
        assert!(
            err.contains("\"nginx\"") && err.contains("\"traefik\""),
            "{err}"
        );
        assert!(err.contains("network.ingressClassName"), "{err}");
    }
}
