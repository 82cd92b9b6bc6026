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
//!
//! While the workspace is not Ready (stopped, starting, in trouble) both
//! hosts lead instead to the operator's waker, through the `waker`
//! ExternalName Service: a caller with the workspace's credentials starts
//! it there and sees it come up, instead of a bare 503.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, BuildError};
use crate::crd::{AuthType, Phase, Workspace};
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

/// The Service that leads to the operator's waker (one port, `http`).
pub fn waker_service(ws: &Workspace, settings: &Settings) -> Service {
    let (host, port) = settings.waker_target();
    Service {
        metadata: meta(ws, names::WAKER, true, true),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(host),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether the hosts lead to the workspace itself: it is to run and was
/// last seen Ready. Otherwise they lead to the waker.
pub fn routes_to_workload(ws: &Workspace) -> bool {
    ws.spec.running && ws.status.as_ref().and_then(|s| s.phase.as_ref()) == Some(&Phase::Ready)
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
    let to_workload = routes_to_workload(ws);
    let backend = |port: &str| IngressServiceBackend {
        name: if to_workload {
            names::WORKLOAD
        } else {
            names::WAKER
        }
        .into(),
        port: Some(ServiceBackendPort {
            name: Some(if to_workload { port } else { "http" }.into()),
            ..Default::default()
        }),
    };
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
                                service: Some(backend(port)),
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

    /// A Workspace whose pod was last seen Ready.
    fn ready(mut ws: Workspace) -> Workspace {
        ws.status = Some(crate::crd::WorkspaceStatus {
            phase: Some(Phase::Ready),
            ..Default::default()
        });
        ws
    }

    fn backends(ws: &Workspace) -> Vec<(String, String)> {
        ingresses(ws, &Settings::default())
            .unwrap()
            .into_iter()
            .map(|i| {
                let rule = &i.spec.unwrap().rules.unwrap()[0];
                let b = rule.http.as_ref().unwrap().paths[0]
                    .backend
                    .service
                    .clone()
                    .unwrap();
                (b.name, b.port.unwrap().name.unwrap())
            })
            .collect()
    }

    #[test]
    fn hosts_lead_to_the_waker_until_the_workspace_is_ready_and_running() {
        let spec =
            json!({"owner": {"name": "alice"}, "ingress": {"host": "alice.dev.example.com"}});
        let waker = vec![("waker".to_string(), "http".to_string()); 2];
        let new = workspace("alice", spec.clone());
        assert_eq!(backends(&new), waker, "a new workspace, not Ready yet");
        let up = ready(workspace("alice", spec.clone()));
        assert_eq!(
            backends(&up),
            vec![
                ("workspace".to_string(), "dashboard".to_string()),
                ("workspace".to_string(), "api".to_string())
            ]
        );
        let mut stopped = up.clone();
        stopped.spec.running = false;
        assert_eq!(backends(&stopped), waker, "stopped, though last seen Ready");

        let settings = Settings {
            operator_namespace: "ops".into(),
            ..Default::default()
        };
        let svc = waker_service(&up, &settings).spec.unwrap();
        assert_eq!(svc.type_.as_deref(), Some("ExternalName"));
        assert_eq!(
            svc.external_name.as_deref(),
            Some("kube-coder-waker.ops.svc")
        );
        assert_eq!(svc.ports.unwrap()[0].port, 80);
        let settings = Settings {
            waker_address: "10.1.2.3:8090".into(),
            ..Default::default()
        };
        assert_eq!(settings.waker_target(), ("10.1.2.3".to_string(), 8090));
    }

    #[test]
    fn no_route_reaches_the_dashboard_listener_past_its_gate() {
        let oauth2 = ready(workspace(
            "alice",
            json!({"owner": {"name": "alice"}, "ingress": {"host": "alice.dev.example.com"},
                   "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh"}}}),
        ));
        let routes = ingresses(&oauth2, &Settings::default()).unwrap();
        assert_eq!(routes.len(), 2);
        let targets: Vec<i32> = routes.iter().map(|i| backend_target(&oauth2, i)).collect();
        assert_eq!(targets, vec![names::OAUTH2_PORT, names::API_PORT]);

        let basic = ready(workspace(
            "bob",
            json!({"owner": {"name": "bob"}, "ingress": {"host": "bob.dev.example.com"}}),
        ));
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
