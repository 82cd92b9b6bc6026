//! The NetworkPolicies the operator writes, enforced on the real node
//! (kube-router, started by hack/cluster) and proved with TCP connections:
//! from inside a workspace pod (a task over its API), nothing private is
//! reachable (the API server by Service and by its real address, the
//! kubelet, another workspace's pod and Service, a metadata address and a
//! private test host), while cluster DNS and a public-range test host are;
//! a pod in another namespace cannot reach the workspace, a pod in the
//! ingress namespace can. Then the policies are deleted (the operator
//! stopped, so it cannot put them back) and every refusal turns into a
//! connection, so none of them was the network's own doing; started again,
//! the operator restores them and the refusals come back. Last, allowed
//! ranges that hold the node and the private host open the private host
//! and the node's other ports, still not the API server.
//! Starts: the control plane with its real node, the operator in-process,
//! three test hosts in network namespaces; workspaces and probe pods run
//! from the images `make test` built. A test binary of its own: it stops
//! its operator for a while.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube_coder_cluster_tests::test_host::TestHost;
use kube_coder_cluster_tests::{
    apiserver_port, client, eventually, eventually_empty, install_crd, operator_for_real_node,
    probe_results, probe_script, real_node_address, real_node_kubelet_port, real_node_workspace,
    require_real_node, run_task, target, unique, ws_name, REAL_NODE_KEY,
};
use operator::crd::Workspace;
use serde_json::json;

/// Runs the probes in a workspace pod, as a task.
async fn probe_from_workspace(
    api: &str,
    token: &str,
    targets: &[(String, String, u16)],
) -> BTreeMap<String, bool> {
    let http = reqwest::Client::new();
    let (output, task) = run_task(&http, api, token, &probe_script(targets)).await;
    assert_eq!(task["state"], "succeeded", "{task}\n{output}");
    let got = probe_results(&output);
    assert_eq!(
        got.len(),
        targets.len(),
        "not every probe answered:\n{output}"
    );
    got
}

/// Probes again until every one of `names` reads `open` (at most five
/// rounds): kube-router applies a policy change within moments, and admits
/// a new pod's address moments after the pod starts, and a probe can be
/// quicker than either.
async fn until_all<F, Fut>(names: &[&str], open: bool, mut probe: F) -> BTreeMap<String, bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = BTreeMap<String, bool>>,
{
    let mut got = BTreeMap::new();
    for _ in 0..5 {
        got = probe().await;
        if names.iter().all(|n| got.get(*n) == Some(&open)) {
            break;
        }
    }
    got
}

/// Runs the probes in a fresh pod (the workspace image, for its bash) in
/// `namespace` on the real node; its log holds the answers.
async fn probe_from_pod(
    client: &kube::Client,
    namespace: &str,
    targets: &[(String, String, u16)],
) -> BTreeMap<String, bool> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let name = unique("probe");
    let settings = operator_for_real_node().settings();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {REAL_NODE_KEY: "real"},
            "tolerations": [{"key": REAL_NODE_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{
                "name": "probe",
                "image": format!("{}:{}", settings.image_repository, settings.image_tag),
                "imagePullPolicy": "Never",
                "command": ["bash", "-c", probe_script(targets)],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
            }],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually(
        &format!("probe pod {namespace}/{name} to finish"),
        90,
        || async {
            let phase = pods.get(&name).await.ok()?.status?.phase?;
            (phase == "Succeeded" || phase == "Failed").then_some(())
        },
    )
    .await;
    let log = pods.logs(&name, &LogParams::default()).await.unwrap();
    let _ = pods.delete(&name, &DeleteParams::default()).await;
    let got = probe_results(&log);
    assert_eq!(got.len(), targets.len(), "not every probe answered:\n{log}");
    got
}

async fn ensure_namespace(client: &kube::Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("kube-coder-tests"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            ),
        )
        .await
        .unwrap();
}

fn assert_all(got: &BTreeMap<String, bool>, names: &[&str], open: bool, from: &str) {
    let wrong: Vec<&&str> = names
        .iter()
        .filter(|n| got.get(**n) != Some(&open))
        .collect();
    assert!(
        wrong.is_empty(),
        "from {from}, expected {} for {wrong:?}; all answers: {got:?}",
        if open { "a connection" } else { "a refusal" }
    );
}

