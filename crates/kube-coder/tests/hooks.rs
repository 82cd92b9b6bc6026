//! Completion hooks end to end: real receivers on 127.0.0.1, the durable
//! outbox, retries, dead letters, redelivery, and a kill -9 while a
//! delivery is pending. Starts: `kube-coder serve` (internal hooks allowed,
//! since receivers are local), tmux, small HTTP receivers.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Workspace;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Received {
    headers: String,
    body: String,
}

/// A receiver answering with the scripted statuses in turn (the last repeats).
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(statuses: Vec<u16>) -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").await.unwrap(), statuses)
    }

    fn on(listener: TcpListener, statuses: Vec<u16>) -> Self {
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read headers, then the body by Content-Length.
                let (head, body) = loop {
                    let k = s.read(&mut chunk).await.unwrap_or(0);
                    if k == 0 {
                        break (String::new(), String::new());
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let head = text[..end].to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            let k = s.read(&mut chunk).await.unwrap_or(0);
                            if k == 0 {
                                break;
                            }
                            buf.extend_from_slice(&chunk[..k]);
                        }
                        let body = String::from_utf8_lossy(&buf[end + 4..]).to_string();
                        break (head, body);
                    }
                };
                g.lock().unwrap().push(Received {
                    headers: head,
                    body,
                });
                let status = statuses[n.min(statuses.len() - 1)];
                n += 1;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        Self { port, got }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn deliveries(ws: &Workspace, task: &str) -> Vec<Value> {
    let (_, v) = ws
        .api_get(&format!("/api/hooks/deliveries?task_id={task}"))
        .await;
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

async fn wait_delivery(ws: &Workspace, task: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(d) = deliveries(ws, task)
            .await
            .into_iter()
            .find(|d| d["state"] == state)
        {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "delivery of {task} never became {state}: {:?}",
            deliveries(ws, task).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One header's value from a lower-cased header block.
fn header_value(headers: &str, name: &str) -> String {
    headers
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {headers}"))
        .trim()
        .to_string()
}

const FAST: &[&str] = &[
    "--allow-internal-hooks",
    "true",
    "--hook-retry-base-ms",
    "50",
    "--hook-max-attempts",
    "4",
];

#[tokio::test]
async fn a_finished_task_posts_a_signed_payload_once_and_the_secret_never_shows() {
    let ws = Workspace::start(FAST).await;
    let rx = Receiver::start(vec![200]).await;
    let secret = "s3cret-hook-key";
    let t = ws
        .create(
            json!({"assistant": "shell", "prompt": "echo final words; exit 3", "name": "hooked",
                       "hook": {"url": rx.url(), "secret": secret}}),
        )
        .await;
    let id = t["id"].as_str().unwrap();
    let d = wait_delivery(&ws, id, "delivered").await;
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["signed"], true);
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["task_id"], id);
    assert_eq!(body["name"], "hooked");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["exit_code"], 3);
    assert!(body["started_at"].is_string() && body["finished_at"].is_string());
    assert!(body["output_tail"]
        .as_str()
        .unwrap()
        .contains("final words"));
    let headers = got[0].headers.to_ascii_lowercase();
    // The time and the delivery id are signed with the body.
    let ts = header_value(&headers, "x-kube-coder-timestamp");
    let age = now_secs() - ts.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "timestamp {ts}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{}.", d["id"].as_str().unwrap()).as_bytes());
    mac.update(got[0].body.as_bytes());
    let want = format!(
        "x-kube-coder-signature-256: sha256={}",
        hex::encode(mac.finalize().into_bytes())
    );
    assert!(headers.contains(&want), "{headers}");
    assert!(headers.contains(&format!(
        "x-kube-coder-delivery: {}",
        d["id"].as_str().unwrap()
    )));
    assert!(headers.contains("idempotency-key: "));
    // The secret is in no read answer.
    for path in [
        format!("/api/tasks/{id}"),
        "/api/tasks".into(),
        format!("/api/hooks/deliveries?task_id={id}"),
    ] {
        let (_, v) = ws.api_get(&path).await;
        assert!(!v.to_string().contains(secret), "{path} shows the secret");
    }
}

