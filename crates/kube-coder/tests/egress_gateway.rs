//! `kube-coder egress-gateway` as a workspace's programs meet it: the real
//! binary on 127.0.0.1 and the real curl through it. Refusals (an address,
//! a name off the list, a name resolving to a loopback address) are 403s
//! naming their rule, counted and listed; with the loopback range allowed,
//! a CONNECT tunnel and a plain-HTTP request reach local servers; a change
//! of the list file applies without a restart.
//! Local only: names resolve through /etc/hosts (`localhost`); the real
//! node's test (tests/cluster/tests/egress.rs) reaches public-range test
//! hosts through cluster DNS.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

struct Gateway {
    _child: tokio::process::Child,
    proxy: String,
    admin: String,
}

/// The gateway on ports of its own choosing, with this list.
fn command(allow_file: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(common::bin());
    c.args([
        "egress-gateway",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--allow-file",
    ])
    .arg(allow_file)
    // Its log says every decision; the test reads the answers instead.
    .stderr(Stdio::null());
    c
}

async fn gateway(allow_file: &Path, extra: &[&str]) -> Gateway {
    let mut child = command(allow_file)
        .args(extra)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway");
    let line = common::first_line(&mut child, "the gateway").await;
    // "kube-coder egress gateway: proxy on A, admin on B"
    let proxy = line
        .split("proxy on ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let admin = line.split("admin on ").nth(1).unwrap().trim().to_string();
    Gateway {
        _child: child,
        proxy,
        admin,
    }
}

/// A raw CONNECT; the status line's code, the refusal header, the body.
async fn connect(proxy: &str, target: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let header = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-kube-coder-egress-refusal:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, header, body)
}

/// A server that answers each HTTP request with its request line, its
/// Host, then its other headers.
async fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut lines = BufReader::new(s);
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_string());
                }
                let host = head
                    .iter()
                    .find(|l| l.to_ascii_lowercase().starts_with("host:"))
                    .cloned()
                    .unwrap_or_default();
                // The request line, the Host, then every other header.
                let rest: Vec<String> = head
                    .iter()
                    .skip(1)
                    .filter(|l| **l != host)
                    .cloned()
                    .collect();
                let body = format!(
                    "{}\n{}\n{}\n",
                    head.first().cloned().unwrap_or_default(),
                    host,
                    rest.join("\n")
                );
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = lines.get_mut().write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

