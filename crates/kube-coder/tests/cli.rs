//! The command line: refused configurations, the config file and its
//! precedence, missing tools. Starts: `kube-coder serve` where needed.

mod common;

use std::process::Command;

use common::{bin, Workspace};

fn serve_fails(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("serve").arg("--data-dir").arg(dir.path().join("d"));
    if !args.contains(&"--home") {
        cmd.arg("--home").arg(dir.path());
    }
    let out = cmd
        .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn public_writable_workspace_is_refused_with_exit_2_and_one_line() {
    let (code, err) = serve_fails(&["--auth", "none"], &[]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--read-only"), "{err}");
    // The same through the environment.
    let (code, _) = serve_fails(&[], &[("KUBE_CODER_AUTH", "none")]);
    assert_eq!(code, 2);
}

#[test]
fn other_refusals_name_the_fix() {
    let (code, err) = serve_fails(&["--auth", "basic"], &[]);
    assert_eq!((code, err.contains("--htpasswd-file")), (2, true), "{err}");
    let (code, err) = serve_fails(&["--auth", "saml"], &[]);
    assert_eq!((code, err.contains("saml")), (2, true), "{err}");
    let (code, err) = serve_fails(&["--max-tasks", "0"], &[]);
    assert_eq!((code, err.contains("--max-tasks")), (2, true), "{err}");
    let (code, err) = serve_fails(&["--home", "/nonexistent/home"], &[]);
    assert_eq!(
        (
            code,
            err.contains("/nonexistent/home") && err.contains("mkdir -p")
        ),
        (2, true),
        "{err}"
    );
}

/// `make run ARGS="--home ~/code"` on a machine without `~/code`.
#[tokio::test]
async fn a_missing_home_whose_parent_exists_is_created() {
    let parent = tempfile::tempdir().unwrap();
    let home = parent.path().join("code");
    let ws = Workspace::start(&["--home", home.to_str().unwrap()]).await;
    assert!(home.is_dir());
    let listing: serde_json::Value = ws
        .client
        .get(format!("{}/api/files?path=", ws.api))
        .bearer_auth(&ws.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["entries"], serde_json::json!([]), "{listing}");
    let err = std::fs::read_to_string(ws.dir.path().join("server.log")).unwrap();
    assert!(err.contains("created the home directory"), "{err}");
}

#[test]
fn missing_tmux_is_one_line_with_the_install_command() {
    let (code, err) = serve_fails(&[], &[("PATH", "/nonexistent")]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("apt-get install tmux"), "{err}");
}

#[test]
fn unknown_config_file_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "max-taskz = 3\n").unwrap();
    let (code, err) = serve_fails(&["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("max-taskz"), "{err}");
}

#[test]
fn help_documents_every_flag_with_its_environment_variable() {
    let out = Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data-dir",
        "--home",
        "--listen",
        "--api-listen",
        "--auth",
        "--read-only",
        "--api-token-file",
        "--trusted-proxy-cidrs",
        "--max-tasks",
        "--assistants-config",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.contains("KUBE_CODER_MAX_TASKS") && help.contains("TRUSTED_PROXY"));
}

async fn whoami(ws: &Workspace) -> serde_json::Value {
    ws.api_get("/api/whoami").await.1
}

#[tokio::test]
async fn config_file_applies_and_env_then_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kube-coder.toml");
    std::fs::write(&cfg, "auth = \"none\"\nread-only = true\nmax-tasks = 1\n").unwrap();
    let c = cfg.to_str().unwrap();

    let ws = Workspace::start(&["--config", c]).await;
    let v = whoami(&ws).await;
    assert_eq!(
        (v["auth_mode"].as_str(), v["read_only"].as_bool()),
        (Some("none"), Some(true))
    );
    drop(ws);

    // The environment beats the file.
    let ws = Workspace::start_env(&["--config", c], &[("KUBE_CODER_AUTH", "token")]).await;
    assert_eq!(whoami(&ws).await["auth_mode"], "token");
    drop(ws);

    // Flags beat both.
    let ws = Workspace::start_env(
        &["--config", c, "--auth", "token"],
        &[("KUBE_CODER_AUTH", "none")],
    )
    .await;
    assert_eq!(whoami(&ws).await["auth_mode"], "token");
    // max-tasks = 1 from the file applies: the second task is refused.
    std::fs::write(&cfg, "max-tasks = 1\n").unwrap();
    drop(ws);
    let ws = Workspace::start(&["--config", c]).await;
    ws.create_fake().await;
    let (s, _) = ws.api_post("/api/tasks", serde_json::json!({})).await;
    assert_eq!(s, 429);
}

