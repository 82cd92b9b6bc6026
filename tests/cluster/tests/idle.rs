//! Idle stop: a running workspace whose server reports no HTTP activity
//! and no live task for `idle.stopAfter` is stopped by the operator, which
//! says so in the status and an event. The workspace pod is fake (kwok),
//! so a real `kube-coder serve` runs here with the workspace's token, at
//! the activity URL the test operator is configured with.
//! Starts: the control plane, the operator in-process, `kube-coder serve`, tmux.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube_coder_cluster_tests::{
    client, eventually, install_crd, kube_coder_bin, operator_running, provide_volume,
    workspace_json, ws_name,
};
use operator::crd::{Phase, Workspace};
use serde_json::json;

#[tokio::test]
async fn a_quiet_workspace_is_stopped_after_its_idle_limit() {
    let client = client().await;
    install_crd(&client).await;
    let op = operator_running();
    let api: Api<Workspace> = Api::all(client.clone());
    let name = ws_name("idle");
    provide_volume(&client, &name).await;
    api.create(
        &PostParams::default(),
        &workspace_json(&name, json!({"idle": {"stopAfter": "1m"}})),
    )
    .await
    .unwrap();
    eventually("the workspace to be Ready", 90, || async {
        (api.get(&name).await.ok()?.status?.phase == Some(Phase::Ready)).then_some(())
    })
    .await;

    // The workspace server, with the token the operator generated.
    let secret = Api::<Secret>::namespaced(client.clone(), &format!("ws-{name}"))
        .get("workspace-credentials")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &secret.data.unwrap()["api-token"].0).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let mut server = tokio::process::Command::new(kube_coder_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(format!("--api-listen=127.0.0.1:{}", op.activity_port))
        .arg(format!("--api-token-file={}", token_file.display()))
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--home={}", home.display()))
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let started = std::time::Instant::now();
    let ws = eventually("the idle workspace to be stopped", 150, || async {
        let ws = api.get(&name).await.ok()?;
        (!ws.spec.running).then_some(ws)
    })
    .await;
    assert!(
        started.elapsed().as_secs() >= 55,
        "stopped after {:?}, before its limit",
        started.elapsed()
    );
    assert!(ws.status.unwrap().last_activity.is_some());
    eventually("the workspace to be Stopped", 60, || async {
        (api.get(&name).await.ok()?.status?.phase == Some(Phase::Stopped)).then_some(())
    })
    .await;
    let events: Api<Event> = Api::all(client.clone());
    let said = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("IdleStopped")
                && e.regarding.and_then(|r| r.name).as_deref() == Some(name.as_str())
        });
    assert!(said, "no IdleStopped event");
    let _ = server.kill().await;
    api.delete(&name, &DeleteParams::default()).await.unwrap();
}
