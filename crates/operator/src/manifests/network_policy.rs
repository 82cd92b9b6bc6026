//! Where the NetworkPolicies are built.
//!
//! Everything in a workspace namespace is denied by default, both ways.
//! The workspace pod then may receive traffic only from the ingress
//! controller's namespace (dashboard and api ports) and the operator's
//! namespace (api port, for idle checks), and may send traffic only to
//! cluster DNS and to addresses outside the denied ranges. The default
//! denied ranges are every private, loopback, link-local (cloud metadata),
//! CGNAT, multicast and reserved range, so the policy fails closed on any
//! cloud, not only one provider's CIDRs.
//!
//! With `network.egress.allowDomains` (egress by name) the workspace's
//! egress policy, under the same name so switching modes replaces it,
//! allows DNS and its egress gateway only; two more policies let the
//! gateway take the workspace's traffic alone and go where the rules above
//! would have let the workspace go. No range, the allowed ones included,
//! opens the API server's endpoints (its host's other ports stay as the
//! ranges say). With `models` the workspace may also
//! reach the gateway's model port (by address or by name), and the gateway
//! the API server's real endpoints (it keeps its usage in a ConfigMap).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{egress_gateway, meta, BuildError};
use crate::crd::{AuthType, Workspace};
use crate::names;
use crate::settings::Settings;

/// Denied by default (IPv4).
pub const DENY_V4: [&str; 14] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// Denied by default (IPv6): what the IPv4 list denies, in IPv6's terms,
/// so a dual-stack cluster reaches nothing more over IPv6 than over IPv4:
/// unspecified, loopback and IPv4-compatible (`::/96`), the forms that
/// embed an IPv4 address (NAT64, 6to4, Teredo), discard, benchmarking,
/// ORCHID, documentation, segment routing, unique-local, link-local,
/// site-local and multicast. IPv4-mapped addresses are matched as IPv4
/// (the API refuses them in a policy). The same ranges as the hook
/// guard's (`workspace::hooks::ssrf`).
pub const DENY_V6: [&str; 16] = [
    "::/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/32",
    "2001:2::/48",
    "2001:10::/28",
    "2001:20::/28",
    "2001:db8::/32",
    "2002::/16",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

pub fn policies(ws: &Workspace, settings: &Settings) -> Result<Vec<NetworkPolicy>, BuildError> {
    let mut out = vec![default_deny(ws), ingress(ws, settings)];
    let to_gateway = || NetworkPolicyEgressRule {
        to: Some(vec![pod_peer(gateway_pod(ws))]),
        ports: Some(gateway_ports(ws)),
    };
    if egress_gateway::by_name(ws) {
        // By name: the workspace reaches DNS and its gateway; the gateway
        // takes the workspace's traffic only and goes where the CIDR
        // rules would have let the workspace go.
        out.push(policy(
            ws,
            "workspace-egress",
            NetworkPolicySpec {
                pod_selector: Some(workspace_pod(ws)),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(
                    [dns_rule(ws, settings)?, to_gateway()]
                        .into_iter()
                        .chain(broker_rules(ws, settings))
                        .collect(),
                ),
                ..Default::default()
            },
        ));
    } else {
        let mut by_address = egress(ws, settings)?;
        if let Some(rules) = by_address.spec.as_mut().and_then(|s| s.egress.as_mut()) {
            if egress_gateway::has_models(ws) {
                rules.push(to_gateway());
            }
            rules.extend(broker_rules(ws, settings));
        }
        out.push(by_address);
    }
    if egress_gateway::enabled(ws) {
        out.push(policy(
            ws,
            "egress-gateway-ingress",
            NetworkPolicySpec {
                pod_selector: Some(gateway_pod(ws)),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(gateway_ingress(ws, settings)),
                ..Default::default()
            },
        ));
        let mut rules = vec![dns_rule(ws, settings)?];
        rules.extend(public_rules(ws, settings));
        if egress_gateway::has_models(ws) {
            rules.extend(api_server_rules(settings));
        }
        out.push(policy(
            ws,
            "egress-gateway-egress",
            NetworkPolicySpec {
                pod_selector: Some(gateway_pod(ws)),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(rules),
                ..Default::default()
            },
        ));
    }
    Ok(out)
}

/// Who reaches the gateway: the workspace (all its ports), and, when it
/// builds through the operator with egress by name, its build pods (the
/// proxy port).
fn gateway_ingress(ws: &Workspace, settings: &Settings) -> Vec<NetworkPolicyIngressRule> {
    let mut rules = vec![NetworkPolicyIngressRule {
        from: Some(vec![pod_peer(workspace_pod(ws))]),
        ports: Some(gateway_ports(ws)),
    }];
    if egress_gateway::by_name(ws) && super::build_client::enabled(ws) {
        let mut builds = namespace_peer(&settings.build_namespace);
        builds.pod_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                names::WORKSPACE_LABEL.into(),
                names::workspace_name(ws).into(),
            )])),
            ..Default::default()
        });
        rules.push(NetworkPolicyIngressRule {
            from: Some(vec![builds]),
            ports: Some(vec![tcp(names::EGRESS_PROXY_PORT)]),
        });
    }
    rules
}

