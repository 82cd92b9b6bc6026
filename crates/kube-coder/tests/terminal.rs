//! The browser terminal's WebSocket against the real server and tmux:
//! keystrokes reach the task's session and its screen comes back; pages of
//! other origins cannot open it; read-only workspaces show it but drop
//! every keystroke; refusals before the upgrade are JSON.

mod common;

use std::time::{Duration, Instant};

use common::Workspace;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(base: &str, id: &str) -> String {
    format!(
        "{}/api/tasks/{id}/terminal?cols=100&rows=30",
        base.replacen("http://", "ws://", 1)
    )
}

async fn open(url: &str, headers: &[(&'static str, String)]) -> Result<Socket, WsError> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, v.parse().expect("header value"));
    }
    connect_async(req).await.map(|(s, _)| s)
}

/// The HTTP status and JSON error of a refused upgrade.
fn refusal(e: WsError) -> (u16, Value) {
    match e {
        WsError::Http(resp) => {
            let body = resp.body().clone().unwrap_or_default();
            (
                resp.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// Read terminal output until it contains `needle` (the screen as bytes).
async fn read_until(sock: &mut Socket, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = String::new();
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), sock.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                seen.push_str(&String::from_utf8_lossy(&b));
                if seen.contains(needle) {
                    return seen;
                }
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(None) | Ok(Some(Err(_))) => break,
        }
    }
    panic!("no {needle:?} on the terminal; saw:\n{seen}");
}

#[tokio::test]
async fn keystrokes_reach_the_tasks_session_and_the_screen_comes_back() {
    let ws = Workspace::start(&[]).await;
    let id = ws.create_fake().await;
    ws.wait_output(&id, "fake-agent ready").await;
    let cookie = ws.session_cookie().await;
    let mut sock = open(
        &ws_url(&ws.dashboard, &id),
        &[("cookie", cookie), ("origin", ws.dashboard.clone())],
    )
    .await
    .expect("same-origin browser terminal");
    read_until(&mut sock, "fake-agent ready").await;
    sock.send(Message::Text(
        r#"{"type":"resize","cols":120,"rows":40}"#.into(),
    ))
    .await
    .unwrap();
    sock.send(Message::Binary(b"typed in the browser\r".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut sock, "you said: typed in the browser").await;
    // The task's own log saw it too: the terminal is the task's session.
    ws.wait_output(&id, "you said: typed in the browser").await;
    // The one who types sizes the window.
    let size = ws.tmux(&[
        "display-message",
        "-p",
        "-t",
        &format!("=kc-{id}:"),
        "#{window_width}x#{window_height}",
    ]);
    assert_eq!(String::from_utf8_lossy(&size.stdout).trim(), "120x40");

    // The session outlives the socket: a new one attaches to the same screen.
    drop(sock);
    let mut again = open(&ws_url(&ws.api, &id), &[("authorization", ws.bearer())])
        .await
        .expect("Bearer scripts need no Origin");
    read_until(&mut again, "you said: typed in the browser").await;

    // When the program ends, the terminal says so and closes normally.
    again
        .send(Message::Binary(b"exit 0\r".to_vec().into()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut close = None;
    while Instant::now() < deadline && close.is_none() {
        match tokio::time::timeout(Duration::from_secs(1), again.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => close = frame,
            Ok(None) => break,
            _ => {}
        }
    }
    let frame = close.expect("a close frame when the session ends");
    assert_eq!(u16::from(frame.code), 1000);
    ws.wait_state(&id, "succeeded").await;
}

#[tokio::test]
async fn pages_of_other_origins_cannot_open_a_terminal() {
    let ws = Workspace::start(&[]).await;
    let id = ws.create_fake().await;
    let cookie = ws.session_cookie().await;
    let url = ws_url(&ws.dashboard, &id);
    // Cross-site WebSocket hijacking: the browser attaches the cookie, the
    // Origin gives the foreign page away.
    let err = open(
        &url,
        &[
            ("cookie", cookie.clone()),
            ("origin", "https://evil.example".into()),
        ],
    )
    .await
    .expect_err("foreign origin");
    let (status, body) = refusal(err);
    assert_eq!(status, 403);
    assert_eq!(body["code"], "cross_origin");
    // No Origin at all is refused too for a browser credential.
    let (status, _) = refusal(
        open(&url, &[("cookie", cookie.clone())])
            .await
            .expect_err("no origin"),
    );
    assert_eq!(status, 403);
    // No credential: 401 before anything else.
    let (status, _) = refusal(
        open(&url, &[("origin", ws.dashboard.clone())])
            .await
            .expect_err("no credential"),
    );
    assert_eq!(status, 401);
    // The api listener takes the Bearer token only.
    let (status, _) = refusal(
        open(&ws_url(&ws.api, &id), &[("cookie", cookie)])
            .await
            .expect_err("cookie on the api listener"),
    );
    assert_eq!(status, 401);
}

#[tokio::test]
async fn read_only_workspaces_show_the_terminal_but_drop_keystrokes() {
    let mut ws = Workspace::start(&[]).await;
    let id = ws.create_fake().await;
    ws.wait_output(&id, "fake-agent ready").await;
    // The same workspace, restarted read-only (tmux keeps the task).
    ws.crash();
    ws.args.push("--read-only".into());
    ws.spawn().await;
    let size = || {
        let out = ws.tmux(&[
            "display-message",
            "-p",
            "-t",
            &format!("=kc-{id}:"),
            "#{window_width}x#{window_height}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = size();
    assert!(before.contains('x'), "window size: {before:?}");
    // The viewer's browser is 100x30 (the URL), then says it is 40x12.
    let mut sock = open(&ws_url(&ws.api, &id), &[("authorization", ws.bearer())])
        .await
        .expect("view-only terminal");
    read_until(&mut sock, "fake-agent ready").await;
    sock.send(Message::Text(
        r#"{"type":"resize","cols":40,"rows":12}"#.into(),
    ))
    .await
    .unwrap();
    for attempt in [&b"exit 7\r"[..], b"\x03", b"\x02d"] {
        sock.send(Message::Binary(attempt.to_vec().into()))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pane = String::from_utf8_lossy(
        &ws.tmux(&["capture-pane", "-p", "-t", &format!("kc-{id}")])
            .stdout,
    )
    .into_owned();
    assert!(
        !pane.contains("exit 7"),
        "keystrokes reached the pane:\n{pane}"
    );
    let (status, task) = ws.api_get(&format!("/api/tasks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(task["state"], "running", "{task}");
    assert_eq!(size(), before, "a viewer resized the owner's window");
    drop(sock);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(size(), before, "the viewer's size stayed");
}

#[tokio::test]
async fn refusals_before_the_upgrade_are_json() {
    let ws = Workspace::start(&[]).await;
    // A plain GET is not a WebSocket.
    let id = ws.create_fake().await;
    let r = ws
        .client
        .get(format!("{}/api/tasks/{id}/terminal", ws.api))
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "websocket_expected");
    // Unknown task.
    let (status, body) = refusal(
        open(&ws_url(&ws.api, "nope"), &[("authorization", ws.bearer())])
            .await
            .expect_err("unknown task"),
    );
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    // A finished task has no session to attach to.
    let (s, _) = ws.api_delete(&format!("/api/tasks/{id}")).await;
    assert_eq!(s, 200);
    let (status, body) = refusal(
        open(&ws_url(&ws.api, &id), &[("authorization", ws.bearer())])
            .await
            .expect_err("finished task"),
    );
    assert_eq!(status, 409);
    assert_eq!(body["code"], "task_finished");
}

#[tokio::test]
async fn terminals_count_against_the_stream_cap() {
    let ws = Workspace::start(&["--max-sse", "1"]).await;
    let id = ws.create_fake().await;
    let url = ws_url(&ws.api, &id);
    let auth = [("authorization", ws.bearer())];
    let first = open(&url, &auth).await.expect("first terminal");
    let (status, body) = refusal(open(&url, &auth).await.expect_err("over the cap"));
    assert_eq!((status, body["code"].as_str()), (429, Some("sse_limit")));
    // Closing the first frees its slot.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open(&url, &auth).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = refusal(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the slot never came back: {e}"),
        }
    }
}

/// `kube-coder attach ID` from a user's own terminal (here a pane of
/// another tmux server, so $TMUX is set, as it often is) attaches to the
/// task on whichever of the workspace's tmux servers holds it, and what is
/// typed there reaches the task; an unknown id is one line and exit 1.
#[tokio::test]
async fn kube_coder_attach_reaches_the_task_from_a_terminal() {
    let ws = Workspace::start(&[]).await;
    let id = ws.create_fake().await;
    ws.wait_output(&id, "fake-agent ready").await;
    let users_tmux = ws.dir.path().join("users-own.sock");
    let attach = format!(
        "{} attach {id} --data-dir {}",
        common::bin(),
        ws.data_dir().display()
    );
    let out = std::process::Command::new("tmux")
        .arg("-S")
        .arg(&users_tmux)
        .args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "me",
            "-x",
            "100",
            "-y",
            "30",
        ])
        .arg(&attach)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let session = format!("kc-{id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The attached client, beside the workspace's own control client.
        let clients = ws.tmux(&[
            "list-clients",
            "-t",
            &format!("={session}"),
            "-F",
            "#{client_control_mode}",
        ]);
        if String::from_utf8_lossy(&clients.stdout)
            .lines()
            .any(|l| l == "0")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kube-coder attach never attached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for keys in [&["-l", "typed in attach"][..], &["Enter"][..]] {
        let mut args = vec!["send-keys", "-t", "=me:"];
        args.extend_from_slice(keys);
        let out = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&users_tmux)
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    ws.wait_output(&id, "you said: typed in attach").await;
    let _ = std::process::Command::new("tmux")
        .arg("-S")
        .arg(&users_tmux)
        .arg("kill-server")
        .status();

    let out = std::process::Command::new(common::bin())
        .args(["attach", "0123456789ab", "--data-dir"])
        .arg(ws.data_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no running task 0123456789ab") && err.lines().count() == 1,
        "{err}"
    );
}
