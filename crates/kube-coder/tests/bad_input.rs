//! Bad input everywhere: malformed JSON, wrong types, oversize bodies,
//! unknown ids, unknown routes and methods. Every answer must be a 4xx JSON
//! error whose message names the problem; never a 5xx, never a panic.
//! Starts: `kube-coder serve`, tmux.

mod common;

use std::time::Duration;

use common::Workspace;
use reqwest::Method;

struct Case {
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    status: u16,
    /// A word the error message must contain.
    mentions: &'static str,
}

fn case(
    method: &'static str,
    path: impl Into<String>,
    body: &str,
    status: u16,
    mentions: &'static str,
) -> Case {
    Case {
        method,
        path: path.into(),
        content_type: if body.is_empty() {
            None
        } else {
            Some("application/json")
        },
        body: body.as_bytes().to_vec(),
        headers: Vec::new(),
        status,
        mentions,
    }
}

#[tokio::test]
async fn every_endpoint_answers_bad_input_with_a_named_4xx() {
    let ws = Workspace::start(&["--max-json-bytes", "65536"]).await;
    let id = ws.create_fake().await;
    let t = |p: &str| p.replace("{id}", &id);
    let big = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(70_000));
    let mut cases = vec![
        // create
        case("POST", "/api/tasks", "{", 400, "EOF"),
        case("POST", "/api/tasks", r#"{"prompt": 5}"#, 400, "prompt"),
        case("POST", "/api/tasks", r#"{"env": "x"}"#, 400, "env"),
        case("POST", "/api/tasks", r#"{"env": {"A": 1}}"#, 400, "env"),
        case("POST", "/api/tasks", r#"{"bogus": 1}"#, 400, "bogus"),
        case("POST", "/api/tasks", "[]", 400, "struct"),
        case("POST", "/api/tasks", "null", 400, "null"),
        case("POST", "/api/tasks", r#"{"assistant":"nope"}"#, 400, "nope"),
        case("POST", "/api/tasks", r#"{"prompt":"a\u0000b"}"#, 400, "NUL"),
        case(
            "POST",
            "/api/tasks",
            &format!(r#"{{"name":"{}"}}"#, "n".repeat(300)),
            400,
            "name",
        ),
        case("POST", "/api/tasks", r#"{"name":"a\nb"}"#, 400, "control"),
        case(
            "POST",
            "/api/tasks",
            r#"{"workdir":"/etc"}"#,
            400,
            "outside",
        ),
        case("POST", "/api/tasks", r#"{"env":{"1BAD":"x"}}"#, 400, "1BAD"),
        case("POST", "/api/tasks", &big, 413, "length limit"),
        // message and keys
        case("POST", t("/api/tasks/{id}/message"), "{", 400, "EOF"),
        case(
            "POST",
            t("/api/tasks/{id}/message"),
            r#"{"text": ["a"]}"#,
            400,
            "text",
        ),
        case("POST", t("/api/tasks/{id}/message"), "{}", 400, "text"),
        case(
            "POST",
            t("/api/tasks/{id}/message"),
            r#"{"text":"a\u0000"}"#,
            400,
            "NUL",
        ),
        case(
            "POST",
            "/api/tasks/0123456789ab/message",
            r#"{"text":"hi"}"#,
            404,
            "0123456789ab",
        ),
        case(
            "POST",
            t("/api/tasks/{id}/keys"),
            r#"{"keys":"Enter"}"#,
            400,
            "keys",
        ),
        case(
            "POST",
            t("/api/tasks/{id}/keys"),
            r#"{"keys":[]}"#,
            400,
            "between 1 and 32",
        ),
        case(
            "POST",
            t("/api/tasks/{id}/keys"),
            &format!(r#"{{"keys":[{}]}}"#, vec!["\"y\""; 33].join(",")),
            400,
            "between 1 and 32",
        ),
        case(
            "POST",
            t("/api/tasks/{id}/keys"),
            r#"{"keys":["rm -rf /"]}"#,
            400,
            "rm -rf /",
        ),
        case(
            "POST",
            "/api/tasks/0123456789ab/keys",
            r#"{"keys":["y"]}"#,
            404,
            "0123456789ab",
        ),
        // list, detail, output, stream, kill
        case("GET", "/api/tasks?limit=abc", "", 400, "limit"),
        case("GET", "/api/tasks?limit=0", "", 400, "limit"),
        case("GET", "/api/tasks?limit=100000", "", 400, "limit"),
        case("GET", "/api/tasks?state=done", "", 400, "done"),
        case("GET", "/api/tasks?cursor=x", "", 400, "cursor"),
        case("GET", "/api/tasks?color=red", "", 400, "color"),
        case("GET", "/api/tasks/0123456789ab", "", 404, "0123456789ab"),
        case(
            "GET",
            "/api/tasks/..%2F..%2Fetc%2Fpasswd",
            "",
            404,
            "etc/passwd",
        ),
        case(
            "GET",
            format!("/api/tasks/{}", "z".repeat(5000)),
            "",
            404,
            "zzz",
        ),
        case("GET", t("/api/tasks/{id}/output?tail=-1"), "", 400, "tail"),
        case("GET", t("/api/tasks/{id}/output?tail=abc"), "", 400, "tail"),
        case(
            "GET",
            t("/api/tasks/{id}/output?tail=99999999"),
            "",
            400,
            "tail",
        ),
        case(
            "GET",
            "/api/tasks/0123456789ab/output",
            "",
            404,
            "0123456789ab",
        ),
        case("GET", t("/api/tasks/{id}/stream?from=abc"), "", 400, "from"),
        case(
            "GET",
            "/api/tasks/0123456789ab/stream",
            "",
            404,
            "0123456789ab",
        ),
        case("DELETE", "/api/tasks/0123456789ab", "", 404, "0123456789ab"),
        case(
            "GET",
            "/api/claude/tasks/0123456789ab",
            "",
            404,
            "0123456789ab",
        ),
        // files
        case("GET", "/api/files?path=nope", "", 404, "nope"),
        case("GET", "/api/files?path=a%00b", "", 400, "NUL"),
        case("GET", "/api/files?path=../x", "", 400, ".."),
        case("GET", "/api/files?bogus=1", "", 400, "bogus"),
        case("GET", "/api/files/content?path=", "", 400, "directory"),
        case(
            "GET",
            "/api/files/content?path=nope.txt",
            "",
            404,
            "nope.txt",
        ),
        case(
            "GET",
            "/api/files/content?path=x&recursive=maybe",
            "",
            400,
            "recursive",
        ),
        case(
            "PUT",
            "/api/files/content?path=",
            "x",
            400,
            "below the home root",
        ),
        case(
            "PUT",
            "/api/files/content?path=no/such/dir/f",
            "x",
            404,
            "no/such/dir/f",
        ),
        case("POST", "/api/files/mkdir", "{", 400, "EOF"),
        case("POST", "/api/files/mkdir", r#"{"path": 1}"#, 400, "path"),
        case("POST", "/api/files/rename", r#"{"from": "a"}"#, 400, "to"),
        case(
            "POST",
            "/api/files/rename",
            r#"{"from": "nope", "to": "b"}"#,
            404,
            "nope",
        ),
        case(
            "POST",
            "/api/files/extract",
            r#"{"path": "nope.zip", "dest": "d"}"#,
            404,
            "nope.zip",
        ),
        case(
            "POST",
            "/api/files/extract",
            r#"{"path": "a.zip", "dest": ""}"#,
            400,
            "new directory",
        ),
        case("DELETE", "/api/files?path=", "", 400, "home itself"),
        case("DELETE", "/api/files?path=nope", "", 404, "nope"),
        case("PATCH", "/api/files", "", 405, "PATCH"),
        // hooks
        case("POST", "/api/tasks", r#"{"hook": "http://x"}"#, 400, "hook"),
        case(
            "POST",
            "/api/tasks",
            r#"{"hook": {"secret": "s"}}"#,
            400,
            "url",
        ),
        case(
            "POST",
            "/api/tasks",
            r#"{"hook": {"url": "http://127.0.0.1/"}}"#,
            400,
            "loopback",
        ),
        case(
            "POST",
            "/api/tasks",
            r#"{"hook": {"url": "https://a.test", "secret": ""}}"#,
            400,
            "secret",
        ),
        case("GET", "/api/hooks/deliveries?state=lost", "", 400, "lost"),
        case("GET", "/api/hooks/deliveries?limit=0", "", 400, "limit"),
        case("GET", "/api/hooks/deliveries?x=1", "", 400, "x"),
        case(
            "POST",
            "/api/hooks/deliveries/nope/redeliver",
            "",
            404,
            "nope",
        ),
        case(
            "GET",
            "/api/hooks/deliveries/nope/redeliver",
            "",
            405,
            "GET",
        ),
        // unknown routes and methods
        case("GET", "/api/nothing", "", 404, "/api/nothing"),
        case("GET", "/api/tasks/a/b/c/d", "", 404, "/api/tasks/a/b/c/d"),
        case("GET", "/../../etc/passwd", "", 404, "no route"),
        case("PUT", "/api/tasks", "{}", 405, "PUT"),
        case("PATCH", t("/api/tasks/{id}"), "{}", 405, "PATCH"),
        case("DELETE", "/api/events", "", 405, "DELETE"),
        case("POST", "/metrics", "", 405, "POST"),
        case("POST", "/livez", "", 405, "POST"),
        case("GET", t("/api/tasks/{id}/message"), "", 405, "GET"),
        case("POST", "/api/whoami", "", 405, "POST"),
    ];
    // No content type, and a body that is not UTF-8.
    cases.push(Case {
        content_type: None,
        ..case(
            "POST",
            "/api/tasks",
            r#"{"assistant":"fake"}"#,
            415,
            "Content-Type",
        )
    });
    cases.push(Case {
        body: vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'],
        ..case("POST", "/api/tasks", "x", 400, "")
    });
    cases.push(Case {
        headers: vec![("last-event-id", "yesterday".into())],
        ..case("GET", t("/api/tasks/{id}/stream"), "", 400, "Last-Event-ID")
    });

    let mut failures = Vec::new();
    for c in &cases {
        let mut req = ws
            .client
            .request(
                Method::from_bytes(c.method.as_bytes()).unwrap(),
                format!("{}{}", ws.api, c.path),
            )
            .header("authorization", ws.bearer())
            .body(c.body.clone());
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in &c.headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = r.text().await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let msg = v["error"].as_str().unwrap_or("");
        let ok = status == c.status
            && ctype.starts_with("application/json")
            && v["code"].is_string()
            && msg.contains(c.mentions);
        if !ok {
            failures.push(format!(
                "{} {:.60} → {status} {ctype} {body:.200} (want {} mentioning {:?})",
                c.method, c.path, c.status, c.mentions
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The same checks hold on the dashboard listener, and the server is fine.
    let r = ws
        .client
        .post(format!("{}/auth/login", ws.dashboard))
        .header("content-type", "application/json")
        .header("sec-fetch-site", "same-origin")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, _) = ws.api_get("/livez").await;
    assert_eq!(s, 200);
    let metrics = ws.metrics_text().await;
    assert!(
        !metrics.contains("status=\"5"),
        "a 5xx was answered:\n{metrics}"
    );
    assert!(!ws.log().contains("panicked"));
}

/// Read what the server sends until it closes the connection (or `limit`
/// passes); `None` if it was still open then.
async fn read_until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// Slow, silent and idle connections are closed after the header timeout,
/// and one address cannot hold more than its share of connections.
#[tokio::test]
async fn slow_silent_idle_and_too_many_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let ws = Workspace::start(&[
        "--header-timeout-secs",
        "1",
        "--max-connections-per-peer",
        "4",
    ])
    .await;
    let addr = ws.api.trim_start_matches("http://").to_string();
    let limit = Duration::from_secs(5);
    // Silence.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(
        read_until_closed(&mut silent, limit).await.is_some(),
        "a silent connection stayed open"
    );
    // Headers that never end.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut slow, limit).await.is_some(),
        "partial headers kept it open"
    );
    // Idle after an answer (keep-alive).
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle, limit)
        .await
        .expect("an idle keep-alive stayed open");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Four connections from one address are held; the fifth is refused
    // with a 429 that says why, and a place frees when one closes.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        // Keep each busy with an unfinished request head (the timeout is
        // 1 s: open and check quickly).
        s.write_all(b"GET /livez HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    extra
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let refused = read_until_closed(&mut extra, limit).await.expect("closed");
    assert!(
        refused.starts_with("HTTP/1.1 429") && refused.contains("too_many_connections"),
        "{refused}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, _) = ws.api_get("/api/tasks").await;
    assert_eq!(s, 200, "a place was not given back");
}
