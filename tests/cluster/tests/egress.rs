//! Egress by name on the real node: a Workspace with
//! `network.egress.allowDomains` gets its own egress gateway, and from
//! inside the workspace pod (tasks over its API) curl and git reach a
//! listed name through it (names from cluster DNS, a public-range test
//! host); a name off the list, a raw address and a listed name that
//! resolves to a private address are refused with a message naming the
//! rule; a connection that skips the proxy is dropped by the policy. A name
//! added to the list works without restarting anything, and the gateway
//! lists and counts its refusals. Ranges allowed whole open a private host
//! but never the API server, even by a listed name.
//! Starts: the control plane with its real node (kube-router enforcing
//! policies, CoreDNS knowing `*.egress.test`), the operator in-process,
//! two test hosts; the workspace and its gateway run from the images
//! `make test` built.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube_coder_cluster_tests::builds::egress_gateway_ready;
use kube_coder_cluster_tests::test_host::TestHost;
use kube_coder_cluster_tests::{
    answer_of, answers, apiserver_port, bare_repository, client, eventually, git, install_crd,
    operator_for_real_node, real_node_address, real_node_workspace, require_real_node, run_task,
    ws_name,
};
use operator::crd::Workspace;
use serde_json::{json, Value};

/// A repository served by git's dumb HTTP protocol from the host's root.
fn serve_repository(host: &TestHost) {
    let bare = host.root().join("repo.git");
    bare_repository(&bare, "cloned through the gateway\n");
    git(&bare, &["update-server-info"]);
}

/// A curl through the workspace's proxy variables; prints its body and
/// status, or its failure.
fn curl_line(name: &str, args: &str) -> String {
    format!(
        "echo \"answer-{name}: $(curl -sS -m 10 -w ' status=%{{http_code}}' {args} 2>&1 | tr '\\n' ' ')\"\n"
    )
}

#[tokio::test]
async fn a_workspace_reaches_listed_names_only_through_its_gateway() {
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    operator_for_real_node();

    let public = TestHost::start("public", Ipv4Addr::new(11, 22, 33, 44), 80);
    let _private = TestHost::start("private", Ipv4Addr::new(192, 168, 255, 10), 80);
    serve_repository(&public);

    let name = ws_name("egress");
    let ns = format!("ws-{name}");
    let workspaces: Api<Workspace> = Api::all(client.clone());
    let (api, token) = real_node_workspace(
        &client,
        &name,
        json!({"network": {"egress": {"allowDomains": ["public.egress.test", "private.egress.test"]}}}),
    )
    .await;
    let http = reqwest::Client::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let gateway_ip = egress_gateway_ready(&client, &ns).await;
    let workspace_pod = |pods: Vec<Pod>| {
        pods.into_iter()
            .find(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app.kubernetes.io/name"))
                    .map(String::as_str)
                    == Some("workspace")
            })
            .expect("the workspace pod")
    };
    let before = workspace_pod(pods.list(&ListParams::default()).await.unwrap().items);

    let mut script = String::new();
    script.push_str(&curl_line("listed", "http://public.egress.test/"));
    script.push_str(&curl_line("listed-tunnel", "-p http://public.egress.test/"));
    script.push_str(&curl_line("off-list", "http://other.egress.test/"));
    script.push_str(&curl_line("address", "http://11.22.33.44/"));
    script.push_str(&curl_line("private", "http://private.egress.test/"));
    script.push_str(&curl_line(
        "bypass",
        "--noproxy '*' -m 5 http://11.22.33.44/",
    ));
    script.push_str(
        "echo \"answer-git: $(git clone -q http://public.egress.test/repo.git /tmp/clone 2>&1 && cat /tmp/clone/README)\"\n",
    );
    let (output, task) = run_task(&http, &api, &token, &script).await;
    assert_eq!(task["state"], "succeeded", "{task}\n{output}");
    let got = answers(&output);
    let answer = |k: &str| answer_of(&got, k, &output);
    assert_eq!(answer("listed"), "public  status=200", "{output}");
    assert_eq!(answer("listed-tunnel"), "public  status=200", "{output}");
    assert!(
        answer("off-list").contains("other.egress.test:80 is not on this workspace's egress allow list (spec.network.egress.allowDomains)")
            && answer("off-list").ends_with("status=403"),
        "{output}"
    );
    assert!(
        answer("address").contains("11.22.33.44 is an IP address")
            && answer("address").ends_with("status=403"),
        "{output}"
    );
    assert!(
        answer("private")
            .contains("private.egress.test resolves to 192.168.255.10, which is private")
            && answer("private").ends_with("status=403"),
        "{output}"
    );
    // Skipping the proxy gets nowhere: the policy lets the pod reach DNS
    // and its gateway only.
    assert!(answer("bypass").contains("status=000"), "{output}");
    assert_eq!(answer("git"), "cloned through the gateway", "{output}");

    // The gateway keeps the refusals for the dashboard, and counts them.
    // (This host reaches the pod: the node may reach its own pods.)
    let refusals: Value = reqwest::get(format!("http://{gateway_ip}:3129/refusals"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hosts: Vec<&str> = refusals["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        hosts,
        ["private.egress.test", "11.22.33.44", "other.egress.test"]
    );
    let metrics = reqwest::get(format!("http://{gateway_ip}:3129/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"egress_requests_total{decision="refused_not_listed"} 1"#),
        "{metrics}"
    );

    // A name added to the list (it leads to the public host too): the
    // running gateway takes it (the kubelet
    // refreshes the mounted list), and nothing restarts.
    workspaces
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"network": {"egress": {"allowDomains":
                ["public.egress.test", "private.egress.test", "other.egress.test"]}}}})),
        )
        .await
        .unwrap();
    let check = curl_line("off-list", "http://other.egress.test/");
    eventually("the gateway to allow the added name", 150, || async {
        let (output, _) = run_task(&http, &api, &token, &check).await;
        (answers(&output).get("off-list").map(String::as_str) == Some("public  status=200"))
            .then_some(())
    })
    .await;
    let after = workspace_pod(pods.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(
        before.metadata.uid, after.metadata.uid,
        "the workspace pod was replaced"
    );

    // Ranges allowed whole that hold the private host and the API server's
    // host, and the API server's name listed: the gateway (restarted with
    // the new ranges) reaches the private host, never the API server.
    let node_ip = real_node_address(&client).await;
    let node_range = format!(
        "{}.0/24",
        node_ip.rsplit_once('.').expect("an IPv4 node address").0
    );
    let control = format!("apiserver.egress.test:{}", apiserver_port().await);
    workspaces
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"network": {"egress": {
                "allowDomains": ["public.egress.test", "private.egress.test", &control],
                "allowCIDRs": [&node_range, "192.168.255.0/24"]}}}})),
        )
        .await
        .unwrap();
    let check = curl_line("private", "http://private.egress.test/")
        + &curl_line("apiserver", &format!("http://{control}/"));
    let got = eventually("the gateway to allow the private range", 150, || async {
        let (output, _) = run_task(&http, &api, &token, &check).await;
        let got = answers(&output);
        (got.get("private").map(String::as_str) == Some("private  status=200")).then_some(got)
    })
    .await;
    let answer = &got["apiserver"];
    assert!(
        answer.contains(&format!("resolves to {node_ip}, the cluster's API server"))
            && answer.ends_with("status=403"),
        "{got:?}"
    );

    let _ = workspaces.delete(&name, &DeleteParams::default()).await;
}