#[tokio::test]
async fn failures_retry_with_backoff_then_deliver_or_die_and_can_be_redelivered() {
    let ws = Workspace::start(FAST).await;
    // 500, timeout-ish 503, then 200: delivered on the third attempt.
    let flaky = Receiver::start(vec![500, 503, 200]).await;
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "true", "hook": {"url": flaky.url()}}))
        .await;
    let d = wait_delivery(&ws, t["id"].as_str().unwrap(), "delivered").await;
    assert_eq!(d["attempts"], 3);
    let statuses: Vec<_> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(500), json!(503), json!(200)]);

    // A 400 is final at once: a dead letter, then redelivered by request.
    let refusing = Receiver::start(vec![400, 200]).await;
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "true", "hook": {"url": refusing.url()}}))
        .await;
    let id = t["id"].as_str().unwrap();
    let dead = wait_delivery(&ws, id, "dead").await;
    assert_eq!(
        (dead["attempts"].as_i64(), dead["last_status"].as_i64()),
        (Some(1), Some(400))
    );
    let (s, _) = ws
        .api_post(
            &format!(
                "/api/hooks/deliveries/{}/redeliver",
                dead["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(s, 202);
    wait_delivery(&ws, id, "delivered").await;
    assert_eq!(refusing.received().len(), 2);

    // Nobody listening: retried up to the cap, then dead, and counted.
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        gone.local_addr().unwrap().port()
    );
    drop(gone);
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "true", "hook": {"url": url}}))
        .await;
    let dead = wait_delivery(&ws, t["id"].as_str().unwrap(), "dead").await;
    assert_eq!(dead["attempts"], 4);
    assert!(dead["last_error"].as_str().unwrap().contains("connect"));
    let metrics = ws.metrics_text().await;
    assert!(
        metrics.contains("kube_coder_hook_dead_letters 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kube_coder_hook_attempts_total{outcome=\"delivered\"} 2"),
        "{metrics}"
    );
    let (s, _) = ws
        .api_post("/api/hooks/deliveries/nope/redeliver", json!({}))
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn refused_hook_urls_are_a_400_at_create_time() {
    let ws = Workspace::start(&[]).await; // the strict default
    for (url, why) in [
        ("http://127.0.0.1:9/x", "loopback"),
        ("http://169.254.169.254/latest", "link-local"),
        ("http://[::ffff:10.0.0.1]/", "IPv4-mapped"),
        ("http://0x7f.1/", "loopback"),
        ("ftp://example.com/", "http or https"),
    ] {
        let (s, v) = ws
            .api_post(
                "/api/tasks",
                json!({"assistant": "shell", "hook": {"url": url}}),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("hook_refused")),
            "{url}: {v}"
        );
        assert!(v["error"].as_str().unwrap().contains(why), "{url}: {v}");
    }
    let (s, _) = ws
        .api_post(
            "/api/tasks",
            json!({"assistant": "shell", "hook": {"url": "https://x.test", "bogus": 1}}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn a_pending_delivery_survives_kill_9_and_is_delivered_once_the_receiver_is_up() {
    let mut ws = Workspace::start(&[
        "--allow-internal-hooks",
        "true",
        "--hook-retry-base-ms",
        "200",
        "--hook-max-attempts",
        "50",
    ])
    .await;
    // Reserve a port and leave it closed: the receiver is down.
    let reserve = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = reserve.local_addr().unwrap().port();
    drop(reserve);
    let url = format!("http://127.0.0.1:{port}/hook");
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "echo done", "hook": {"url": url}}))
        .await;
    let id = t["id"].as_str().unwrap().to_string();
    ws.wait_state(&id, "succeeded").await;
    let pending = wait_delivery(&ws, &id, "pending").await;
    ws.crash();
    // The receiver comes up while the server is down.
    let rx = Receiver::on(
        TcpListener::bind(("127.0.0.1", port)).await.unwrap(),
        vec![200],
    );
    ws.spawn().await;
    let d = wait_delivery(&ws, &id, "delivered").await;
    assert_eq!(d["id"], pending["id"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = rx.received();
    assert_eq!(got.len(), 1, "delivered exactly once");
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(
        (body["task_id"].as_str(), body["status"].as_str()),
        (Some(id.as_str()), Some("succeeded"))
    );
}

#[tokio::test]
async fn the_server_default_hook_applies_to_tasks_that_name_none() {
    let rx = Receiver::start(vec![200]).await;
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "default-secret\n").unwrap();
    let url = rx.url();
    let ws = Workspace::start(&[
        "--allow-internal-hooks",
        "true",
        "--hook-url",
        &url,
        "--hook-secret-file",
        secret_file.path().to_str().unwrap(),
    ])
    .await;
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "true"}))
        .await;
    let d = wait_delivery(&ws, t["id"].as_str().unwrap(), "delivered").await;
    assert_eq!(d["signed"], true);
    let got = rx.received();
    let headers = got[0].headers.to_ascii_lowercase();
    let ts = header_value(&headers, "x-kube-coder-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"default-secret").unwrap();
    mac.update(format!("{ts}.{}.", d["id"].as_str().unwrap()).as_bytes());
    mac.update(got[0].body.as_bytes());
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert!(got[0].headers.contains(&want), "{}", got[0].headers);
}

