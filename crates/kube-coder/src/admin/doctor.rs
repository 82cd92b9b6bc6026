//! `kube-coder doctor`: is this cluster ready for workspaces? Each check
//! prints ok, warn or FAIL with what to do; any FAIL exits 1.

use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::{IngressClass, NetworkPolicy};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};

use crate::cluster;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Where the operator runs.
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-coder-system")]
    operator_namespace: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failures: usize,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: &str) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                self.failures += 1;
                "FAIL"
            }
        };
        println!("{tag}  {what}: {detail}");
    }
}

fn is_default(annotations: Option<&std::collections::BTreeMap<String, String>>, key: &str) -> bool {
    annotations
        .and_then(|a| a.get(key))
        .map(|v| v == "true")
        .unwrap_or(false)
}

pub async fn run(args: DoctorArgs) -> Result<(), String> {
    let mut r = Report { failures: 0 };
    let client = match cluster::client().await {
        Ok(c) => c,
        Err(e) => {
            r.line(Level::Fail, "cluster", &e);
            return Err("1 check failed".into());
        }
    };
    match client.apiserver_version().await {
        Ok(v) => r.line(
            Level::Ok,
            "API server",
            &format!("reachable, Kubernetes {}", v.git_version),
        ),
        Err(e) => {
            r.line(
                Level::Fail,
                "API server",
                &format!("not reachable: {e}; check KUBECONFIG"),
            );
            return Err("the API server is not reachable".into());
        }
    }

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt("workspaces.kube-coder.dev").await {
        Ok(Some(_)) => r.line(Level::Ok, "Workspace CRD", "installed"),
        Ok(None) => r.line(
            Level::Fail,
            "Workspace CRD",
            "not installed; helm install kube-coder charts/kube-coder",
        ),
        Err(e) => r.line(
            Level::Fail,
            "Workspace CRD",
            &format!("cannot read CRDs: {}", cluster::api_message(&e)),
        ),
    }

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &args.operator_namespace);
    let operators = deployments
        .list(&ListParams::default().labels("app.kubernetes.io/name=kube-coder-operator"))
        .await;
    // The ingress controller the operator was told of (the chart's
    // network.ingressClassName and ingressNamespace), or its defaults.
    let defaults = operator::settings::Settings::default();
    let operator_env = |name: &str, default: String| {
        operators
            .as_ref()
            .ok()
            .and_then(|l| l.items.first())
            .and_then(|d| {
                d.spec
                    .template
                    .spec
                    .as_ref()?
                    .containers
                    .first()?
                    .env
                    .clone()
            })
            .and_then(|env| env.into_iter().find(|e| e.name == name)?.value)
            .unwrap_or(default)
    };
    let ingress_class = operator_env("KUBE_CODER_INGRESS_CLASS", defaults.ingress_class);
    let ingress_namespace =
        operator_env("KUBE_CODER_INGRESS_NAMESPACE", defaults.ingress_namespace);
    match &operators {
        Ok(list)
            if list.items.iter().any(|d| {
                d.status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0)
                    > 0
            }) =>
        {
            r.line(
                Level::Ok,
                "operator",
                &format!("running in {}", args.operator_namespace),
            )
        }
        Ok(list) if !list.items.is_empty() => r.line(
            Level::Fail,
            "operator",
            &format!(
                "deployed in {} but not ready; kubectl -n {} logs deploy/kube-coder-operator",
                args.operator_namespace, args.operator_namespace
            ),
        ),
        Ok(_) => r.line(
            Level::Warn,
            "operator",
            &format!(
                "no operator Deployment in {}; install the chart, or pass --operator-namespace",
                args.operator_namespace
            ),
        ),
        Err(e) => r.line(
            Level::Warn,
            "operator",
            &format!("cannot look: {}", cluster::api_message(e)),
        ),
    }

    let classes: Api<IngressClass> = Api::all(client.clone());
    match classes.get_opt(&ingress_class).await {
        Ok(Some(c)) => r.line(
            Level::Ok,
            "ingress class",
            &format!(
                "{ingress_class} ({}), given to every workspace's Ingresses; traffic accepted from namespace {ingress_namespace} only",
                c.spec.and_then(|s| s.controller).unwrap_or_default()
            ),
        ),
        Ok(None) => r.line(
            Level::Warn,
            "ingress class",
            &format!("{ingress_class} is not installed; workspaces are reachable in-cluster only until its controller runs in namespace {ingress_namespace} (or set the chart's network.ingressClassName and network.ingressNamespace to the controller you have)"),
        ),
        Err(e) => r.line(Level::Warn, "ingress class", &format!("cannot read: {}", cluster::api_message(&e))),
    }

    let storage: Api<StorageClass> = Api::all(client.clone());
    match storage.list(&ListParams::default()).await {
        Ok(list) => match list.items.iter().find(|c| is_default(c.metadata.annotations.as_ref(), "storageclass.kubernetes.io/is-default-class")) {
            Some(c) => r.line(Level::Ok, "storage class", &format!("default {}", c.metadata.name.clone().unwrap_or_default())),
            None => r.line(Level::Warn, "storage class", "no default storage class; home volumes stay Pending unless each Workspace names spec.storage.storageClassName"),
        },
        Err(e) => r.line(Level::Warn, "storage class", &format!("cannot list: {}", cluster::api_message(&e))),
    }

    let policies: Api<NetworkPolicy> = Api::all(client.clone());
    match policies.list(&ListParams::default().limit(1)).await {
        Ok(_) => r.line(Level::Ok, "NetworkPolicy", "API served; enforcement needs a CNI that implements it (Calico, Cilium, …): check yours"),
        Err(e) => r.line(Level::Fail, "NetworkPolicy", &format!("API not served: {}", cluster::api_message(&e))),
    }

    match crds.get_opt("clusterissuers.cert-manager.io").await {
        Ok(Some(_)) => {
            let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
                "cert-manager.io",
                "v1",
                "ClusterIssuer",
            ));
            let issuers: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            match issuers.list(&ListParams::default()).await {
                Ok(l) if !l.items.is_empty() => {
                    let names: Vec<String> = l
                        .items
                        .iter()
                        .filter_map(|i| i.metadata.name.clone())
                        .collect();
                    r.line(
                        Level::Ok,
                        "cert-manager",
                        &format!("ClusterIssuers {names:?}"),
                    )
                }
                _ => r.line(
                    Level::Warn,
                    "cert-manager",
                    "installed, but no ClusterIssuer; create one to get TLS certificates",
                ),
            }
        }
        _ => r.line(
            Level::Warn,
            "cert-manager",
            "not installed; TLS for workspace hosts needs certificates from elsewhere",
        ),
    }

    match r.failures {
        0 => Ok(()),
        n => Err(format!("{n} check(s) failed")),
    }
}
