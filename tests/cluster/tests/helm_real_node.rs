//! The chart on the real node: `helm install` runs the operator from the
//! kube-coder image in a pod (its own probes, the chart's ServiceAccount,
//! the API server through the kubernetes Service), that operator provisions
//! a workspace on the node, and its idle stop spares a workspace while a
//! task runs there, then stops the real pod once it is quiet; a request
//! through the real ingress controller with the workspace's token then
//! wakes it at the chart's waker, and the same request succeeds.
//! Starts: the control plane with its real node, helm; the operator and the
//! workspace run in pods from the images `make test` built. A test binary
//! of its own: no other operator may run beside the chart's.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube_coder_cluster_tests::{
    chart, client, eventually, eventually_empty, install_crd, oauth2_proxy_version, probe_results,
    probe_script, require_real_node, run_helm, run_task, service_url, target, via_ingress, ws_name,
    INGRESS_CLASS, INGRESS_NAMESPACE, REAL_NODE_KEY,
};
use operator::crd::{Phase, Workspace};
use serde_json::{json, Value};

async fn phase(api: &Api<Workspace>, name: &str) -> Option<Phase> {
    api.get(name).await.ok()?.status?.phase
}

#[tokio::test]
async fn the_chart_runs_the_operator_on_the_real_node_and_idle_stop_spares_running_tasks() {
    let client = client().await;
    let node = require_real_node(&client).await;
    install_crd(&client).await;
    let ns = "kcr-system";
    let on_node = json!({REAL_NODE_KEY: "real"}).to_string();
    let tolerate =
        json!([{"key": REAL_NODE_KEY, "operator": "Exists", "effect": "NoSchedule"}]).to_string();
    run_helm(&[
        "install",
        "kcr",
        chart().to_str().unwrap(),
        "-n",
        ns,
        "--create-namespace",
        "--set-json",
        &format!("operator.nodeSelector={on_node}"),
        "--set-json",
        &format!("operator.tolerations={tolerate}"),
        "--set-json",
        &format!("workspace.nodeSelector={on_node}"),
        "--set-json",
        &format!(r#"workspace.tolerations=["{REAL_NODE_KEY}:NoSchedule"]"#),
        "--set",
        "operator.idleCheckSeconds=2",
        "--set",
        "builds.namespace=kcr-builds",
        // The test cluster's ingress controller (hack/node.sh).
        "--set",
        &format!("network.ingressNamespace={INGRESS_NAMESPACE}"),
        "--set",
        &format!("network.ingressClassName={INGRESS_CLASS}"),
        "--set",
        "operator.image.pullPolicy=Never",
        "--set",
        &format!(
            "workspace.oauth2ProxyImage=ghcr.io/kube-coder/oauth2-proxy:{}",
            oauth2_proxy_version()
        ),
        "--wait",
        "--timeout",
        "3m",
    ]);
    // The operator runs on the real node from its image, Ready by its probes.
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = operator_pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("the operator's pod");
    assert_eq!(
        pod.spec.as_ref().unwrap().node_name.as_deref(),
        Some(node.as_str())
    );
    let image = &pod.spec.as_ref().unwrap().containers[0].image;
    assert!(
        image
            .as_deref()
            .is_some_and(|i| i.starts_with("ghcr.io/kube-coder/kube-coder:")),
        "{image:?}"
    );

    // That operator provisions a workspace on the node, with a real home.
    let workspaces: Api<Workspace> = Api::all(client.clone());
    let name = ws_name("chart");
    let ws_ns = format!("ws-{name}");
    let spec: operator::crd::WorkspaceSpec = serde_json::from_value(json!({
        "owner": {"name": name},
        "storage": {"size": "1Gi"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "idle": {"stopAfter": "1m"},
        "ingress": {"host": format!("{name}.ws.test")},
    }))
    .unwrap();
    workspaces
        .create(&PostParams::default(), &Workspace::new(&name, spec))
        .await
        .unwrap();
    eventually(
        "the chart's operator to make the workspace Ready",
        180,
        || async { (phase(&workspaces, &name).await == Some(Phase::Ready)).then_some(()) },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ws_ns);
    let ws_pod = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(
        ws_pod.spec.as_ref().unwrap().node_name.as_deref(),
        Some(node.as_str())
    );

    // A task that runs for a long time keeps the workspace from idling.
    let secret = Api::<Secret>::namespaced(client.clone(), &ws_ns)
        .get("workspace-credentials")
        .await
        .unwrap();
    let token = String::from_utf8(secret.data.unwrap()["api-token"].0.clone()).unwrap();
    let api = service_url(&client, &ws_ns, 6081).await;
    let http = reqwest::Client::new();
    let task: Value = eventually("the api to take a task", 30, || async {
        let r = http
            .post(format!("{api}/api/tasks"))
            .bearer_auth(&token)
            .json(&json!({"assistant": "shell", "prompt": "sleep 900", "name": "long"}))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(r.json().await.ok()?)
    })
    .await;
    let id = task["id"].as_str().unwrap().to_string();
    // The operator reaches the workspace (its idle checks, below), never
    // the other way: the workspace's egress policy refuses the operator's
    // pod (hack/node.sh enforces policies; network_policy.rs shows such a
    // refusal turns into a connection without them).
    let operator_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("the operator pod's address");
    let (output, probe) = run_task(
        &http,
        &api,
        &token,
        &probe_script(&[target("operator", operator_ip, 8080)]),
    )
    .await;
    assert_eq!(probe["state"], "succeeded", "{probe}\n{output}");
    assert_eq!(
        probe_results(&output).get("operator"),
        Some(&false),
        "the workspace reached its operator:\n{output}"
    );
    // No request for longer than stopAfter plus a few checks: only the task.
    tokio::time::sleep(Duration::from_secs(80)).await;
    assert_eq!(
        phase(&workspaces, &name).await,
        Some(Phase::Ready),
        "a workspace with a running task was stopped"
    );
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    // Once the task ends and nobody asks anything, the pod is stopped.
    let r = http
        .delete(format!("{api}/api/tasks/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ws = eventually("the quiet workspace to be stopped", 180, || async {
        let ws = workspaces.get(&name).await.ok()?;
        (ws.status.as_ref()?.phase == Some(Phase::Stopped)).then_some(ws)
    })
    .await;
    assert!(!ws.spec.running, "idle stop sets running: false");
    eventually_empty(&pods, "the workspace pod to be gone", 90).await;

    // Its api host now leads to the chart's waker. A request without the
    // token starts nothing; the same request with it starts the workspace
    // (503 and Retry-After meanwhile), and then succeeds.
    let api_host = format!("{name}-api.ws.test");
    let ingress = via_ingress(&[&api_host]);
    let tasks = || ingress.get(format!("http://{api_host}/api/tasks"));
    let r = eventually("the api host to lead to the waker", 60, || async {
        let r = tasks().send().await.ok()?;
        r.headers().contains_key("x-kube-coder-waker").then_some(r)
    })
    .await;
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !workspaces.get(&name).await.unwrap().spec.running,
        "a request without the token started the workspace"
    );
    let asked = std::time::Instant::now();
    let r = tasks().bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 503, "{:?}", r.text().await);
    assert!(workspaces.get(&name).await.unwrap().spec.running);
    eventually(
        "the woken workspace to answer the same request",
        180,
        || async {
            let r = tasks().bearer_auth(&token).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    println!(
        "idle-stopped workspace woken by a request: answering through the ingress {:.1} s later",
        asked.elapsed().as_secs_f64()
    );

    workspaces
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    run_helm(&["uninstall", "kcr", "-n", ns, "--wait"]);
}
