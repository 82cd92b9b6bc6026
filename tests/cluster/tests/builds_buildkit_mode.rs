//! `build.mode: buildkit` on the real node: the workspace pod gets its own
//! BuildKit beside it, never privileged (root of the pod's own user
//! namespace, `hostUsers: false`, `CAP_SYS_ADMIN` there only), its
//! namespace admitting that pod and no more (Pod Security `privileged`
//! enforced because of the acknowledgement, `baseline` warned), and
//! `kube-coder build` in the workspace builds there and pushes with the
//! user's own credentials; a `RUN` step is held to the workspace's
//! NetworkPolicy (a host in a private range stays out of reach).
//! Starts: a registry on the node's address (the workspace may reach it
//! by `allowCIDRs`), a test host at a private address, the operator
//! in-process.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use kube_coder_cluster_tests::builds::operator_with_builds;
use kube_coder_cluster_tests::registry::start_registry;
use kube_coder_cluster_tests::test_host::TestHost;
use kube_coder_cluster_tests::{
    answer_of, answers, client, install_crd, real_node_address, real_node_workspace,
    require_real_node, run_task_within, ws_name,
};
use serde_json::json;

#[tokio::test]
async fn a_workspace_in_buildkit_mode_builds_in_its_own_pod_and_pushes_with_its_own_login() {
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    let node = real_node_address(&client).await;
    let (creds, _) = operator::manifests::credentials::Credentials::keep_or_generate("me", None);
    let registry = start_registry(&node, &creds.htpasswd).await;
    operator_with_builds(&client, &node, &registry).await;
    let _private = TestHost::start("private", Ipv4Addr::new(192, 168, 255, 10), 80);
    let base = format!("{}/team/base:1", registry.addr);
    registry.push_from_node("ghcr.io/kube-coder/busybox:1", &base, "me", &creds.password);

    let name = ws_name("bkit");
    let ns = format!("ws-{name}");
    let (api, token) = real_node_workspace(
        &client,
        &name,
        json!({
            "build": {"mode": "buildkit", "acknowledgeBuildkitRisk": true},
            "network": {"egress": {"allowCIDRs": [format!("{node}/32")]}},
        }),
    )
    .await;

    // The pod: its own users, an unprivileged builder beside the workspace.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=workspace"))
        .await
        .unwrap()
        .items
        .remove(0);
    let spec = pod.spec.unwrap();
    assert_eq!(spec.host_users, Some(false));
    assert!(spec.containers.iter().any(|c| c.name == "buildkit"));
    assert!(spec.containers.iter().all(|c| c
        .security_context
        .as_ref()
        .is_some_and(|s| s.privileged != Some(true))));
    let labels = Api::<Namespace>::all(client.clone())
        .get(&ns)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");
    assert_eq!(labels["pod-security.kubernetes.io/warn"], "baseline");

    // In the workspace: the user's own login, then a build.
    let tag = format!("{}/team/mine:1", registry.addr);
    let config = registry.docker_config("me", &creds.password);
    let script = format!(
        "mkdir -p ~/.docker ~/img && cd ~/img\n\
         cat > ~/.docker/config.json <<'EOF'\n{config}\nEOF\n\
         cat > Containerfile <<'EOF'\n\
         FROM {base}\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox nc -w 3 192.168.255.10 80 </dev/null >/dev/null 2>&1 && echo step-private=open || echo step-private=closed\"]\n\
         EOF\n\
         for i in $(seq 60); do [ -S /run/buildkit/buildkitd.sock ] && break; sleep 1; done\n\
         kube-coder build -t {tag} . > /tmp/build.out 2> /tmp/build.err\n\
         echo \"answer-code: $?\"\n\
         echo \"answer-image: $(cat /tmp/build.out)\"\n\
         echo \"answer-private: $(grep -E '^#[0-9]+ [0-9.]+ step-private=' /tmp/build.err | grep -o 'step-private=[a-z]*')\"\n\
         tail -5 /tmp/build.err\n"
    );
    let http = reqwest::Client::new();
    let (output, task) = run_task_within(&http, &api, &token, &script, 300).await;
    assert_eq!(task["state"], "succeeded", "{task}\n{output}");
    let got = answers(&output);
    let answer = |k: &str| answer_of(&got, k, &output);
    assert_eq!(answer("code"), "0", "{output}");
    let digest = answer("image")
        .strip_prefix(&format!("{}/team/mine@", registry.addr))
        .unwrap_or_else(|| panic!("kube-coder build printed {output}"))
        .to_string();
    assert_eq!(
        answer("private"),
        "step-private=closed",
        "a step has the workspace's network: {output}"
    );
    // In the registry, under that digest.
    assert_eq!(
        registry
            .digest_of("team/mine", "1", "me", &creds.password)
            .await,
        Some(digest)
    );

    let workspaces: Api<operator::crd::Workspace> = Api::all(client.clone());
    let _ = workspaces.delete(&name, &Default::default()).await;
}
