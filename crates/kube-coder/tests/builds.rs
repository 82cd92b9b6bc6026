//! `kube-coder build` run in a workspace's task goes through its server:
//! a workspace that builds through the operator puts its API and token
//! file in every session's environment, and the CLI posts there (so the
//! server keeps the build in its history) rather than to the operator
//! directly. No operator runs here (the builds themselves are proved on
//! the test cluster, `tests/cluster/tests/builds_in_pod.rs`): the server
//! answers that it cannot reach it, which the CLI reports.

mod common;

use common::Workspace;
use serde_json::json;

#[tokio::test]
async fn kube_coder_build_in_a_task_goes_through_the_workspace_server() {
    let dir = tempfile::tempdir().unwrap();
    // As the operator wires a workspace that builds: in the environment.
    let env = common::build_env(dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ws = Workspace::start_env(&[], &env).await;
    let script = format!(
        "echo \"local=$KUBE_CODER_LOCAL_API\"\n\
         test -s \"$KUBE_CODER_LOCAL_API_TOKEN_FILE\" && echo token-file=readable\n\
         mkdir -p ctx && printf 'FROM scratch\\n' > ctx/Containerfile\n\
         HTTP_PROXY=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 {kc} build -t r.io/team/app:1 ctx; echo \"exit=$?\"\n",
        kc = env!("CARGO_BIN_EXE_kube-coder")
    );
    let t = ws
        .create(json!({"assistant": "shell", "prompt": script}))
        .await;
    let id = t["id"].as_str().unwrap();
    let out = ws.wait_output(id, "exit=").await;
    assert!(out.contains(&format!("local={}", ws.api)), "{out}");
    assert!(out.contains("token-file=readable"), "{out}");
    assert!(out.contains("to the workspace server"), "{out}");
    // The server's answer, relayed (a workspace's proxy variables, here a
    // dead one, are not used): it could not reach the operator.
    assert!(out.contains("refused (502"), "{out}");
    assert!(out.contains("exit=1"), "{out}");

    // A workspace that does not build tells its sessions nothing of it.
    let plain = Workspace::start(&[]).await;
    let t = plain
        .create(json!({"assistant": "shell", "prompt": "echo \"local=[$KUBE_CODER_LOCAL_API]\""}))
        .await;
    plain
        .wait_output(t["id"].as_str().unwrap(), "local=[]")
        .await;
}
