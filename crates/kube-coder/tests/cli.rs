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
        (code, err.contains("/nonexistent/home")),
        (2, true),
        "{err}"
    );
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