/// The operator's token broker, for a workspace with `spec.github`: its
/// real endpoints when the settings name them (an operator outside the
/// cluster, as in tests), else the operator's pods on the broker port.
fn broker_rules(ws: &Workspace, settings: &Settings) -> Vec<NetworkPolicyEgressRule> {
    if !super::github::enabled(ws) && !super::build_client::enabled(ws) {
        return Vec::new();
    }
    if !settings.broker_endpoints.is_empty() {
        return endpoint_rules(&settings.broker_endpoints);
    }
    let mut operator = namespace_peer(&settings.operator_namespace);
    operator.pod_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "app.kubernetes.io/name".into(),
            names::OPERATOR_APP.into(),
        )])),
        ..Default::default()
    });
    vec![NetworkPolicyEgressRule {
        to: Some(vec![operator]),
        ports: Some(vec![tcp(names::BROKER_PORT)]),
    }]
}

/// The API server at each of its real endpoints (a policy sees those, not
/// the `kubernetes` Service's address).
fn api_server_rules(settings: &Settings) -> Vec<NetworkPolicyEgressRule> {
    endpoint_rules(&settings.api_server_endpoints)
}

/// One rule per `ip:port`: that address, that port.
fn endpoint_rules(endpoints: &[String]) -> Vec<NetworkPolicyEgressRule> {
    endpoints
        .iter()
        .filter_map(|e| e.parse::<SocketAddr>().ok())
        .map(|addr| NetworkPolicyEgressRule {
            to: Some(vec![host_peer(addr.ip())]),
            ports: Some(vec![tcp(addr.port() as i32)]),
        })
        .collect()
}

/// The label of a build pod that says where its steps may go beyond DNS
/// and the plain-HTTP registries: `public` (addresses outside the denied
/// ranges: its workspace's egress goes by address) or `gateway` (its
/// workspace's egress gateway only: its workspace's egress goes by name).
pub const BUILD_EGRESS_LABEL: &str = "kube-coder.dev/build-egress";

/// The build namespace's base policy, for every build pod: no connection
/// comes in; out, DNS and the plain-HTTP registries the operator was
/// given (`insecure_registries`, by address). Nothing else: a `RUN` step
/// reaches neither the API server nor a node nor another tenant.
pub fn build_pods(settings: &Settings) -> Result<NetworkPolicy, BuildError> {
    let registries: Vec<String> = settings
        .insecure_registries
        .iter()
        .filter(|r| r.parse::<std::net::SocketAddr>().is_ok())
        .cloned()
        .collect();
    let mut egress = vec![dns_rule_for(&settings.build_namespace, settings)?];
    egress.extend(endpoint_rules(&registries));
    Ok(build_policy(
        settings,
        "build-pods",
        LabelSelector::default(),
        Some(vec![]),
        egress,
    ))
}

/// Build pods labelled `public` also reach addresses outside the private,
/// loopback, link-local and metadata ranges.
pub fn build_pods_public(settings: &Settings) -> NetworkPolicy {
    build_policy(
        settings,
        "build-pods-public",
        build_egress_pods("public"),
        None,
        public_rules_but(None, &[], &settings.api_server_sockets()),
    )
}

