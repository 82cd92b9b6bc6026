//! The operator survives a restart of the API server: its watches
//! reconnect, and Workspaces created or changed afterwards converge. In a
//! test binary of its own, since the restart interrupts every client.
//! Starts: the control plane (restarting its API server), the operator
//! in-process.

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube_coder_cluster_tests::{
    client, create_workspace, install_crd, operator_running, wait_phase, ws_name,
};
use operator::crd::{Phase, Workspace};
use serde_json::json;

#[tokio::test]
async fn the_operator_carries_on_after_an_api_server_restart() {
    let client = client().await;
    install_crd(&client).await;
    operator_running();
    let api: Api<Workspace> = Api::all(client.clone());
    let before = ws_name("pre");
    create_workspace(&client, &api, &before, json!({})).await;
    wait_phase(&api, &before, Phase::Ready, 90).await;

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/cluster");
    let out = std::process::Command::new(script)
        .arg("restart-apiserver")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Old and new Workspaces both converge.
    let after = ws_name("post");
    create_workspace(&client, &api, &after, json!({})).await;
    wait_phase(&api, &after, Phase::Ready, 120).await;
    api.patch(
        &before,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"running": false}})),
    )
    .await
    .unwrap();
    wait_phase(&api, &before, Phase::Stopped, 120).await;
    for name in [&before, &after] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
}
