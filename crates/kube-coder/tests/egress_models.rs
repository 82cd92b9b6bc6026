//! Model keys kept in the egress gateway, as an agent's HTTP client meets
//! them: the real gateway binary's model port in front of a stand-in
//! provider over TLS (tests/fixtures/model_provider.py, a certificate from
//! a test CA the gateway is told to trust) that accepts only the real keys.
//! Clients send a placeholder; the gateway replaces it with the key from
//! its key directory, passes server-sent events on as they come (the
//! provider holds its stream after the first text until the test has read
//! it), counts each dialect's token usage, keeps the month's usage across
//! a restart, and answers 429 naming the budget once it is used up. A key
//! added to the directory works without a restart; the workspace server's
//! `GET /api/usage` shows the gateway's figures.
//! Local only: the provider is on 127.0.0.1 (allowed with `--allow-cidr`);
//! the real node's test runs it as a public-range test host.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

const PLACEHOLDER: &str = "kube-coder-egress-gateway";

/// A CA and a certificate for `localhost` it signed: (CA PEM, cert PEM,
/// key PEM).
fn test_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/model_provider.py")
}

struct Provider {
    _child: tokio::process::Child,
    port: u16,
    ca: String,
}

async fn provider(dir: &Path) -> Provider {
    let (ca, cert, key) = test_ca();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let keys =
        json!({"anthropic": "sk-ant-real", "openai": "sk-openai-real", "gemini": "AIza-real"});
    let mut child = tokio::process::Command::new("python3")
        .arg(fixture())
        .args(["127.0.0.1", "0"])
        .arg(dir.join("cert.pem"))
        .arg(dir.join("key.pem"))
        .arg(keys.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the stand-in provider");
    let line = common::first_line(&mut child, "the stand-in provider").await;
    let port = line.trim_start_matches("ready ").parse().unwrap();
    Provider {
        _child: child,
        port,
        ca,
    }
}

struct Gateway {
    child: tokio::process::Child,
    admin: String,
    models: String,
}

impl Gateway {
    /// SIGTERM, as a pod's stop, and wait for it to end.
    async fn stop(mut self) {
        let pid = self.child.id().expect("the gateway runs").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let ended = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the gateway stops on SIGTERM")
            .unwrap();
        assert!(ended.success(), "{ended}");
    }
}

async fn gateway(dir: &Path, extra: &[&str]) -> Gateway {
    std::fs::write(dir.join("allow"), "").unwrap();
    let mut child = tokio::process::Command::new(common::bin())
        .args([
            "egress-gateway",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--models-listen",
            "127.0.0.1:0",
            "--allow-file",
        ])
        .arg(dir.join("allow"))
        .arg("--models-file")
        .arg(dir.join("models/models.json"))
        .arg("--model-keys-dir")
        .arg(dir.join("keys"))
        .arg("--usage-file")
        .arg(dir.join("usage.json"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway");
    let line = common::first_line(&mut child, "the gateway").await;
    let after = |what: &str| {
        line.split(what)
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    let (admin, models) = (after("admin on "), after("models on "));
    Gateway {
        child,
        admin,
        models,
    }
}

impl Provider {
    /// The provider's own test paths (`/release`, `/seen`), trusting its CA.
    async fn get(&self, path: &str) -> Value {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca.as_bytes()).unwrap())
            .build()
            .unwrap();
        client
            .get(format!("https://localhost:{}{path}", self.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// What the gateway counted this month.
async fn usage(gw: &Gateway) -> Value {
    get_json(&format!("http://{}/usage", gw.admin)).await
}

#[tokio::test]
async fn keys_stay_in_the_gateway_and_usage_is_counted_and_budgeted() {
    let dir = tempfile::tempdir().unwrap();
    let provider = provider(dir.path()).await;
    let base = format!("https://localhost:{}", provider.port);
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(
        dir.path().join("models/models.json"),
        json!({
            "providers": [
                {"name": "anthropic", "api": "anthropic", "baseUrl": base},
                {"name": "openai", "api": "openai", "baseUrl": format!("{base}/v1")},
                {"name": "gemini", "api": "gemini", "baseUrl": base},
            ],
            "monthlyTokenBudget": 120,
            "caBundle": provider.ca,
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("keys/anthropic"), "sk-ant-real\n").unwrap();
    std::fs::write(dir.path().join("keys/gemini"), "AIza-real").unwrap();
    let gw = gateway(dir.path(), &["--allow-cidr", "127.0.0.0/8,::1/128"]).await;
    let http = reqwest::Client::new();
    let models = format!("http://{}", gw.models);

    // A streamed answer arrives event by event: the first text is here
    // while the provider still holds the rest.
    let answer = http
        .post(format!("{models}/anthropic/v1/messages"))
        .header("x-api-key", PLACEHOLDER)
        .header("anthropic-version", "2023-06-01")
        .json(
            &json!({"model": "claude-test", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": "HOLD please"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = answer.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("Hello from the test provider.") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the first events arrive before the provider lets go of the rest")
            .expect("the stream goes on")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!seen.contains("message_stop"), "{seen}");
    provider.get("/release").await;
    while let Some(chunk) = stream.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(seen.contains("event: message_stop"), "{seen}");
    let u = usage(&gw).await;
    // 25 input + 5 cache reads; 12 output.
    assert_eq!(
        (u["input_tokens"].as_u64(), u["output_tokens"].as_u64()),
        (Some(30), Some(12)),
        "{u}"
    );

    // Gemini, with the key where its clients put it (the query): replaced.
    let g = http
        .post(format!(
            "{models}/gemini/v1beta/models/gemini-test:generateContent?key={PLACEHOLDER}"
        ))
        .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), 200);
    // OpenAI has no key yet: the gateway says so, nothing is sent.
    let chat = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]});
    let o = http
        .post(format!("{models}/openai/chat/completions"))
        .bearer_auth(PLACEHOLDER)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(o.status(), 503);
    let body: Value = o.json().await.unwrap();
    assert_eq!(body["error"]["type"], "no_key", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no key is configured for the model provider openai"));
    // A key added to the Secret's directory works without a restart.
    std::fs::write(dir.path().join("keys/openai"), "sk-openai-real").unwrap();
    let mut status = 0;
    for _ in 0..50 {
        let r = http
            .post(format!("{models}/openai/chat/completions"))
            .bearer_auth(PLACEHOLDER)
            .json(&chat)
            .send()
            .await
            .unwrap();
        status = r.status().as_u16();
        if status == 200 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["usage"]["completion_tokens"], 8);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the new key was not taken up");

    // The provider never saw the placeholder, only the real keys.
    let seen = provider.get("/seen").await;
    let seen_text = seen.to_string();
    assert!(!seen_text.contains(PLACEHOLDER), "{seen_text}");
    assert!(seen_text.contains("sk-ant-real") && seen_text.contains("Bearer sk-openai-real"));

    // An unknown provider names the ones there are.
    let r = http
        .post(format!("{models}/cohere/v1/chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("anthropic, openai, gemini"));

    // 42 + 10 + 28 = 80 of 120 used: one more non-streamed message (42)
    // goes over; the next is refused, saying which budget.
    let u = usage(&gw).await;
    assert_eq!(u["used"], 80, "{u}");
    assert_eq!(u["by_provider"]["gemini"]["input_tokens"], 7, "{u}");
    let message = json!({"model": "claude-test", "max_tokens": 64,
                         "messages": [{"role": "user", "content": "hi"}]});
    let r = http
        .post(format!("{models}/anthropic/v1/messages"))
        .header("x-api-key", PLACEHOLDER)
        .json(&message)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    let refused = |gw_models: String| {
        let http = http.clone();
        let message = message.clone();
        async move {
            http.post(format!("{gw_models}/anthropic/v1/messages"))
                .header("x-api-key", PLACEHOLDER)
                .json(&message)
                .send()
                .await
                .unwrap()
        }
    };
    let r = refused(models.clone()).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let body: Value = r.json().await.unwrap();
    let text = body["error"]["message"].as_str().unwrap().to_string();
    assert!(
        text.contains("monthly model token budget is used up: 122 of 120 tokens")
            && text.contains("spec.models.monthlyTokenBudget"),
        "{text}"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"model_tokens_total{provider="anthropic",direction="input"} 60"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"model_requests_total{provider="anthropic",outcome="budget_exceeded"} 1"#),
        "{metrics}"
    );

    // The workspace server shows the gateway's figures.
    let server =
        common::Workspace::start(&["--egress-gateway-url", &format!("http://{}", gw.admin)]).await;
    let (status, shown) = server.api_get("/api/usage").await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["used"], 122, "{shown}");
    assert_eq!(shown["budget"], 120, "{shown}");
    assert_eq!(shown["remaining"], 0, "{shown}");
    // A gateway for models only: egress is not by name.
    let (_, me) = server.api_get("/api/whoami").await;
    assert_eq!(
        (me["gateway"].as_bool(), me["egress_gateway"].as_bool()),
        (Some(true), Some(false))
    );

    // A restart keeps the month (SIGTERM saves it), and without the
    // loopback range allowed the gateway will not send a key there.
    gw.stop().await;
    let gw = gateway(dir.path(), &[]).await;
    let u = usage(&gw).await;
    assert_eq!(
        u["used"], 122,
        "the month's usage was kept across the restart: {u}"
    );
    let r = refused(format!("http://{}", gw.models)).await;
    assert_eq!(r.status(), 429);
    std::fs::write(
        dir.path().join("models/models.json"),
        json!({"providers": [{"name": "anthropic", "api": "anthropic", "baseUrl": base}],
               "caBundle": provider.ca})
        .to_string(),
    )
    .unwrap();
    let mut last = Value::Null;
    for _ in 0..50 {
        let r = refused(format!("http://{}", gw.models)).await;
        if r.status() == 403 {
            last = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = last["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("localhost resolves to") && text.contains("which is loopback"),
        "{last}"
    );
}
