//! Restart safety: the server is killed with SIGKILL while tasks run and
//! started again on the same data dir. Starts: `kube-coder serve`, tmux.

mod common;

use std::time::Duration;

use common::Workspace;
use serde_json::json;

#[tokio::test]
async fn a_task_survives_kill_9_of_the_server_and_ends_with_its_exit_code() {
    let mut ws = Workspace::start(&[]).await;
    let id = ws.create_fake().await;
    ws.say(&id, "before the crash").await;
    ws.wait_output(&id, "you said: before the crash").await;

    ws.crash();
    // While the server is down the task keeps running and its output is kept.
    let session = format!("=kc-{id}");
    assert!(ws.tmux(&["has-session", "-t", &session]).status.success());
    let out = ws.tmux(&[
        "send-keys",
        "-t",
        &format!("{session}:"),
        "-l",
        "typed while down",
    ]);
    assert!(out.status.success());
    ws.tmux(&["send-keys", "-t", &format!("{session}:"), "Enter"]);

    ws.spawn().await;
    let (s, t) = ws.api_get(&format!("/api/tasks/{id}")).await;
    assert_eq!(s, 200);
    assert!(
        t["state"] == "running" || t["state"] == "waiting_for_input",
        "{t}"
    );
    ws.wait_output(&id, "you said: typed while down").await;
    // Re-attached: messages, streams and the exit record all work again.
    ws.say(&id, "after the restart").await;
    ws.wait_output(&id, "you said: after the restart").await;
    ws.say(&id, "exit 5").await;
    let done = ws.wait_state(&id, "failed").await;
    assert_eq!(done["exit_code"], 5);
}

#[tokio::test]
async fn exits_and_vanished_sessions_while_down_are_recorded_on_start() {
    let mut ws = Workspace::start(&[]).await;
    let ends_ok = ws.create_fake().await;
    let ends_bad = ws.create_fake().await;
    let vanishes = ws.create_fake().await;
    for id in [&ends_ok, &ends_bad, &vanishes] {
        ws.wait_output(id, "fake-agent ready").await;
    }
    ws.crash();
    ws.tmux(&[
        "send-keys",
        "-t",
        &format!("=kc-{ends_ok}:"),
        "-l",
        "exit 0",
    ]);
    ws.tmux(&["send-keys", "-t", &format!("=kc-{ends_ok}:"), "Enter"]);
    ws.tmux(&[
        "send-keys",
        "-t",
        &format!("=kc-{ends_bad}:"),
        "-l",
        "exit 9",
    ]);
    ws.tmux(&["send-keys", "-t", &format!("=kc-{ends_bad}:"), "Enter"]);
    ws.tmux(&["kill-session", "-t", &format!("=kc-{vanishes}")]);
    // Let the two exits happen while nobody is listening.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ws
        .tmux(&["has-session", "-t", &format!("=kc-{ends_bad}")])
        .status
        .success()
        || ws
            .tmux(&["has-session", "-t", &format!("=kc-{ends_ok}")])
            .status
            .success()
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ws.spawn().await;
    let (_, a) = ws.api_get(&format!("/api/tasks/{ends_ok}")).await;
    assert_eq!(
        (a["state"].as_str(), a["exit_code"].as_i64()),
        (Some("succeeded"), Some(0))
    );
    let (_, b) = ws.api_get(&format!("/api/tasks/{ends_bad}")).await;
    assert_eq!(
        (b["state"].as_str(), b["exit_code"].as_i64()),
        (Some("failed"), Some(9))
    );
    let (_, c) = ws.api_get(&format!("/api/tasks/{vanishes}")).await;
    assert_eq!(c["state"], "lost");
    let reasons: Vec<_> = c["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("server was down")),
        "{reasons:?}"
    );
    // History survives in the SQLite file, newest first.
    let (_, list) = ws.api_get("/api/tasks").await;
    let ids: Vec<_> = list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(vanishes), json!(ends_bad), json!(ends_ok)]);
}

#[tokio::test]
async fn the_token_and_sessions_survive_a_restart() {
    let mut ws = Workspace::start(&[]).await;
    let token = ws.token.clone();
    let r = ws
        .client
        .post(format!("{}/auth/login", ws.dashboard))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // The first start printed the token; later starts only say where it is.
    assert!(ws.stdout_lines.iter().any(|l| l.contains(&token)));
    ws.crash();
    ws.spawn().await;
    assert_eq!(ws.token, token);
    assert!(!ws.stdout_lines.iter().any(|l| l.contains(&token)));
    let r = ws
        .client
        .get(format!("{}/api/whoami", ws.dashboard))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A task's session is started while its record is written; a process that
/// dies between the two leaves a session nobody tracks, which the next
/// start ends. Sessions that are not a task's are left alone.
#[tokio::test]
async fn a_session_whose_task_was_never_recorded_is_ended_on_start() {
    let mut ws = Workspace::start(&[]).await;
    let recorded = ws.create_fake().await;
    ws.wait_output(&recorded, "fake-agent ready").await;
    ws.crash();
    let orphan = "kc-0123456789ab";
    for name in [orphan, "someone-elses"] {
        let out = ws.tmux(&["new-session", "-d", "-s", name, "sleep 600"]);
        assert!(out.status.success(), "{out:?}");
    }
    ws.spawn().await;
    let has = |ws: &Workspace, name: &str| {
        ws.tmux(&["has-session", "-t", &format!("={name}")])
            .status
            .success()
    };
    assert!(
        !has(&ws, orphan),
        "the unrecorded task's session still runs"
    );
    assert!(has(&ws, "someone-elses"));
    assert!(has(&ws, &format!("kc-{recorded}")));
    let (s, t) = ws.api_get(&format!("/api/tasks/{recorded}")).await;
    assert_eq!(s, 200);
    assert_ne!(t["state"], "lost", "{t}");
}
