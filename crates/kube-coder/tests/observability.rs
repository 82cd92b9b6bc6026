//! Health, metrics and logs. Starts: `kube-coder serve`, tmux.

mod common;

use common::Workspace;
use serde_json::json;

#[tokio::test]
async fn metrics_are_bearer_only_and_count_tasks_and_requests() {
    let ws = Workspace::start(&[]).await;
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "exit 4"}))
        .await;
    ws.wait_state(t["id"].as_str().unwrap(), "failed").await;
    ws.create_fake().await;
    let r = ws
        .client
        .get(format!("{}/metrics", ws.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = ws
        .client
        .get(format!("{}/metrics", ws.api))
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for line in [
        "kube_coder_tasks{state=\"failed\"} 1",
        "kube_coder_tasks{state=\"running\"} 1",
        "kube_coder_tasks{state=\"succeeded\"} 0",
        "kube_coder_tasks_created_total 2",
        "kube_coder_task_duration_seconds_count{assistant=\"shell\",state=\"failed\"} 1",
        "kube_coder_http_requests_total{listener=\"api\",method=\"POST\",route=\"/api/tasks\",status=\"201\"} 2",
        "kube_coder_http_requests_total{listener=\"api\",method=\"GET\",route=\"/metrics\",status=\"401\"} 1",
        "kube_coder_sse_streams 0",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    // Health endpoints need no auth and say nothing more.
    for base in [&ws.api, &ws.dashboard] {
        for p in ["/livez", "/readyz"] {
            let r = ws.client.get(format!("{base}{p}")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(
                r.json::<serde_json::Value>().await.unwrap(),
                json!({"status": "ok"})
            );
        }
    }
}

#[tokio::test]
async fn logs_carry_request_ids_and_never_secrets() {
    // Request lines are at debug level.
    let ws = Workspace::start_env(
        &["--log-format", "json"],
        &[("KUBE_CODER_LOG", "info,tower_http=debug")],
    )
    .await;
    let old = ws.token.clone();
    let login = ws
        .client
        .post(format!("{}/auth/login?token={old}", ws.dashboard))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"token": old}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    let session = cookie
        .split(';')
        .next()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_string();
    let (_, v) = ws
        .api_post(
            "/api/tasks",
            json!({"assistant": "fake", "env": {"API_KEY": "sk-very-secret-value"}}),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    let (_, v) = ws.api_post("/api/token", json!({})).await;
    let new = v["token"].as_str().unwrap().to_string();
    let r = ws
        .client
        .get(format!("{}/api/tasks/{id}", ws.api))
        .header("authorization", format!("Bearer {new}"))
        .header("x-request-id", "req-from-client-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-from-client-42");
    // The env value is never shown, only its name.
    let body = r.text().await.unwrap();
    assert!(body.contains("API_KEY") && !body.contains("sk-very-secret-value"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = ws.log();
    for secret in [&old, &new, &session, &"sk-very-secret-value".to_string()] {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
    assert!(log.contains("req-from-client-42"));
    // JSON lines, each with a request id when inside a request.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| l["span"]["request_id"].is_string()));
}

/// The operator's idle stop reads this: probes and scrapes do not count
/// as activity, other requests do, and live tasks are reported.
#[tokio::test]
async fn activity_reports_idle_time_and_live_tasks() {
    let ws = Workspace::start(&[]).await;
    let (status, a) = ws.api_get("/api/activity").await;
    assert_eq!(status, 200);
    assert_eq!(a["running_tasks"], 0);
    let started = a["last_activity"].as_str().unwrap().to_string();
    assert!(started.ends_with('Z'), "{started}");

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    for path in ["/livez", "/readyz"] {
        ws.client
            .get(format!("{}{path}", ws.api))
            .send()
            .await
            .unwrap();
    }
    ws.metrics_text().await;
    let (_, a) = ws.api_get("/api/activity").await;
    assert!(a["idle_seconds"].as_u64().unwrap() >= 2, "{a}");
    assert_eq!(a["last_activity"], started.as_str());

    let id = ws.create_fake().await;
    let (_, a) = ws.api_get("/api/activity").await;
    assert_eq!(a["running_tasks"], 1, "{a}");
    assert!(a["idle_seconds"].as_u64().unwrap() < 2, "{a}");
    ws.api_delete(&format!("/api/tasks/{id}")).await;
    ws.wait_state(&id, "killed").await;
    let (_, a) = ws.api_get("/api/activity").await;
    assert_eq!(a["running_tasks"], 0, "{a}");
}

/// Strangers do not keep a workspace running: requests without a valid
/// credential (401s, unknown paths, the public app's files) are not
/// activity; an authenticated request is.
#[tokio::test]
async fn only_authenticated_requests_count_as_activity() {
    let ws = Workspace::start(&["--auth", "token"]).await;
    let (_, a) = ws.api_get("/api/activity").await;
    let started = a["last_activity"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    for base in [&ws.api, &ws.dashboard] {
        for path in ["/api/tasks", "/no/such/path", "/", "/wp-login.php"] {
            ws.client.get(format!("{base}{path}")).send().await.unwrap();
        }
        let r = ws
            .client
            .get(format!("{base}/api/tasks"))
            .header("authorization", "Bearer not-the-token-at-all")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let (_, a) = ws.api_get("/api/activity").await;
    assert_eq!(a["last_activity"], started.as_str(), "{a}");
    assert!(a["idle_seconds"].as_u64().unwrap() >= 2, "{a}");
    let (s, _) = ws.api_get("/api/tasks").await;
    assert_eq!(s, 200);
    let (_, a) = ws.api_get("/api/activity").await;
    assert!(a["idle_seconds"].as_u64().unwrap() < 2, "{a}");
}

/// Metric labels come from a fixed set: a client inventing methods and
/// paths cannot grow the series (each would be kept forever).
#[tokio::test]
async fn made_up_methods_and_paths_do_not_create_series() {
    let ws = Workspace::start(&[]).await;
    let before = ws.metrics_text().await.lines().count();
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i:04}XYZ").as_bytes()).unwrap();
        for base in [&ws.api, &ws.dashboard] {
            let r = ws
                .client
                .request(method.clone(), format!("{base}/random/{i}"))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_client_error(), "{}", r.status());
        }
    }
    let text = ws.metrics_text().await;
    assert!(!text.contains("MADEUP"), "a made-up method became a label");
    assert!(!text.contains("/random/"), "a raw path became a label");
    assert!(
        text.contains("method=\"other\",route=\"unmatched\""),
        "{text}"
    );
    let grown = text.lines().count() - before;
    assert!(grown < 100, "{grown} new metric lines for 600 odd requests");
}
