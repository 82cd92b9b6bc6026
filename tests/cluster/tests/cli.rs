//! The admin CLI against the control plane: `user add` waits for Ready
//! and prints the URL and how to get the token; list, show, token, stop,
//! start, delete (with confirmation), render, doctor, crd; errors are one
//! line that says what to do. Starts: the control plane, the operator
//! in-process, the `kube-coder` binary.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube_coder_cluster_tests::{
    client, eventually, install_crd, kube_coder, operator_running, provide_volume,
    wait_namespace_gone, ws_name,
};
use operator::crd::{Phase, Workspace};

#[tokio::test]
async fn an_admin_onboards_stops_starts_and_removes_a_user() {
    let client = client().await;
    install_crd(&client).await;
    operator_running();
    let name = ws_name("alice");
    provide_volume(&client, &name).await;
    let host = format!("{name}.dev.example.com");
    let (code, out, err) = kube_coder(
        &[
            "user",
            "add",
            &name,
            "--storage",
            "1Gi",
            "--storage-class",
            "kube-coder-test",
            "--host",
            &host,
            "--email",
            "alice@example.com",
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Ready"), "no progress shown: {out}");
    assert!(out.contains(&format!("https://{host}/")), "{out}");
    assert!(out.contains(&format!("kube-coder token {name}")), "{out}");

    let (code, out, _) = kube_coder(&["user", "list"], "").await;
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&name) && l.contains("Ready")),
        "{out}"
    );

    let (code, out, _) = kube_coder(&["user", "show", &name], "").await;
    assert_eq!(code, 0);
    assert!(out.contains("phase:      Ready"), "{out}");

    let (code, token, _) = kube_coder(&["token", &name], "").await;
    assert_eq!(code, 0);
    let secret = Api::<Secret>::namespaced(client.clone(), &format!("ws-{name}"))
        .get("workspace-credentials")
        .await
        .unwrap();
    let stored = String::from_utf8(secret.data.unwrap()["api-token"].0.clone()).unwrap();
    assert_eq!(token.trim(), stored);
    let (code, login, _) = kube_coder(&["token", &name, "--login"], "").await;
    assert_eq!(code, 0);
    assert!(
        login.contains(&format!("user: {name}")) && login.contains("password: "),
        "{login}"
    );

    // Rotation: a new token in the Secret, kept by the operator.
    let (code, rotated, err) = kube_coder(&["token", &name, "--rotate"], "").await;
    assert_eq!(code, 0, "{err}");
    let rotated = rotated.trim().to_string();
    assert_eq!(rotated.len(), 64);
    assert_ne!(rotated, token.trim());
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (_, now, _) = kube_coder(&["token", &name], "").await;
    assert_eq!(now.trim(), rotated, "the operator put the old token back");

    // Adding it again says so.
    let (code, _, err) = kube_coder(&["user", "add", &name, "--no-wait"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Stop and start.
    let (code, out, _) = kube_coder(&["user", "stop", &name], "").await;
    assert_eq!(code, 0, "{out}");
    let api: Api<Workspace> = Api::all(client.clone());
    eventually("the workspace to stop", 60, || async {
        (api.get(&name).await.ok()?.status?.phase == Some(Phase::Stopped)).then_some(())
    })
    .await;
    let (code, out, err) = kube_coder(&["user", "start", &name, "--timeout", "60"], "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Ready"), "{out}");

    // Delete asks to retype the name.
    let (code, _, err) = kube_coder(&["user", "delete", &name], "bob\n").await;
    assert_eq!(code, 1);
    assert!(err.contains("not confirmed"), "{err}");
    assert!(api.get_opt(&name).await.unwrap().is_some());
    let (code, out, err) =
        kube_coder(&["user", "delete", &name, "--purge"], &format!("{name}\n")).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{name}: deleted")), "{out}");
    // "deleted" is printed only once the Workspace is gone.
    assert!(api.get_opt(&name).await.unwrap().is_none());
    wait_namespace_gone(&client, &name, 120).await;
}