/// Build pods labelled `gateway` also reach the egress gateway of their
/// own workspace (its proxy port): one policy per workspace, so a build
/// cannot use another's allow list.
pub fn build_pods_gateway(ws: &Workspace, settings: &Settings) -> NetworkPolicy {
    let name = names::workspace_name(ws);
    let mut selector = build_egress_pods("gateway");
    if let Some(labels) = selector.match_labels.as_mut() {
        labels.insert(names::WORKSPACE_LABEL.into(), name.into());
    }
    let mut gateway = namespace_peer(&names::namespace(name));
    gateway.pod_selector = Some(gateway_pod(ws));
    build_policy(
        settings,
        &format!("build-gateway-{name}"),
        selector,
        None,
        vec![NetworkPolicyEgressRule {
            to: Some(vec![gateway]),
            ports: Some(vec![tcp(names::EGRESS_PROXY_PORT)]),
        }],
    )
}

fn build_egress_pods(value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(BUILD_EGRESS_LABEL.into(), value.into())])),
        ..Default::default()
    }
}

/// A policy of the build namespace; `ingress` `Some` makes it an ingress
/// policy too (`Some(vec![])`: nothing comes in).
fn build_policy(
    settings: &Settings,
    name: &str,
    pods: LabelSelector,
    ingress: Option<Vec<NetworkPolicyIngressRule>>,
    egress: Vec<NetworkPolicyEgressRule>,
) -> NetworkPolicy {
    let mut types = vec!["Egress".to_string()];
    if ingress.is_some() {
        types.insert(0, "Ingress".into());
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(settings.build_namespace.clone()),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods),
            policy_types: Some(types),
            ingress,
            egress: Some(egress),
        }),
    }
}

fn policy(ws: &Workspace, name: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(ws, name, true, true),
        spec: Some(spec),
    }
}

fn workspace_pod(ws: &Workspace) -> LabelSelector {
    LabelSelector {
        match_labels: Some(names::pod_labels(names::workspace_name(ws))),
        ..Default::default()
    }
}

fn gateway_pod(ws: &Workspace) -> LabelSelector {
    LabelSelector {
        match_labels: Some(names::gateway_pod_labels(names::workspace_name(ws))),
        ..Default::default()
    }
}

/// The gateway's ports (the workspace uses them all).
fn gateway_ports(ws: &Workspace) -> Vec<NetworkPolicyPort> {
    egress_gateway::ports(egress_gateway::has_models(ws))
        .into_iter()
        .map(|(_, port)| tcp(port))
        .collect()
}

/// Pods of this namespace.
fn pod_peer(selector: LabelSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(selector),
        ..Default::default()
    }
}

fn namespace_peer(namespace: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".into(),
                namespace.into(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some("TCP".into()),
        port: Some(IntOrString::Int(port)),
        ..Default::default()
    }
}

fn default_deny(ws: &Workspace) -> NetworkPolicy {
    policy(
        ws,
        "default-deny",
        NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ..Default::default()
        },
    )
}

fn ingress(ws: &Workspace, settings: &Settings) -> NetworkPolicy {
    let dashboard = if ws.spec.auth.kind == AuthType::Oauth2 {
        names::OAUTH2_PORT
    } else {
        names::DASHBOARD_PORT
    };
    policy(
        ws,
        "workspace-ingress",
        NetworkPolicySpec {
            pod_selector: Some(workspace_pod(ws)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![namespace_peer(&settings.ingress_namespace)]),
                    ports: Some(vec![tcp(dashboard), tcp(names::API_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![namespace_peer(&settings.operator_namespace)]),
                    ports: Some(vec![tcp(names::API_PORT)]),
                },
            ]),
            ..Default::default()
        },
    )
}

/// Every address outside the denied ranges, and the allowed ranges; never
/// the API server.
fn public_rules(ws: &Workspace, settings: &Settings) -> Vec<NetworkPolicyEgressRule> {
    let e = &ws.spec.network.egress;
    public_rules_but(
        e.deny_cidrs.as_ref(),
        &e.allow_cidrs,
        &settings.api_server_sockets(),
    )
}

