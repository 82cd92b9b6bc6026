//! SSH into a workspace on the real node with the real OpenSSH client,
//! through `kube-coder ssh` (a ProxyCommand over the API server's
//! port-forward; no Service is opened): the Host block from `kube-coder
//! ssh-config`, a command and its exit status, scp both ways, sftp, rsync,
//! git push into a bare repository in the home, `ssh -L` to a server a
//! task started; a key not in
//! `spec.ssh.authorizedKeys` is refused, and one taken out of it stops
//! working without a restart of the workspace.
//! Starts: the control plane with its real node, the operator in-process.

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube_coder_cluster_tests::{
    client, eventually, install_crd, kube_coder_bin, operator_for_real_node, real_node_workspace,
    require_real_node, ws_name,
};
use operator::crd::Workspace;
use serde_json::json;

fn keygen(dir: &Path, name: &str) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(dir.join(name))
        .output()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(out.status.success());
    std::fs::read_to_string(dir.join(format!("{name}.pub")))
        .unwrap()
        .trim()
        .to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn ssh_reaches_a_workspace_through_the_api_server() {
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    operator_for_real_node();
    let dir = tempfile::tempdir().unwrap();
    let alice = keygen(dir.path(), "alice");
    let _bob = keygen(dir.path(), "bob");
    let name = ws_name("ssh");
    let (api, token) =
        real_node_workspace(&client, &name, json!({"ssh": {"authorizedKeys": [alice]}})).await;

    // The Host block, as a user would append it to ~/.ssh/config.
    let out = Command::new(kube_coder_bin())
        .args(["ssh-config", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "{}  IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking accept-new\n  UserKnownHostsFile {}\n",
            text(&out.stdout),
            dir.path().join("known_hosts").display()
        ),
    )
    .unwrap();
    let host = format!("kc-{name}");
    let run = |program: &str, key: &str, args: &[&str]| -> Output {
        Command::new(program)
            .arg("-F")
            .arg(&config)
            .arg("-i")
            .arg(dir.path().join(key))
            .args(args)
            .output()
            .expect("the OpenSSH client runs")
    };

    let out = run(
        "ssh",
        "alice",
        &[&host, "echo \"hello from $(hostname)\"; exit 4"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("hello from workspace-"),
        "{}",
        text(&out.stdout)
    );

    let local = dir.path().join("up.txt");
    std::fs::write(&local, "across the API server\n").unwrap();
    let out = run(
        "scp",
        "alice",
        &[local.to_str().unwrap(), &format!("{host}:up.txt")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let back = dir.path().join("back.txt");
    let out = run(
        "scp",
        "alice",
        &[&format!("{host}:up.txt"), back.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "across the API server\n"
    );

    // sftp: a directory, a file into it, a listing.
    let mut sftp = Command::new("sftp")
        .arg("-F")
        .arg(&config)
        .arg("-i")
        .arg(dir.path().join("alice"))
        .args(["-b", "-", &host])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let batch = format!("mkdir box\nput {} box/put.txt\nls box\n", local.display());
        sftp.stdin
            .take()
            .unwrap()
            .write_all(batch.as_bytes())
            .unwrap();
    }
    let out = sftp.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("box/put.txt"),
        "{}",
        text(&out.stdout)
    );

    // rsync (its server end runs in the workspace image) and git push
    // into a bare repository in the home, each over the same Host block.
    let ssh_line = format!(
        "ssh -F {} -i {}",
        config.display(),
        dir.path().join("alice").display()
    );
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/data.txt"), "synced\n").unwrap();
    let out = Command::new("rsync")
        .args(["-a", "-e", &ssh_line])
        .arg(format!("{}/", tree.display()))
        .arg(format!("{host}:synced/"))
        .output()
        .expect("rsync runs (apt-get install rsync)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run("ssh", "alice", &[&host, "cat synced/sub/data.txt"]);
    assert_eq!(text(&out.stdout), "synced\n", "{}", text(&out.stderr));
    let out = run("ssh", "alice", &[&host, "git init -q --bare repo.git"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&tree)
            .env("GIT_SSH_COMMAND", &ssh_line)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    git(&["push", "-q", &format!("{host}:repo.git"), "main"]);
    let out = run(
        "ssh",
        "alice",
        &[&host, "git --git-dir repo.git show main:sub/data.txt"],
    );
    assert_eq!(text(&out.stdout), "synced\n", "{}", text(&out.stderr));

    // ssh -L to an HTTP server a task started in the workspace.
    let http = reqwest::Client::new();
    let prompt = "cd synced && exec python3 -m http.server --bind 127.0.0.1 8765";
    let task: serde_json::Value = http
        .post(format!("{api}/api/tasks"))
        .bearer_auth(&token)
        .json(&json!({"assistant": "shell", "prompt": prompt}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut tunnel = Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .arg("-i")
        .arg(dir.path().join("alice"))
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("{port}:127.0.0.1:8765"))
        .arg(&host)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let served = eventually("the task's server to answer through ssh -L", 30, || async {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/sub/data.txt"))
            .await
            .ok()?;
        if r.status() == 200 {
            r.text().await.ok()
        } else {
            None
        }
    })
    .await;
    assert_eq!(served, "synced\n");
    let _ = tunnel.kill();
    let _ = tunnel.wait();
    let _ = http
        .delete(format!(
            "{api}/api/tasks/{}",
            task["id"].as_str().unwrap_or_default()
        ))
        .bearer_auth(&token)
        .send()
        .await;

    // bob's key is not listed.
    let out = run("ssh", "bob", &[&host, "true"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );

    // alice's key taken out: refused once the kubelet refreshes the
    // mounted keys, with no restart of the workspace.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &format!("ws-{name}"));
    let pod_names = || async {
        pods.list(&ListParams::default().labels("app.kubernetes.io/name=workspace"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect::<Vec<String>>()
    };
    let before = pod_names().await;
    let workspaces: Api<Workspace> = Api::all(client.clone());
    workspaces
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ssh": {"authorizedKeys": []}}})),
        )
        .await
        .unwrap();
    eventually("alice's key to be refused", 90, || async {
        let out = run("ssh", "alice", &[&host, "true"]);
        (out.status.code() == Some(255) && text(&out.stderr).contains("Permission denied"))
            .then_some(())
    })
    .await;
    assert_eq!(before, pod_names().await, "the workspace pod was replaced");

    let _ = workspaces.delete(&name, &DeleteParams::default()).await;
}
