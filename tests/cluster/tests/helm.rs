//! The Helm chart: `helm lint` and `helm template` pass and render a
//! hardened operator with least-privilege RBAC; `helm install` into the
//! test cluster brings the operator Deployment up (on a fake node), and
//! the real operator binary, running with nothing but the chart's
//! ServiceAccount token, turns a Workspace into a Ready workspace — so the
//! ClusterRole holds all the reconciler needs.
//! Starts: the control plane, helm, the `kube-coder operator` binary.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, PostParams};
use kube_coder_cluster_tests::{
    attrs, chart, client, eventually, install_crd, kube_coder_bin, provide_volume, review,
    run_helm, workspace_json, ws_name,
};
use operator::crd::{Phase, Workspace};
use serde_json::json;

#[test]
fn the_chart_lints_and_renders_a_hardened_least_privilege_operator() {
    run_helm(&["lint", "--strict", chart().to_str().unwrap()]);
    let rendered = run_helm(&[
        "template",
        "kc",
        chart().to_str().unwrap(),
        "-n",
        "kc-system",
    ]);
    let docs: Vec<serde_json::Value> = rendered
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str::<serde_json::Value>(d).ok())
        .filter(|d| d.is_object())
        .collect();
    let of = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };

    let pod = &of("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let sc = &pod["containers"][0]["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(pod["containers"][0]["resources"]["limits"].is_object());

    let rules = of("ClusterRole")["rules"].as_array().unwrap();
    for rule in rules {
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let resources: Vec<&str> = rule["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            !verbs.contains(&"*") && !resources.contains(&"*"),
            "wildcard in {rule}"
        );
        for v in [
            "delete",
            "deletecollection",
            "escalate",
            "bind",
            "impersonate",
        ] {
            assert!(!verbs.contains(&v), "{v} granted in {rule}");
        }
        // Pods: read only (why a workspace's pod waits), never made.
        if resources.contains(&"pods") {
            assert_eq!(resources, ["pods"], "{rule}");
            assert_eq!(verbs, ["list", "watch"], "{rule}");
        }
        for r in [
            "pods/exec",
            "pods/portforward",
            "jobs",
            "clusterroles",
            "clusterrolebindings",
            "nodes",
        ] {
            assert!(!resources.contains(&r), "{r} granted in {rule}");
        }
        // Roles and RoleBindings (an egress gateway's, for its usage
        // ConfigMap): without bind or escalate (checked above), the API
        // server lets the operator grant only what it holds itself.
        if resources.contains(&"roles") || resources.contains(&"rolebindings") {
            assert_eq!(resources, ["roles", "rolebindings"], "{rule}");
        }
    }
}

/// A kubeconfig like the admin's, but authenticating with `token` only.
fn kubeconfig_with_token(token: &str) -> tempfile::NamedTempFile {
    let admin = std::fs::read_to_string(std::env::var("KUBECONFIG").unwrap()).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
    for user in config["users"].as_sequence_mut().unwrap() {
        user["user"] = serde_yaml::to_value(json!({"token": token})).unwrap();
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_yaml::to_string(&config).unwrap()).unwrap();
    file
}

#[tokio::test]
async fn helm_install_brings_the_operator_up_and_its_rbac_is_enough() {
    let client = client().await;
    install_crd(&client).await;
    let ns = "kc-system";
    run_helm(&[
        "install",
        "kc",
        chart().to_str().unwrap(),
        "-n",
        ns,
        "--create-namespace",
        "--set",
        "builds.namespace=kc-builds",
        "--wait",
        "--timeout",
        "2m",
    ]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = deployments.get("kc-operator").await.unwrap();
    assert_eq!(d.status.unwrap().ready_replicas, Some(1));

    // The operator binary with the chart's ServiceAccount and nothing else.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}
    }))
    .unwrap();
    let token = sas
        .create_token_request("kc-operator", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .expect("a token");
    let kubeconfig = kubeconfig_with_token(&token);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut operator = tokio::process::Command::new(kube_coder_bin())
        .args(["operator", "--listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", kubeconfig.path())
        .env("POD_NAMESPACE", ns)
        .env("KUBE_CODER_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let api: Api<Workspace> = Api::all(client.clone());
    let name = ws_name("helm");
    provide_volume(&client, &name).await;
    api.create(
        &PostParams::default(),
        // With models: the chart's RBAC must also cover the gateway's
        // Role and RoleBinding and the API server's EndpointSlice.
        &workspace_json(
            &name,
            json!({"ingress": {"host": format!("{name}.example.com")}, "models": {}}),
        ),
    )
    .await
    .unwrap();
    let ws = eventually(
        "the workspace to be Ready under the chart's RBAC",
        90,
        || async {
            let ws = api.get(&name).await.ok()?;
            (ws.status.as_ref()?.phase == Some(Phase::Ready)).then_some(ws)
        },
    )
    .await;
    let applied = ws
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Applied")
        .unwrap();
    assert_eq!(applied.status, "True", "{}", applied.message);

    // The operator's own metrics endpoint answers; the scraper keeps its
    // connection open (as Prometheus does) through the stop below.
    let scraper = reqwest::Client::new();
    let metrics = scraper
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kube_coder_operator_reconciles_total"),
        "{metrics}"
    );

    let roles: Api<k8s_openapi::api::rbac::v1::Role> =
        Api::namespaced(client.clone(), &format!("ws-{name}"));
    let role = roles.get("egress-gateway").await.unwrap();
    assert_eq!(
        role.rules.unwrap()[0].resource_names.as_deref(),
        Some(&["model-usage".to_string()][..])
    );

    // Build pods: the operator makes, runs in and deletes them in the
    // chart's build namespace (Pod Security privileged) and nowhere else.
    let builds = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .get("kc-builds")
        .await
        .unwrap();
    let labels = builds.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("privileged")
    );
    let me = format!("system:serviceaccount:{ns}:kc-operator");
    for (verb, resource) in [
        ("create", "pods"),
        ("list", "pods"),
        ("delete", "pods"),
        ("create", "secrets"),
        ("delete", "secrets"),
    ] {
        assert!(
            review(&client, &me, ns, attrs("kc-builds", verb, resource, None)).await,
            "{verb} {resource} in kc-builds"
        );
    }
    let exec = k8s_openapi::api::authorization::v1::ResourceAttributes {
        subresource: Some("exec".into()),
        ..attrs("kc-builds", "create", "pods", None)
    };
    assert!(
        review(&client, &me, ns, exec.clone()).await,
        "exec in build pods"
    );
    for elsewhere in [format!("ws-{name}"), "default".to_string(), ns.to_string()] {
        assert!(
            !review(&client, &me, ns, attrs(&elsewhere, "create", "pods", None)).await,
            "create pods in {elsewhere}"
        );
        let exec = k8s_openapi::api::authorization::v1::ResourceAttributes {
            namespace: Some(elsewhere.clone()),
            ..exec.clone()
        };
        assert!(!review(&client, &me, ns, exec).await, "exec in {elsewhere}");
    }

    api.delete(&name, &DeleteParams::default()).await.unwrap();
    // A pod's stop: SIGTERM, and the operator ends by itself, its
    // listeners closed gracefully (an open scraper connection does not
    // hold it up).
    let pid = operator.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), operator.wait())
        .await
        .expect("the operator stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    drop(scraper);
    run_helm(&["uninstall", "kc", "-n", ns, "--wait"]);
}