/// Every address outside `deny` (default: the private, loopback,
/// link-local and metadata ranges), and the `allow` ranges; never an
/// endpoint of `never` (the API server's), whatever the lists say: a range
/// that holds the control plane's host (an internal network allowed whole,
/// `denyCIDRs: []`, a managed cluster's public endpoint) still does not
/// reach it. Such a host is taken out of its ranges and allowed again by a
/// rule of its own on every other port, so what else it serves (a registry
/// on a one-node cluster) stays reachable.
fn public_rules_but(
    deny: Option<&Vec<String>>,
    allow: &[String],
    never: &[SocketAddr],
) -> Vec<NetworkPolicyEgressRule> {
    let deny: Vec<String> = match deny {
        Some(list) => list.clone(),
        None => DENY_V4
            .iter()
            .chain(DENY_V6.iter())
            .map(|s| s.to_string())
            .collect(),
    };
    let (v6, v4): (Vec<String>, Vec<String>) = deny.into_iter().partition(|c| c.contains(':'));
    let hosts: BTreeSet<IpAddr> = never.iter().map(SocketAddr::ip).collect();
    let mut carved = BTreeSet::new();
    let peers = [("0.0.0.0/0".to_string(), v4), ("::/0".to_string(), v6)]
        .into_iter()
        .chain(allow.iter().map(|c| (c.clone(), vec![])))
        .filter_map(|(cidr, except)| without(cidr, except, &hosts, &mut carved))
        .map(|(cidr, except)| ip_block(cidr, except))
        .collect();
    let mut rules = vec![NetworkPolicyEgressRule {
        to: Some(peers),
        ports: None,
    }];
    rules.extend(carved.into_iter().map(|host| {
        let ports: Vec<u16> = never
            .iter()
            .filter(|e| e.ip() == host)
            .map(SocketAddr::port)
            .collect();
        NetworkPolicyEgressRule {
            to: Some(vec![host_peer(host)]),
            ports: Some(every_port_but(&ports)),
        }
    }));
    rules
}

/// One address (`/32`, `/128`).
fn host_peer(ip: IpAddr) -> NetworkPolicyPeer {
    ip_block(IpNet::from(ip).to_string(), vec![])
}

fn ip_block(cidr: String, except: Vec<String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr,
            except: (!except.is_empty()).then_some(except),
        }),
        ..Default::default()
    }
}

/// `cidr` less `except` and less each of `hosts` it would let through, as a
/// range and its exceptions (`None` when nothing is left: an exception must
/// be smaller than its range); the hosts taken out go into `carved`.
fn without(
    cidr: String,
    mut except: Vec<String>,
    hosts: &BTreeSet<IpAddr>,
    carved: &mut BTreeSet<IpAddr>,
) -> Option<(String, Vec<String>)> {
    // The CRD's rules hold only CIDRs; one that does not parse is left to
    // the API server to refuse.
    let Ok(range) = cidr.parse::<IpNet>() else {
        return Some((cidr, except));
    };
    let mut left = Some(());
    for &host in hosts {
        let excepted = except
            .iter()
            .filter_map(|e| e.parse::<IpNet>().ok())
            .any(|e| e.contains(&host));
        if !range.contains(&host) || excepted {
            continue;
        }
        carved.insert(host);
        let one = IpNet::from(host);
        if one.prefix_len() == range.prefix_len() {
            left = None;
        } else {
            except.push(one.to_string());
        }
    }
    left.map(|()| (cidr, except))
}

/// TCP on every port but `ports`, and UDP on every port.
fn every_port_but(ports: &[u16]) -> Vec<NetworkPolicyPort> {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    let mut out = Vec::new();
    let mut from: u32 = 1;
    for bound in ports.iter().map(|&p| u32::from(p)).chain([65536]) {
        if bound > from {
            out.push(NetworkPolicyPort {
                protocol: Some("TCP".into()),
                port: Some(IntOrString::Int(from as i32)),
                end_port: (bound - 1 > from).then_some(bound as i32 - 1),
            });
        }
        from = bound + 1;
    }
    out.push(NetworkPolicyPort {
        protocol: Some("UDP".into()),
        ..Default::default()
    });
    out
}

/// Port 53 of the cluster DNS pods.
fn dns_rule(ws: &Workspace, settings: &Settings) -> Result<NetworkPolicyEgressRule, BuildError> {
    dns_rule_for(names::workspace_name(ws), settings)
}

/// Port 53 of the cluster DNS pods; `who` names the object in an error.
fn dns_rule_for(who: &str, settings: &Settings) -> Result<NetworkPolicyEgressRule, BuildError> {
    let (label_key, label_value) = settings.dns_pod_label.split_once('=').ok_or_else(|| {
        BuildError::Invalid(
            who.into(),
            format!(
                "the operator's DNS pod label {:?} is not key=value",
                settings.dns_pod_label
            ),
        )
    })?;
    let mut dns_peer = namespace_peer(&settings.dns_namespace);
    dns_peer.pod_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([(label_key.into(), label_value.into())])),
        ..Default::default()
    });
    let dns_port = |protocol: &str| NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(53)),
        ..Default::default()
    };
    Ok(NetworkPolicyEgressRule {
        to: Some(vec![dns_peer]),
        ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
    })
}

