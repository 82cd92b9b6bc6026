//! Inbound webhooks against the real binary: definitions, HMAC in both
//! header styles, replay protection, body cap, and answers that do not tell
//! an unknown webhook from a bad signature. Starts: `kube-coder serve`, tmux.

mod common;

use common::Workspace;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// GitHub's scheme: the body alone.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The kube-coder scheme's headers: `<timestamp>.<id>.<body>` signed.
fn signed_delivery(secret: &str, ts: i64, id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{id}.").as_bytes());
    mac.update(body);
    vec![
        (
            "x-kube-coder-signature-256",
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        ),
        ("x-kube-coder-delivery", id.to_string()),
        ("x-kube-coder-timestamp", ts.to_string()),
    ]
}

async fn deliver(
    ws: &Workspace,
    id: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (u16, Value) {
    let mut req = ws
        .client
        .post(format!("{}/api/webhooks/{id}", ws.api))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn define(ws: &Workspace) -> (String, String) {
    let (s, v) = ws
        .api_post(
            "/api/webhooks",
            json!({"name": "ci", "assistant": "shell",
                   "prompt_template": "echo review {{repository.full_name}} at {{after}}"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_signed_delivery_starts_a_task_once() {
    let ws = Workspace::start(&[]).await;
    let (id, secret) = define(&ws).await;
    // The secret is shown once, never listed.
    let (_, list) = ws.api_get("/api/webhooks").await;
    assert_eq!(list["webhooks"][0]["id"], id.as_str());
    assert!(!list.to_string().contains(&secret));

    let body = br#"{"repository": {"full_name": "acme/app"}, "after": "abc123"}"#;
    let github = vec![
        ("x-hub-signature-256", sign(&secret, body)),
        ("x-github-delivery", "d-1".to_string()),
    ];
    let (s, v) = deliver(&ws, &id, body, &github).await;
    assert_eq!(s, 202, "{v}");
    let task = v["task_id"].as_str().unwrap().to_string();
    let t = ws.wait_state(&task, "succeeded").await;
    assert_eq!(t["prompt"], "echo review acme/app at abc123");
    assert_eq!(t["name"], "webhook: ci");
    ws.wait_output(&task, "review acme/app at abc123").await;

    // The same delivery again is recognised, and starts nothing.
    let (s, v) = deliver(&ws, &id, body, &github).await;
    assert_eq!((s, v["duplicate"].as_bool()), (200, Some(true)));
    let (_, tasks) = ws.api_get("/api/tasks").await;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1);

    // GitHub signs only the body: the same body under a new delivery id is
    // a replay of it, and starts nothing either.
    let replayed = vec![
        ("x-hub-signature-256", sign(&secret, body)),
        ("x-github-delivery", "d-1-replayed".to_string()),
    ];
    let (s, v) = deliver(&ws, &id, body, &replayed).await;
    assert_eq!((s, v["duplicate"].as_bool()), (200, Some(true)), "{v}");

    // The kube-coder scheme works too.
    let generic = signed_delivery(&secret, now_secs(), "d-2", body);
    let (s, v) = deliver(&ws, &id, body, &generic).await;
    assert_eq!(s, 202, "{v}");
    let metrics = ws.metrics_text().await;
    assert!(
        metrics.contains("kube_coder_webhook_receipts_total{result=\"accepted\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kube_coder_webhook_receipts_total{result=\"duplicate\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_ids_and_bad_signatures_look_the_same_and_other_refusals_are_clear() {
    let ws = Workspace::start(&["--max-json-bytes", "4096"]).await;
    let (id, secret) = define(&ws).await;
    let body = br#"{"after": "x"}"#;
    let bad = deliver(
        &ws,
        &id,
        body,
        &[
            ("x-hub-signature-256", sign("wrong", body)),
            ("x-github-delivery", "a".into()),
        ],
    )
    .await;
    let unknown = deliver(
        &ws,
        "0123456789ab",
        body,
        &[
            ("x-hub-signature-256", sign(&secret, body)),
            ("x-github-delivery", "a".into()),
        ],
    )
    .await;
    let missing = deliver(&ws, &id, body, &[("x-github-delivery", "a".into())]).await;
    assert_eq!(bad.0, 401);
    assert_eq!(bad, unknown);
    assert_eq!(bad, missing);
    // A Bearer token is not a webhook signature.
    let r = ws
        .client
        .post(format!("{}/api/webhooks/{id}", ws.api))
        .header("authorization", ws.bearer())
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let signed = |b: &[u8], extra: Vec<(&'static str, String)>| {
        let mut h = vec![("x-hub-signature-256", sign(&secret, b))];
        h.extend(extra);
        h
    };
    let (s, v) = deliver(&ws, &id, body, &signed(body, vec![])).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("missing_delivery_id")));
    let stale = signed_delivery(&secret, 1_000_000_000, "s", body);
    let (s, v) = deliver(&ws, &id, body, &stale).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("stale_delivery")));
    let not_json = b"not json";
    let (s, v) = deliver(
        &ws,
        &id,
        not_json,
        &signed(not_json, vec![("x-github-delivery", "j".into())]),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_json")));
    let big = vec![b' '; 5000];
    let (s, v) = deliver(
        &ws,
        &id,
        &big,
        &signed(&big, vec![("x-github-delivery", "b".into())]),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (413, Some("body_too_large")));

    // Managing definitions needs the token; the dashboard listener has no receiver.
    let r = ws
        .client
        .get(format!("{}/api/webhooks", ws.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = ws
        .client
        .delete(format!("{}/api/webhooks/{id}", ws.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The dashboard listener manages definitions but never receives
    // deliveries: even a signed-in caller gets no receiver there, only
    // where to send it.
    let r = ws
        .client
        .post(format!("{}/api/webhooks/{id}", ws.dashboard))
        .header("authorization", ws.bearer())
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let (_, tasks) = ws.api_get("/api/tasks").await;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 0);
    let r = ws
        .client
        .delete(format!("{}/api/webhooks/{id}", ws.api))
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, _) = deliver(
        &ws,
        &id,
        body,
        &signed(body, vec![("x-github-delivery", "z".into())]),
    )
    .await;
    assert_eq!(s, 401);
    let (s, v) = ws
        .api_post(
            "/api/webhooks",
            json!({"name": "x", "prompt_template": "y", "assistant": "nope"}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("unknown_assistant")));
    let (s, _) = ws
        .api_post("/api/webhooks", json!({"name": "", "prompt_template": "y"}))
        .await;
    assert_eq!(s, 400);
}

/// In the kube-coder scheme the time and the id are signed with the body:
/// a captured delivery cannot be sent again under a new id or a new time,
/// and one without a time is refused.
#[tokio::test]
async fn a_captured_delivery_cannot_be_replayed_with_a_new_id_or_time() {
    let ws = Workspace::start(&[]).await;
    let (id, secret) = define(&ws).await;
    let body = br#"{"after": "abc"}"#;
    let now = now_secs();
    let captured = signed_delivery(&secret, now, "d-1", body);
    let (s, v) = deliver(&ws, &id, body, &captured).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = deliver(&ws, &id, body, &captured).await;
    assert_eq!((s, v["duplicate"].as_bool()), (200, Some(true)), "{v}");
    let with = |name: &str, value: String| {
        captured
            .iter()
            .map(|(k, v)| (*k, if *k == name { value.clone() } else { v.clone() }))
            .collect::<Vec<_>>()
    };
    let (s, v) = deliver(
        &ws,
        &id,
        body,
        &with("x-kube-coder-delivery", "d-new".into()),
    )
    .await;
    assert_eq!(s, 401, "a new id passed: {v}");
    let (s, v) = deliver(
        &ws,
        &id,
        body,
        &with("x-kube-coder-timestamp", (now + 1).to_string()),
    )
    .await;
    assert_eq!(s, 401, "a new time passed: {v}");
    let no_time: Vec<_> = captured
        .iter()
        .filter(|(k, _)| *k != "x-kube-coder-timestamp")
        .cloned()
        .collect();
    let (s, v) = deliver(&ws, &id, body, &no_time).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("invalid_timestamp")),
        "{v}"
    );
    let (_, tasks) = ws.api_get("/api/tasks").await;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_webhook_is_paused_edited_and_keeps_a_history_of_its_deliveries() {
    let ws = Workspace::start(&["--max-tasks", "1"]).await;
    let (id, secret) = define(&ws).await;
    // The full address to give a sender, and unique names.
    let (_, list) = ws.api_get("/api/webhooks").await;
    assert_eq!(
        list["webhooks"][0]["url"],
        format!("{}/api/webhooks/{id}", ws.api).as_str()
    );
    let (s, v) = ws
        .api_post(
            "/api/webhooks",
            json!({"name": "ci", "prompt_template": "x"}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("name_taken")), "{v}");

    // A delivery sent to the dashboard's port is told where to go.
    let body = br#"{"repository": {"full_name": "acme/app"}, "after": "abc123"}"#;
    let r = ws
        .client
        .post(format!("{}/api/webhooks/{id}", ws.dashboard))
        .headers(header_map(&signed_delivery(
            &secret,
            now_secs(),
            "d-0",
            body,
        )))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 421);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "wrong_listener");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains(&format!("{}/api/webhooks/{id}", ws.api)),
        "{v}"
    );

    // Paused: refused and recorded; the same delivery passes once resumed.
    let (s, v) = ws
        .api_patch(&format!("/api/webhooks/{id}"), json!({"paused": true}))
        .await;
    assert_eq!((s, v["paused"].as_bool()), (200, Some(true)), "{v}");
    let d1 = signed_delivery(&secret, now_secs(), "d-1", body);
    let (s, v) = deliver(&ws, &id, body, &d1).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("webhook_paused")),
        "{v}"
    );
    assert_eq!(history(&ws, &id).await[0]["outcome"], "paused");
    let (s, _) = ws
        .api_patch(
            &format!("/api/webhooks/{id}"),
            json!({"paused": false, "prompt_template": "echo edited {{after}}"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = deliver(&ws, &id, body, &d1).await;
    assert_eq!(s, 202, "{v}");
    let task = v["task_id"].as_str().unwrap().to_string();
    let t = ws.wait_state(&task, "succeeded").await;
    assert_eq!(t["prompt"], "echo edited abc123");
    let h = history(&ws, &id).await;
    assert_eq!(h.as_array().unwrap().len(), 1, "{h}");
    assert_eq!(
        (h[0]["outcome"].as_str(), h[0]["task_id"].as_str()),
        (Some("started"), Some(task.as_str()))
    );

    // A delivery that could not start its task (the task limit is full) is
    // recorded with the reason, and may be delivered again later.
    let busy = ws
        .create(json!({"assistant": "shell", "prompt": "sleep 30"}))
        .await;
    let d2 = signed_delivery(&secret, now_secs(), "d-2", body);
    let (s, v) = deliver(&ws, &id, body, &d2).await;
    assert_eq!((s, v["code"].as_str()), (429, Some("task_limit")), "{v}");
    let h = history(&ws, &id).await;
    assert_eq!(
        (h[0]["delivery_id"].as_str(), h[0]["outcome"].as_str()),
        (Some("d-2"), Some("failed"))
    );
    assert!(h[0]["error"].as_str().unwrap().contains("max"), "{h}");
    ws.api_delete(&format!("/api/tasks/{}", busy["id"].as_str().unwrap()))
        .await;
    ws.wait_state(busy["id"].as_str().unwrap(), "killed").await;
    let (s, v) = deliver(&ws, &id, body, &d2).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(history(&ws, &id).await[0]["outcome"], "started");

    let (s, _) = ws.api_get("/api/webhooks/nope/deliveries").await;
    assert_eq!(s, 404);
}

fn header_map(headers: &[(&'static str, String)]) -> reqwest::header::HeaderMap {
    let mut m = reqwest::header::HeaderMap::new();
    m.insert("content-type", "application/json".parse().unwrap());
    for (k, v) in headers {
        m.insert(*k, v.parse().unwrap());
    }
    m
}

async fn history(ws: &Workspace, id: &str) -> Value {
    ws.api_get(&format!("/api/webhooks/{id}/deliveries"))
        .await
        .1["deliveries"]
        .clone()
}