/// A hook URL's path is often its secret: read-only viewers see scheme,
/// host and port only, and neither logs nor delivery errors carry more.
#[tokio::test]
async fn hook_urls_are_shown_whole_only_to_writers_and_never_logged() {
    let mut ws = Workspace::start(FAST).await;
    // Nothing listens on the port: every attempt fails to connect.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/T0/B1/s3cr3t-path?token=s3cr3t-query");
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "true", "hook": {"url": url}}))
        .await;
    let task = t["id"].as_str().unwrap().to_string();
    wait_delivery(&ws, &task, "dead").await;
    let hook = json!({"url": url});
    let (s, v) = ws
        .api_post(
            "/api/schedules",
            json!({"name": "nightly", "cron": "0 3 * * *", "prompt": "p", "assistant": "shell", "hook": hook}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["hook_url"],
        url.as_str(),
        "the writer who made it sees it"
    );
    let (s, v) = ws
        .api_post(
            "/api/webhooks",
            json!({"name": "gh", "prompt_template": "p", "assistant": "shell", "hook": hook}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, list) = ws.api_get("/api/webhooks").await;
    assert_eq!(list["webhooks"][0]["hook_url"], url.as_str());

    let redacted = format!("http://127.0.0.1:{port}/…");
    ws.crash();
    ws.args
        .extend(["--read-only".into(), "--auth".into(), "none".into()]);
    ws.spawn().await;
    for (path, pointer) in [
        ("/api/schedules", "/schedules/0/hook_url"),
        ("/api/webhooks", "/webhooks/0/hook_url"),
        ("/api/hooks/deliveries", "/deliveries/0/url"),
    ] {
        for base in [&ws.dashboard, &ws.api] {
            let mut req = ws.client.get(format!("{base}{path}"));
            if base == &ws.api {
                req = req.header("authorization", ws.bearer());
            }
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            assert_eq!(
                body.pointer(pointer),
                Some(&json!(redacted)),
                "{path}: {body}"
            );
            assert!(!body.to_string().contains("s3cr3t"), "{path}: {body}");
        }
    }
    assert!(!ws.log().contains("s3cr3t"), "the hook URL reached the log");
}

/// A finished task is not removed while its hook is still being delivered
/// (the delivery would lose its task); once it is dead, the task goes with
/// its delivery history.
#[tokio::test]
async fn a_task_whose_hook_is_in_flight_is_kept_until_the_delivery_ends() {
    let ws = Workspace::start(&[
        "--allow-internal-hooks",
        "true",
        "--hook-retry-base-ms",
        "1500",
        "--hook-max-attempts",
        "2",
    ])
    .await;
    // Nothing listens on port 9 of loopback: refused, retried, then dead.
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "true",
                       "hook": {"url": "http://127.0.0.1:9/done"}}))
        .await;
    let id = t["id"].as_str().unwrap();
    ws.wait_state(id, "succeeded").await;
    wait_delivery(&ws, id, "pending").await;
    let (s, v) = ws.api_delete(&format!("/api/tasks/{id}?remove=true")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("delivery_pending")),
        "{v}"
    );
    wait_delivery(&ws, id, "dead").await;
    let (s, _) = ws.api_delete(&format!("/api/tasks/{id}?remove=true")).await;
    assert_eq!(s, 204);
    assert!(deliveries(&ws, id).await.is_empty());
}