async fn curl(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("NO_PROXY")
        .output()
        .await
        .expect("curl is installed (make test installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn refusals_name_their_rule_and_allowed_names_reach_their_servers() {
    let dir = tempfile::tempdir().unwrap();
    let port = http_server().await;
    let list = dir.path().join("allow");
    std::fs::write(
        &list,
        format!("# test list\nlocalhost:{port}\n*.example.com\n"),
    )
    .unwrap();

    // Loopback is not public: listed or not, localhost is refused.
    let gw = gateway(&list, &[]).await;
    let (code, why, body) = connect(&gw.proxy, &format!("localhost:{port}")).await;
    assert_eq!(
        (code, why.as_str()),
        (403, "refused_private_address"),
        "{body}"
    );
    assert!(
        body.contains("localhost resolves to") && body.contains("which is loopback"),
        "{body}"
    );
    let (code, why, body) = connect(&gw.proxy, &format!("127.0.0.1:{port}")).await;
    assert_eq!((code, why.as_str()), (403, "refused_address"), "{body}");
    assert!(body.contains("is an IP address"), "{body}");
    let (code, why, body) = connect(&gw.proxy, "registry.npmjs.org:443").await;
    assert_eq!((code, why.as_str()), (403, "refused_not_listed"), "{body}");
    assert!(
        body.contains("registry.npmjs.org:443 is not on this workspace's egress allow list (spec.network.egress.allowDomains)"),
        "{body}"
    );
    let (code, _, _) = connect(&gw.proxy, "localhost:22").await;
    assert_eq!(code, 403, "a port the entry does not name");
    // Plain HTTP is checked the same way; curl shows the 403.
    let (_, out, _) = curl(&[
        "-x",
        &format!("http://{}", gw.proxy),
        "-w",
        "%{http_code}",
        "http://pypi.org/simple/",
    ])
    .await;
    assert!(out.ends_with("403"), "{out}");
    assert!(
        out.contains("pypi.org:80 is not on this workspace's egress allow list"),
        "{out}"
    );

    // What the dashboard shows, newest first, and the counts.
    let refusals: Value =
        serde_json::from_str(&get_text(&format!("http://{}/refusals", gw.admin)).await).unwrap();
    let list_seen: Vec<&str> = refusals["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(
        list_seen,
        [
            "pypi.org",
            "localhost",
            "registry.npmjs.org",
            "127.0.0.1",
            "localhost"
        ]
    );
    assert_eq!(refusals["refusals"][0]["decision"], "refused_not_listed");
    let metrics = get_text(&format!("http://{}/metrics", gw.admin)).await;
    assert!(
        metrics.contains(r#"egress_requests_total{decision="refused_not_listed"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"egress_requests_total{decision="refused_private_address"} 1"#),
        "{metrics}"
    );
    drop(gw);

    // With loopback allowed (as allowCIDRs would), real clients get through.
    let gw = gateway(&list, &["--allow-cidr", "127.0.0.0/8,::1/128"]).await;
    let proxy = format!("http://{}", gw.proxy);
    let url = format!("http://localhost:{port}/some/path?q=1");
    let (code, out, err) = curl(&["-x", &proxy, &url]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("GET /some/path?q=1 HTTP/1.1\n"),
        "forwarded in origin form: {out}"
    );
    assert!(out.contains(&format!("Host: localhost:{port}")), "{out}");
    // Headers of the client's hop stay with the gateway.
    let (code, out, err) = curl(&[
        "-x",
        &proxy,
        "-H",
        "Connection: x-hop",
        "-H",
        "X-Hop: secret",
        "-H",
        "X-Kept: yes",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("X-Kept: yes"), "{out}");
    assert!(
        !out.to_ascii_lowercase().contains("x-hop"),
        "a hop-by-hop header was forwarded: {out}"
    );
    assert!(
        !out.to_ascii_lowercase().contains("proxy-connection"),
        "{out}"
    );
    // Through a CONNECT tunnel (curl -p), as HTTPS would go.
    let (code, out, err) = curl(&["-p", "-x", &proxy, &url]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("GET /some/path?q=1 HTTP/1.1\n"), "{out}");
    let metrics = get_text(&format!("http://{}/metrics", gw.admin)).await;
    assert!(
        metrics.contains(r#"egress_requests_total{decision="allowed"} 3"#),
        "{metrics}"
    );

    // The list changes on disk (a rename, as a ConfigMap update does):
    // the running gateway follows. No name here needs DNS.
    let other = http_server().await;
    let next = dir.path().join("allow.next");
    std::fs::write(&next, format!("localhost:{other}\n")).unwrap();
    std::fs::rename(&next, &list).unwrap();
    let mut followed = false;
    for _ in 0..50 {
        if connect(&gw.proxy, &format!("localhost:{port}")).await.1 == "refused_not_listed" {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        followed,
        "the gateway still allows a name taken off its list"
    );
    let other_url = format!("http://localhost:{other}/");
    let (code, out, err) = curl(&["-p", "-x", &proxy, &other_url]).await;
    assert_eq!(code, 0, "the newly listed port: {err}");
    assert!(out.starts_with("GET / HTTP/1.1"), "{out}");
    // A list that does not parse leaves the one in force.
    std::fs::write(&next, "10.0.0.1\n").unwrap();
    std::fs::rename(&next, &list).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, _, err) = curl(&["-p", "-x", &proxy, &other_url]).await;
    assert_eq!(code, 0, "a bad list replaced the good one: {err}");
}

#[tokio::test]
async fn a_bad_list_or_a_missing_file_stops_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("allow");
    std::fs::write(&list, "good.example.com\nbad name\n").unwrap();
    let out = command(&list)
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not valid: line 2: `bad name` is not a host name"),
        "{err}"
    );
    let out = tokio::process::Command::new(common::bin())
        .args(["egress-gateway", "--allow-file"])
        .arg(dir.path().join("missing"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the egress allow list"), "{err}");
}

/// The dashboard's view of the gateway: `GET /api/egress/refusals` on the
/// workspace server relays the gateway's recent refusals; without a
/// gateway it says so; with the gateway gone, a 502 that says which.
#[tokio::test]
async fn the_workspace_server_shows_what_its_gateway_refused() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("allow");
    std::fs::write(&list, "*.example.com\n").unwrap();
    let gw = gateway(&list, &[]).await;
    let (code, _, _) = connect(&gw.proxy, "registry.npmjs.org:443").await;
    assert_eq!(code, 403);
    let gateway_url = format!("http://{}", gw.admin);
    let server =
        common::Workspace::start(&["--egress-gateway-url", &gateway_url, "--egress-by-name"]).await;
    let (code, body) = server.api_get("/api/egress/refusals").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["gateway"], true);
    assert_eq!(body["refusals"][0]["host"], "registry.npmjs.org");
    assert_eq!(body["refusals"][0]["decision"], "refused_not_listed");
    assert!(body["refusals"][0]["message"]
        .as_str()
        .unwrap()
        .contains("is not on this workspace's egress allow list"));
    let (_, me) = server.api_get("/api/whoami").await;
    assert_eq!(me["egress_gateway"], true);

    drop(gw);
    let (code, body) = server.api_get("/api/egress/refusals").await;
    assert_eq!(code, 502, "{body}");
    assert_eq!(body["code"], "egress_gateway_unreachable");
    assert!(
        body["error"].as_str().unwrap().contains(&gateway_url),
        "{body}"
    );

    let plain = common::Workspace::start(&[]).await;
    let (code, body) = plain.api_get("/api/egress/refusals").await;
    assert_eq!(code, 200);
    assert_eq!(body, serde_json::json!({"gateway": false, "refusals": []}));
    let (_, me) = plain.api_get("/api/whoami").await;
    assert_eq!(me["egress_gateway"], false);
}