#[tokio::test]
async fn unsafe_or_unknown_requests_get_one_clear_line() {
    let client = client().await;
    install_crd(&client).await;
    let (code, _, err) =
        kube_coder(&["user", "add", "pub", "--auth", "none", "--no-wait"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("readOnly"), "{err}");
    let (code, _, err) = kube_coder(&["user", "show", "nobody-here"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = kube_coder(&["token", "nobody-here"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("no credentials"), "{err}");
    let (code, _, err) =
        kube_coder(&["user", "add", "x", "--auth", "oauth2", "--no-wait"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("--oauth2-client-secret"), "{err}");
    // The name is not an identity at the provider: the CLI asks for one.
    let (code, _, err) = kube_coder(
        &[
            "user",
            "add",
            "x",
            "--auth",
            "oauth2",
            "--oauth2-client-secret",
            "gh",
            "--no-wait",
        ],
        "",
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("--github-login") && err.contains("--email"),
        "{err}"
    );
}

#[tokio::test]
async fn doctor_reports_each_check_and_a_missing_cluster_in_one_line() {
    let client = client().await;
    install_crd(&client).await;
    let (code, out, err) = kube_coder(&["doctor"], "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok    API server: reachable, Kubernetes v1.37"),
        "{out}"
    );
    assert!(out.contains("ok    Workspace CRD: installed"), "{out}");
    assert!(out.contains("storage class"), "{out}");
    assert!(out.contains("cert-manager"), "{out}");

    let out = tokio::process::Command::new(kube_coder_cluster_tests::kube_coder_bin())
        .args(["user", "list"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("KUBERNETES_SERVICE_HOST", "")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("KUBECONFIG names /nonexistent/kubeconfig, which does not exist"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn render_prints_the_operators_objects_and_crd_prints_the_checked_in_crd() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "owner: {name: carol}\ningress: {host: carol.dev.example.com}\n",
    )
    .unwrap();
    let (code, out, err) =
        kube_coder(&["render", "carol", "-f", values.to_str().unwrap()], "").await;
    assert_eq!(code, 0, "{err}");
    let docs: Vec<serde_json::Value> = out
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "PersistentVolumeClaim",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "Deployment",
        "Service",
        "Ingress",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(
        !kinds.contains(&"Secret"),
        "secrets are only printed on request"
    );
    // No operator runs these, so no waker: the hosts lead to the workspace.
    for d in docs.iter().filter(|d| d["kind"] == "Ingress") {
        let backend = &d["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
        assert_eq!(backend["name"], "workspace", "{d}");
    }
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "Service" && d["metadata"]["name"] == "waker"),
        "a waker Service with no operator to serve it"
    );
    assert!(
        out.contains("Secret ws-carol/workspace-credentials"),
        "{out}"
    );
    let (_, with, _) = kube_coder(
        &[
            "render",
            "carol",
            "-f",
            values.to_str().unwrap(),
            "--with-secrets",
        ],
        "",
    )
    .await;
    assert!(with.contains("kind: Secret"));

    std::fs::write(
        &values,
        "owner: {name: carol}\nauht: {type: none}\ningress: {host: a.example.com, hots: b}\n",
    )
    .unwrap();
    let (code, _, err) = kube_coder(&["render", "carol", "-f", values.to_str().unwrap()], "").await;
    assert_eq!(code, 2);
    assert!(err.contains("unknown keys: auht, ingress.hots"), "{err}");

    std::fs::write(&values, "owner: {name: carol}\nauth: {type: none}\n").unwrap();
    let (code, _, err) = kube_coder(&["render", "carol", "-f", values.to_str().unwrap()], "").await;
    assert_eq!(code, 2);
    assert!(err.contains("readOnly"), "{err}");

    let (code, crd, _) = kube_coder(&["crd"], "").await;
    assert_eq!(code, 0);
    let checked_in = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(operator::CRD_PATH),
    )
    .unwrap();
    assert_eq!(crd, checked_in);
}