fn egress(ws: &Workspace, settings: &Settings) -> Result<NetworkPolicy, BuildError> {
    Ok(policy(
        ws,
        "workspace-egress",
        NetworkPolicySpec {
            pod_selector: Some(workspace_pod(ws)),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(
                std::iter::once(dns_rule(ws, settings)?)
                    .chain(public_rules(ws, settings))
                    .collect(),
            ),
            ..Default::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    fn egress_blocks(ws: &Workspace) -> Vec<IPBlock> {
        egress_blocks_with(ws, &Settings::default())
    }

    fn egress_blocks_with(ws: &Workspace, settings: &Settings) -> Vec<IPBlock> {
        let p = egress(ws, settings).unwrap();
        p.spec.unwrap().egress.unwrap()[1]
            .to
            .clone()
            .unwrap()
            .into_iter()
            .filter_map(|peer| peer.ip_block)
            .collect()
    }

    #[test]
    fn build_pods_take_no_connection_and_reach_no_private_address() {
        let settings = Settings {
            insecure_registries: vec!["192.0.2.2:5000".into(), "registry.test:5000".into()],
            ..Settings::default()
        };
        let blocks_of = |spec: &NetworkPolicySpec| -> Vec<IPBlock> {
            spec.egress
                .iter()
                .flatten()
                .flat_map(|r| r.to.iter().flatten())
                .filter_map(|p| p.ip_block.clone())
                .collect()
        };
        // Every build pod: nothing in; out, DNS and the plain-HTTP registry
        // by address and port (a name is not an address a policy can hold).
        let base = build_pods(&settings).unwrap().spec.unwrap();
        assert_eq!(
            base.pod_selector,
            Some(LabelSelector::default()),
            "every pod of the namespace"
        );
        assert_eq!(base.ingress, Some(vec![]));
        let blocks = blocks_of(&base);
        assert_eq!(
            blocks.iter().map(|b| b.cidr.as_str()).collect::<Vec<_>>(),
            ["192.0.2.2/32"],
            "no public or private range for every pod: {blocks:?}"
        );
        let registry = base
            .egress
            .iter()
            .flatten()
            .find(|r| r.to.iter().flatten().any(|p| p.ip_block.is_some()))
            .unwrap();
        assert_eq!(
            registry.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(5000))
        );
        // Pods labelled public: addresses outside the denied ranges.
        let public = build_pods_public(&settings).spec.unwrap();
        assert_eq!(
            public.pod_selector.clone().unwrap().match_labels.unwrap()[BUILD_EGRESS_LABEL],
            "public"
        );
        let blocks = blocks_of(&public);
        let v4 = blocks.iter().find(|b| b.cidr == "0.0.0.0/0").unwrap();
        for range in [
            "10.0.0.0/8",
            "169.254.0.0/16",
            "192.168.0.0/16",
            "192.0.2.0/24",
        ] {
            assert!(
                v4.except.as_ref().unwrap().iter().any(|e| e == range),
                "{range}"
            );
        }
        assert_eq!(public.ingress, None, "the base policy holds ingress");
    }

    #[test]
    fn a_build_of_a_workspace_whose_egress_goes_by_name_reaches_its_own_gateway_only() {
        let settings = Settings::default();
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"}, "build": {"registries": ["r.io/team/"]},
                   "network": {"egress": {"allowDomains": ["pypi.org"]}}}),
        );
        let policy = build_pods_gateway(&ws, &settings);
        assert_eq!(
            policy.metadata.namespace.as_deref(),
            Some(settings.build_namespace.as_str())
        );
        let spec = policy.spec.unwrap();
        let pods = spec.pod_selector.unwrap().match_labels.unwrap();
        assert_eq!(pods[BUILD_EGRESS_LABEL], "gateway");
        assert_eq!(pods[names::WORKSPACE_LABEL], "alice");
        let rules = spec.egress.unwrap();
        assert_eq!(rules.len(), 1);
        let to = &rules[0].to.as_ref().unwrap()[0];
        assert_eq!(
            to.namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"],
            "ws-alice"
        );
        assert_eq!(
            to.pod_selector.as_ref().unwrap().match_labels,
            Some(names::gateway_pod_labels("alice"))
        );
        assert_eq!(
            rules[0].ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(names::EGRESS_PROXY_PORT))
        );
        // The gateway takes the workspace's build pods, on its proxy port.
        let all = policies(&ws, &settings).unwrap();
        let ingress = all
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("egress-gateway-ingress"))
            .and_then(|p| p.spec.clone()?.ingress)
            .unwrap();
        let from_builds = ingress
            .iter()
            .find(|r| {
                r.from.iter().flatten().any(|p| {
                    p.namespace_selector.as_ref().is_some_and(|n| {
                        n.match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"]
                            == settings.build_namespace
                    })
                })
            })
            .expect("a rule for the build pods");
        assert_eq!(
            from_builds.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(names::EGRESS_PROXY_PORT))
        );
        // Without builds through the operator, no such rule.
        let plain = workspace(
            "bob",
            json!({"owner": {"name": "bob"}, "network": {"egress": {"allowDomains": ["pypi.org"]}}}),
        );
        let ingress = policies(&plain, &settings)
            .unwrap()
            .into_iter()
            .find(|p| p.metadata.name.as_deref() == Some("egress-gateway-ingress"))
            .and_then(|p| p.spec?.ingress)
            .unwrap();
        assert_eq!(ingress.len(), 1);
    }

    #[test]
    fn egress_denies_private_and_metadata_ranges_by_default() {
        let ws = workspace("alice", json!({"owner": {"name": "alice"}}));
        let blocks = egress_blocks(&ws);
        let v4 = blocks[0].except.clone().unwrap();
        for cidr in [
            "10.0.0.0/8",
            "169.254.0.0/16",
            "100.64.0.0/10",
            "172.16.0.0/12",
            "192.168.0.0/16",
        ] {
            assert!(v4.contains(&cidr.to_string()), "{cidr} is not denied");
        }
        let v6 = blocks[1].except.clone().unwrap();
        assert!(v6.contains(&"fc00::/7".to_string()));
        assert_eq!(blocks.len(), 2);
    }

    /// Dual stack: each kind of address IPv4 denies has its IPv6 twin
    /// denied too (one sample from every range the hook guard refuses),
    /// and public IPv6 stays reachable.
    #[test]
    fn ipv6_egress_denies_what_ipv4_denies() {
        let nets: Vec<ipnet::IpNet> = DENY_V6.iter().map(|c| c.parse().unwrap()).collect();
        let denied = |a: &str| {
            let ip: std::net::IpAddr = a.parse().unwrap();
            nets.iter().any(|n| n.contains(&ip))
        };
        for a in [
            "::",
            "::1",
            "::a00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:db8::1",
            "2002:a00:1::1",
            "3fff::1",
            "5f00::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(denied(a), "{a} is reachable over IPv6");
        }
        for a in ["2606:4700:4700::1111", "2a00:1450:4001::200e"] {
            assert!(!denied(a), "{a} is public");
        }
    }

    /// By name: the workspace may reach DNS and its gateway only; the
    /// gateway takes traffic from the workspace only and reaches what the
    /// CIDR rules allow.
    #[test]
    fn with_an_allow_list_the_workspace_reaches_only_dns_and_its_gateway() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"},
                   "network": {"egress": {"allowDomains": ["*.github.com"]}}}),
        );
        let all = policies(&ws, &Settings::default()).unwrap();
        let by_name = |n: &str| {
            all.iter()
                .find(|p| p.metadata.name.as_deref() == Some(n))
                .and_then(|p| p.spec.clone())
                .unwrap_or_else(|| panic!("no policy {n}"))
        };
        let egress = by_name("workspace-egress").egress.unwrap();
        assert_eq!(egress.len(), 2);
        assert!(
            egress
                .iter()
                .all(|r| r.to.iter().flatten().all(|p| p.ip_block.is_none())),
            "the workspace reaches no address range directly: {egress:?}"
        );
        let to_gateway = egress[1].to.clone().unwrap()[0]
            .pod_selector
            .clone()
            .unwrap();
        assert_eq!(
            to_gateway.match_labels.unwrap()["app.kubernetes.io/name"],
            names::EGRESS_GATEWAY
        );
        let ingress = by_name("egress-gateway-ingress").ingress.unwrap();
        let from = ingress[0].from.clone().unwrap()[0]
            .pod_selector
            .clone()
            .unwrap();
        assert_eq!(
            from.match_labels.unwrap()["app.kubernetes.io/name"],
            names::WORKLOAD
        );
        let out = by_name("egress-gateway-egress").egress.unwrap();
        let v4 = out[1].to.clone().unwrap()[0].ip_block.clone().unwrap();
        assert_eq!(v4.cidr, "0.0.0.0/0");
        assert!(v4.except.unwrap().contains(&"169.254.0.0/16".to_string()));
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn configured_ranges_replace_the_defaults_and_allow_ranges_are_added() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"},
                   "network": {"egress": {"denyCIDRs": ["10.0.0.0/8"], "allowCIDRs": ["10.20.0.0/16"]}}}),
        );
        let blocks = egress_blocks(&ws);
        assert_eq!(blocks[0].except, Some(vec!["10.0.0.0/8".to_string()]));
        assert_eq!(blocks[1].except, None);
        assert_eq!(blocks[2].cidr, "10.20.0.0/16");
    }

    /// A range that holds the API server's host still does not reach the
    /// API server: the host is taken out of every range (the default one
    /// when the deny list is emptied too; a range of that host alone is
    /// dropped), and allowed again on every port but the API server's.
    #[test]
    fn no_range_reaches_the_api_server() {
        let settings = Settings {
            api_server_endpoints: vec![
                "192.0.2.2:6443".into(),
                "192.0.2.2:443".into(),
                "[2001:db8::2]:6443".into(),
            ],
            ..Default::default()
        };
        let rules = |network: serde_json::Value| -> Vec<NetworkPolicyEgressRule> {
            let ws = workspace(
                "alice",
                json!({"owner": {"name": "alice"}, "network": network}),
            );
            egress(&ws, &settings)
                .unwrap()
                .spec
                .unwrap()
                .egress
                .unwrap()
        };
        let blocks = |rule: &NetworkPolicyEgressRule| -> Vec<IPBlock> {
            let to = rule.to.clone().unwrap_or_default();
            to.into_iter().filter_map(|peer| peer.ip_block).collect()
        };
        let ports = |rule: &NetworkPolicyEgressRule| -> Vec<String> {
            let ports = rule.ports.clone().unwrap_or_default();
            ports
                .iter()
                .map(|p| match (&p.port, p.end_port) {
                    (Some(IntOrString::Int(a)), Some(b)) => format!("{a}-{b}"),
                    (Some(IntOrString::Int(a)), None) => a.to_string(),
                    _ => p.protocol.clone().unwrap_or_default(),
                })
                .collect()
        };
        let all = rules(json!({"egress": {
            "allowCIDRs": ["192.0.2.0/24", "192.0.2.2/32", "10.20.0.0/16", "2001:db8::/64"]
        }}));
        let got = blocks(&all[1]);
        let cidrs: Vec<&str> = got.iter().map(|b| b.cidr.as_str()).collect();
        assert_eq!(
            cidrs,
            [
                "0.0.0.0/0",
                "::/0",
                "192.0.2.0/24",
                "10.20.0.0/16",
                "2001:db8::/64"
            ]
        );
        // Already outside the defaults: no second exception.
        assert!(!got[0]
            .except
            .clone()
            .unwrap()
            .contains(&"192.0.2.2/32".into()));
        assert_eq!(got[2].except, Some(vec!["192.0.2.2/32".to_string()]));
        assert_eq!(got[3].except, None);
        assert_eq!(got[4].except, Some(vec!["2001:db8::2/128".to_string()]));
        // Each host taken out, on every other port.
        assert_eq!(all.len(), 4);
        assert_eq!(blocks(&all[2])[0].cidr, "192.0.2.2/32");
        assert_eq!(ports(&all[2]), ["1-442", "444-6442", "6444-65535", "UDP"]);
        assert_eq!(blocks(&all[3])[0].cidr, "2001:db8::2/128");
        assert_eq!(ports(&all[3]), ["1-6442", "6444-65535", "UDP"]);

        let all = rules(json!({"egress": {"denyCIDRs": []}}));
        let got = blocks(&all[1]);
        assert_eq!(got[0].except, Some(vec!["192.0.2.2/32".to_string()]));
        assert_eq!(got[1].except, Some(vec!["2001:db8::2/128".to_string()]));
        assert_eq!(all.len(), 4);

        // Held by no allowed range: no rule of its own either.
        assert_eq!(rules(json!({})).len(), 2);

        // An API server at a public address (a managed cluster's): out of
        // the public range too, for build pods as for workspaces.
        let public = Settings {
            api_server_endpoints: vec!["11.0.0.1:1".into()],
            ..Default::default()
        };
        let build = build_pods_public(&public).spec.unwrap().egress.unwrap();
        let v4 = blocks(&build[0]).remove(0);
        assert!(v4.except.unwrap().contains(&"11.0.0.1/32".to_string()));
        assert_eq!(ports(&build[1]), ["2-65535", "UDP"]);
    }

    /// With models and egress by address: the workspace may also reach the
    /// gateway, which alone may reach the API server (its usage).
    #[test]
    fn with_models_the_gateway_alone_reaches_the_api_server() {
        let ws = workspace("alice", json!({"owner": {"name": "alice"}, "models": {}}));
        let settings = Settings {
            api_server_endpoints: vec!["192.0.2.2:6443".into()],
            ..Default::default()
        };
        let all = policies(&ws, &settings).unwrap();
        let by_name = |n: &str| {
            all.iter()
                .find(|p| p.metadata.name.as_deref() == Some(n))
                .unwrap_or_else(|| panic!("no policy {n}"))
                .spec
                .clone()
                .unwrap()
        };
        let egress = by_name("workspace-egress").egress.unwrap();
        // DNS, public addresses, the gateway's three ports.
        assert_eq!(egress.len(), 3);
        let ports: Vec<IntOrString> = egress[2]
            .ports
            .clone()
            .unwrap()
            .into_iter()
            .filter_map(|p| p.port)
            .collect();
        assert_eq!(
            ports,
            [
                IntOrString::Int(3128),
                IntOrString::Int(3129),
                IntOrString::Int(3130)
            ]
        );
        let text = serde_json::to_string(&egress).unwrap();
        assert!(!text.contains("192.0.2.2/32"), "{text}");
        let gateway = serde_json::to_string(&by_name("egress-gateway-egress")).unwrap();
        assert!(
            gateway.contains(r#""cidr":"192.0.2.2/32""#) && gateway.contains("6443"),
            "{gateway}"
        );
    }

    #[test]
    fn with_github_the_workspace_reaches_the_broker_port_and_no_other() {
        let egress_of = |ws: &Workspace, settings: &Settings| {
            let all = policies(ws, settings).unwrap();
            let p = all
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some("workspace-egress"))
                .unwrap();
            serde_json::to_string(&p.spec.as_ref().unwrap().egress).unwrap()
        };
        let gh = json!({"owner": {"name": "alice"}, "github": {"repositories": ["acme/app"]}});
        // In the cluster: the operator's pods, port 8443 only.
        let text = egress_of(&workspace("alice", gh.clone()), &Settings::default());
        assert!(
            text.contains(r#""kubernetes.io/metadata.name":"kube-coder-system""#)
                && text.contains(r#""app.kubernetes.io/name":"kube-coder-operator""#)
                && text.contains(r#""port":8443"#),
            "{text}"
        );
        // An operator outside the cluster: its address and port.
        let outside = Settings {
            broker_endpoints: vec!["192.0.2.2:9443".into()],
            ..Default::default()
        };
        let text = egress_of(&workspace("alice", gh.clone()), &outside);
        assert!(
            text.contains(r#""cidr":"192.0.2.2/32""#) && text.contains("9443"),
            "{text}"
        );
        // By name too: DNS, the gateway, the broker.
        let mut by_name = gh;
        by_name["network"] = json!({"egress": {"allowDomains": ["github.com"]}});
        let text = egress_of(&workspace("alice", by_name), &Settings::default());
        assert!(text.contains(r#""port":8443"#), "{text}");
        // Without github: no way to the operator.
        let plain = egress_of(
            &workspace("bob", json!({"owner": {"name": "bob"}})),
            &Settings::default(),
        );
        assert!(
            !plain.contains("kube-coder-operator") && !plain.contains("8443"),
            "{plain}"
        );
    }
}