/// Every refused configuration exits 2 with a line that names it: htpasswd
/// files that are missing or use a weak scheme, listen addresses people
/// write by hand, and both listeners on one port.
#[test]
fn refused_configurations_exit_2_and_listen_addresses_read_as_people_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let md5 = dir.path().join("md5.htpasswd");
    std::fs::write(&md5, "alice:$apr1$abc$def\n").unwrap();
    for (file, says) in [
        (dir.path().join("no-such-file"), "cannot read htpasswd"),
        (md5.clone(), "bcrypt"),
    ] {
        let arg = format!("--htpasswd-file={}", file.display());
        let (code, err) = serve_fails(&["--auth", "basic", &arg], &[]);
        assert_eq!((code, err.contains(says)), (2, true), "{err}");
    }
    let run = |listen: &str, api: &str| {
        let out = Command::new(bin())
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("d"))
            .arg("--home")
            .arg(dir.path())
            .args(["--listen", listen, "--api-listen", api, "--auth", "none"])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("7480x", "127.0.0.1:0");
    assert_eq!(code, 2);
    assert!(
        err.contains("`7480x` is not a listen address") && err.contains(":7480"),
        "{err}"
    );
    let (code, err) = run("127.0.0.1:7481", ":7481");
    assert_eq!(code, 2);
    assert!(err.contains("same port"), "{err}");
    // Both short forms are understood: the next refusal is --auth none's.
    let (code, err) = run("7482", "localhost:7483");
    assert_eq!(code, 2);
    assert!(err.contains("--read-only"), "{err}");
}

/// Switches are switches, and environment names follow one rule with the
/// original two names kept as aliases.
#[tokio::test]
async fn switches_work_alone_and_the_old_environment_names_still_work() {
    let hook = serde_json::json!({"assistant": "shell", "prompt": "true",
        "hook": {"url": "http://127.0.0.1:9/done"}});
    let ws = Workspace::start(&["--allow-internal-hooks"]).await;
    let (s, v) = ws.api_post("/api/tasks", hook.clone()).await;
    assert_eq!(s, 201, "--allow-internal-hooks alone: {v}");
    for name in ["KUBE_CODER_ALLOW_INTERNAL_HOOKS", "ALLOW_INTERNAL_HOOKS"] {
        let ws = Workspace::start_env(&[], &[(name, "true")]).await;
        let (s, v) = ws.api_post("/api/tasks", hook.clone()).await;
        assert_eq!(s, 201, "{name}: {v}");
    }
    let ws = Workspace::start(&[]).await;
    let (s, v) = ws.api_post("/api/tasks", hook).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("hook_refused")), "{v}");
}

/// A token made by a start that failed before printing it is printed by
/// the next start (once), and `kube-coder token --local` prints it any time.
#[test]
fn the_token_is_shown_once_even_after_a_failed_start_and_token_local_prints_it() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let serve = |api: &str| {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--home")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--api-listen", api])
            .env_remove("KUBE_CODER_CONFIG")
            .env("HOME", dir.path());
        cmd
    };
    let out = serve(&busy_addr).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = std::fs::read_to_string(data.join("api-token"))
        .unwrap()
        .trim()
        .to_string();
    // The next start prints it; the one after only says where it is.
    for shown in [true, false] {
        let mut child = serve("127.0.0.1:0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("api token:"))
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(line.contains(&token), shown, "{line}");
    }
    let out = Command::new(bin())
        .args(["token", "--local", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), token);
    let out = Command::new(bin())
        .args(["token", "--local", "--data-dir"])
        .arg(dir.path().join("elsewhere"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("kube-coder serve") && err.lines().count() == 1,
        "{err}"
    );
    for socket in workspace::tasks::tmux::shard_sockets(&data.join("tmux.sock")) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(socket)
            .arg("kill-server")
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Without a usable kubeconfig the admin commands say which file they
/// tried and what is wrong with it, in one line (not kube's nested dump).
#[test]
fn a_missing_or_broken_kubeconfig_is_named_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken");
    std::fs::write(&broken, "just some text\n").unwrap();
    let run = |env: &[(&str, &std::ffi::OsStr)]| {
        let out = Command::new(bin())
            .args(["user", "list"])
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("in-cluster"), "{err}");
        err
    };
    let err = run(&[("KUBECONFIG", broken.as_os_str())]);
    assert!(
        err.contains("is not a kubeconfig file") && err.contains("YAML"),
        "{err}"
    );
    let err = run(&[("HOME", dir.path().as_os_str())]);
    assert!(
        err.contains("KUBECONFIG is not set") && err.contains(".kube/config does not exist"),
        "{err}"
    );
}