#[tokio::test]
async fn workspace_policies_hold_on_the_wire_and_each_refusal_is_the_policys() {
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    let operator = operator_for_real_node();
    let settings = operator.settings();

    // Where the node and the API server listen.
    let node_ip = real_node_address(&client).await;
    let kubelet_port = real_node_kubelet_port(&client).await;
    let apiserver_port = apiserver_port().await;

    // Test hosts (hack/node.sh routes these addresses to them).
    let metadata = TestHost::start("metadata", Ipv4Addr::new(169, 254, 169, 254), 80);
    let private = TestHost::start("private", Ipv4Addr::new(192, 168, 255, 10), 80);
    let public = TestHost::start("public", Ipv4Addr::new(11, 22, 33, 44), 80);

    let a = ws_name("np-a");
    let b = ws_name("np-b");
    let ((api_a, token_a), _) = tokio::join!(
        real_node_workspace(&client, &a, json!({})),
        real_node_workspace(&client, &b, json!({}))
    );
    let (ns_a, ns_b) = (format!("ws-{a}"), format!("ws-{b}"));
    let pod_ip = |ns: String| {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        async move {
            pods.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .find_map(|p| p.status?.pod_ip)
                .expect("the workspace pod's address")
        }
    };
    let (ip_a, ip_b) = (pod_ip(ns_a.clone()).await, pod_ip(ns_b.clone()).await);
    let service_b = Api::<Service>::namespaced(client.clone(), &ns_b)
        .get("workspace")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("B's ClusterIP");

    let refused = [
        "api-service",
        "api-endpoint",
        "kubelet",
        "other-workspace-pod",
        "other-workspace-service",
        "metadata",
        "private",
    ];
    let allowed = ["dns", "public"];
    let from_a = vec![
        target("api-service", "10.96.0.1", 443),
        target("api-endpoint", &node_ip, apiserver_port),
        target("kubelet", &node_ip, kubelet_port),
        target("other-workspace-pod", &ip_b, 6081),
        target("other-workspace-service", &service_b, 6081),
        target("metadata", metadata.addr, metadata.port),
        target("private", private.addr, private.port),
        target("dns", "10.96.0.10", 53),
        target("public", public.addr, public.port),
    ];
    let into_a = vec![
        target("dashboard-port", &ip_a, 6080),
        target("api-port", &ip_a, 6081),
    ];
    let outsider = unique("np-outsider");
    ensure_namespace(&client, &outsider).await;
    ensure_namespace(&client, &settings.ingress_namespace).await;

    // With the policies: only DNS and the public host answer a workspace;
    // its names still resolve; only the ingress namespace reaches it.
    let got = probe_from_workspace(&api_a, &token_a, &from_a).await;
    assert_all(&got, &refused, false, "workspace A");
    assert_all(&got, &allowed, true, "workspace A");
    let http = reqwest::Client::new();
    let (output, task) = run_task(
        &http,
        &api_a,
        &token_a,
        "getent hosts kubernetes.default.svc.cluster.local",
    )
    .await;
    assert_eq!(task["state"], "succeeded", "DNS did not resolve:\n{output}");
    assert!(output.contains("10.96.0.1"), "{output}");
    let names = ["dashboard-port", "api-port"];
    let got = probe_from_pod(&client, &outsider, &into_a).await;
    assert_all(&got, &names, false, "another namespace");
    let got = until_all(&names, true, || {
        probe_from_pod(&client, &settings.ingress_namespace, &into_a)
    })
    .await;
    assert_all(&got, &names, true, "the ingress namespace");

    // Without them (and with no operator to put them back), every refusal
    // becomes a connection: each was the policy's.
    operator.stop();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    for ns in [&ns_a, &ns_b] {
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
        policies
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .unwrap();
        eventually_empty(&policies, &format!("the policies of {ns} to be gone"), 30).await;
    }
    let got = until_all(&refused, true, || {
        probe_from_workspace(&api_a, &token_a, &from_a)
    })
    .await;
    assert_all(&got, &refused, true, "workspace A without policies");
    assert_all(&got, &allowed, true, "workspace A without policies");
    let got = until_all(&names, true, || probe_from_pod(&client, &outsider, &into_a)).await;
    assert_all(&got, &names, true, "another namespace without policies");

    // The operator puts them back, and the refusals return.
    operator.start();
    eventually("the operator to restore A's policies", 60, || async {
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns_a);
        (policies
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .len()
            == 3)
            .then_some(())
    })
    .await;
    let got = until_all(&refused, false, || {
        probe_from_workspace(&api_a, &token_a, &from_a)
    })
    .await;
    assert_all(
        &got,
        &refused,
        false,
        "workspace A with its policies restored",
    );
    assert_all(
        &got,
        &allowed,
        true,
        "workspace A with its policies restored",
    );

    // Ranges allowed whole that hold the node and the API server (an
    // internal network, a private host's): the private host now answers,
    // and so does the kubelet on the node; the API server does not, by its
    // Service or at its address.
    let node_range = format!(
        "{}.0/24",
        node_ip.rsplit_once('.').expect("an IPv4 node address").0
    );
    let workspaces: Api<Workspace> = Api::all(client.clone());
    workspaces
        .patch(
            &a,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"network": {"egress": {
                "allowCIDRs": [&node_range, "192.168.255.0/24"]}}}})),
        )
        .await
        .unwrap();
    let got = until_all(&["private"], true, || {
        probe_from_workspace(&api_a, &token_a, &from_a)
    })
    .await;
    let from = format!("workspace A allowing {node_range}");
    assert_all(&got, &["private", "public", "dns", "kubelet"], true, &from);
    assert_all(
        &got,
        &["api-service", "api-endpoint", "metadata"],
        false,
        &from,
    );

    for name in [&a, &b] {
        let _ = workspaces.delete(name, &DeleteParams::default()).await;
    }
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&outsider, &DeleteParams::default())
        .await;
    drop((metadata, private, public));
}
