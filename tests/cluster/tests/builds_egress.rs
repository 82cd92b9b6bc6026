//! A build for a workspace whose egress goes by name reaches out as the
//! workspace does, through the workspace's own egress gateway: a `RUN`
//! step reaches a listed name through the proxy the build gets, is
//! refused a name off the list with the gateway's message, and cannot
//! connect anywhere directly (the build pod's policy allows DNS, the
//! plain-HTTP registry and that gateway only); the push still goes
//! through. Proved on the real node with the workspace's server in a real
//! pod (`POST /api/builds`).
//! Starts: a public-range test host (`public.egress.test` and
//! `other.egress.test` in the cluster's DNS), a registry, the operator
//! in-process with its builds endpoint on the node's address.

use std::net::Ipv4Addr;

use kube_coder_cluster_tests::builds::{egress_gateway_ready, operator_with_builds, post_build};
use kube_coder_cluster_tests::registry::{apply_docker_secret, start_registry};
use kube_coder_cluster_tests::test_host::TestHost;
use kube_coder_cluster_tests::{
    apply_namespace, client, install_crd, real_node_address, real_node_workspace,
    require_real_node, tar_of, ws_name,
};
use serde_json::json;

#[tokio::test]
async fn a_build_of_a_workspace_whose_egress_goes_by_name_goes_through_its_gateway_only() {
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    let public = TestHost::start("public", Ipv4Addr::new(11, 22, 33, 44), 80);
    std::fs::write(public.root().join("hello.txt"), "through the gateway\n").unwrap();
    let node = real_node_address(&client).await;
    let (creds, _) =
        operator::manifests::credentials::Credentials::keep_or_generate("pusher", None);
    let registry = start_registry(&node, &creds.htpasswd).await;
    let operator = operator_with_builds(&client, &node, &registry).await;
    let settings = operator.settings();

    apply_namespace(&client, &settings.operator_namespace).await;
    let name = ws_name("bego");
    let push = format!("push-{name}");
    let config = registry.docker_config("pusher", &creds.password);
    apply_docker_secret(&client, &settings.operator_namespace, &push, &config).await;
    let base = format!("{}/team/base:1", registry.addr);
    registry.push_from_node(
        "ghcr.io/kube-coder/busybox:1",
        &base,
        "pusher",
        &creds.password,
    );
    let (api, token) = real_node_workspace(
        &client,
        &name,
        json!({
            "build": {"registries": [format!("{}/team/", registry.addr)], "pushSecret": push},
            "network": {"egress": {"allowDomains": ["public.egress.test"]}},
        }),
    )
    .await;
    egress_gateway_ready(&client, &format!("ws-{name}")).await;

    // Each probe prints `step-NAME=…`. The requests go to the proxy the
    // step's environment names, as a tool would send them (the image's
    // static busybox wget cannot resolve names, so nc speaks HTTP; its
    // input stays open until the answer is in).
    let via_proxy = |host: &str, path: &str, line: &str| {
        format!(
            "{{ printf 'GET http://{host}{path} HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n'; /bin/busybox sleep 5; }} | /bin/busybox nc -w 5 $p_host $p_port | /bin/busybox tr -d '\\r' | /bin/busybox {line}"
        )
    };
    let probes = [
        "p=${http_proxy#http://}; p_host=${p%:*}; p_port=${p##*:}".to_string(),
        format!(
            "echo step-listed=$({})",
            via_proxy("public.egress.test", "/hello.txt", "tail -1")
        ),
        format!(
            "echo step-off-list=$({})",
            via_proxy("other.egress.test", "/", "head -1")
        ),
        "/bin/busybox nc -w 4 11.22.33.44 80 </dev/null >/dev/null 2>&1 && echo step-direct=open || echo step-direct=closed".into(),
        "/bin/busybox nc -w 4 10.96.0.1 443 </dev/null >/dev/null 2>&1 && echo step-api=open || echo step-api=closed".into(),
    ]
    .join("; ");
    let containerfile = format!(
        "FROM {base}\nARG NONCE\nRUN [\"/bin/busybox\", \"sh\", \"-c\", {}]\n",
        serde_json::to_string(&probes).unwrap()
    );
    let context = tar_of(&[("Containerfile", &containerfile)]);
    let tag = format!("{}/team/probe:1", registry.addr);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("{api}/api/builds?tag={tag}&file=Containerfile&build-arg=NONCE={nonce}");
    let (status, lines) = post_build(&url, &token, context).await;
    assert_eq!(status, 200, "{lines:?}");
    let log: Vec<&str> = lines.iter().filter_map(|l| l["log"].as_str()).collect();
    let step = |name: &str| {
        let key = format!("step-{name}=");
        // Not the step's own command line, which names them all.
        log.iter()
            .filter(|l| !l.contains("RUN ["))
            .find_map(|l| Some(l[l.find(&key)? + key.len()..].to_string()))
            .unwrap_or_else(|| panic!("no {key} in the log:\n{}", log.join("\n")))
    };
    assert!(
        lines.iter().any(|l| l.get("done").is_some()),
        "the push goes through: {lines:#?}"
    );
    assert_eq!(step("listed"), "through the gateway", "{log:#?}");
    assert!(
        step("off-list").contains("403"),
        "a name off the list is refused by the gateway: {log:#?}"
    );
    assert_eq!(step("direct"), "closed", "{log:#?}");
    assert_eq!(step("api"), "closed", "{log:#?}");

    let workspaces: kube::Api<operator::crd::Workspace> = kube::Api::all(client.clone());
    let _ = workspaces.delete(&name, &Default::default()).await;
    let _ = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .delete(&settings.build_namespace, &Default::default())
        .await;
}
