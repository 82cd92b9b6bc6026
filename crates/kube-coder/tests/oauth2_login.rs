//! oauth2 mode behind the real oauth2-proxy, configured with the very
//! arguments the operator gives its sidecar, against a local OpenID
//! Connect provider (mockoidc): a person logs in through the redirects and
//! reaches the server as themselves; a person not on the allow list is
//! refused by the server; a forged identity header sent through the proxy
//! changes nothing. The operator's waker reads who the sessions the proxy
//! made are for, with the cookie secret alone (as it does while the proxy
//! is stopped). Starts: mockoidc, oauth2-proxy, `kube-coder serve`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::Workspace;
use operator::waker::oauth2_session as session;
use reqwest::cookie::{CookieStore, Jar};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn tool(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run `make test`, or `hack/build.sh && eval \"$(hack/tools-env)\"`"
        )
    });
    assert!(
        path.exists(),
        "{} is missing: run hack/build.sh",
        path.display()
    );
    path
}

struct Oidc {
    _child: Child,
    issuer: String,
    client_id: String,
    client_secret: String,
    control: String,
}

async fn start_oidc() -> Oidc {
    let mut child = Command::new(tool("KUBE_CODER_MOCKOIDC"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start mockoidc");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("mockoidc did not start")
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    Oidc {
        issuer: s("issuer"),
        client_id: s("client_id"),
        client_secret: s("client_secret"),
        control: s("control"),
        _child: child,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// oauth2-proxy as the operator's sidecar, moved to test ports and plain
/// HTTP: the child, its address and its cookie secret.
async fn start_proxy(oidc: &Oidc, upstream: &str) -> (Child, String, String) {
    let spec: operator::crd::WorkspaceSpec = serde_json::from_value(serde_json::json!({
        "owner": {"name": "alice", "email": "alice@example.com"},
        "auth": {"type": "oauth2", "oauth2": {"provider": "oidc", "issuerUrl": oidc.issuer, "clientSecretRef": "oidc"}},
    }))
    .unwrap();
    let ws = operator::crd::Workspace::new("alice", spec);
    let sidecar =
        operator::manifests::oauth2_proxy::sidecar(&ws, &operator::settings::Settings::default());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let args: Vec<String> = sidecar
        .args
        .unwrap()
        .into_iter()
        .map(|a| match a.split_once('=') {
            Some(("--http-address", _)) => format!("--http-address=127.0.0.1:{port}"),
            Some(("--upstream", _)) => format!("--upstream={upstream}/"),
            // The test speaks plain HTTP; the pod sits behind TLS.
            Some(("--cookie-secure", _)) => "--cookie-secure=false".into(),
            _ => a,
        })
        .chain([format!("--redirect-url={base}/oauth2/callback")])
        .collect();
    let mut cookie_secret = [0u8; 32];
    for (i, b) in cookie_secret.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(port as u8);
    }
    let env: Vec<String> = sidecar.env.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(
        env,
        [
            "OAUTH2_PROXY_CLIENT_ID",
            "OAUTH2_PROXY_CLIENT_SECRET",
            "OAUTH2_PROXY_COOKIE_SECRET"
        ]
    );
    // 32 hex characters: not base64 of an AES key length, so the proxy
    // keys AES with the string itself (the operator's own secrets are
    // base64url of 32 bytes; the waker's unit tests take both).
    let cookie_secret = hex::encode(&cookie_secret[..16]);
    let child = Command::new(tool("KUBE_CODER_OAUTH2_PROXY"))
        .args(&args)
        .env("OAUTH2_PROXY_CLIENT_ID", &oidc.client_id)
        .env("OAUTH2_PROXY_CLIENT_SECRET", &oidc.client_secret)
        .env("OAUTH2_PROXY_COOKIE_SECRET", &cookie_secret)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start oauth2-proxy");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/ping")).send().await {
            if r.status() == 200 {
                return (child, base, cookie_secret);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("oauth2-proxy did not answer /ping; args {args:?}");
}

/// A browser-like client: keeps cookies (in the jar), follows the login
/// redirects.
fn browser(jar: Arc<Jar>) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
        .unwrap()
}

/// Make `user`@example.com the next to log in, then open `/api/whoami`
/// through the proxy in a fresh browser, following the login redirects.
async fn log_in(
    oidc: &Oidc,
    base: &str,
    user: &str,
) -> (reqwest::Client, reqwest::Response, Arc<Jar>) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/queue?email={user}@example.com&username={user}",
            oidc.control
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let jar = Arc::new(Jar::default());
    let client = browser(jar.clone());
    let r = client
        .get(format!("{base}/api/whoami"))
        .send()
        .await
        .unwrap();
    (client, r, jar)
}

#[tokio::test]
async fn people_log_in_through_the_real_proxy_and_only_the_allowed_get_in() {
    let oidc = start_oidc().await;
    let ws = Workspace::start(&["--auth", "oauth2", "--allowed-users", "alice@example.com"]).await;
    let (_proxy, base, cookie_secret) = start_proxy(&oidc, &ws.dashboard).await;

    // Without a login the proxy answers; the server is not reached.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/api/whoami"))
        .header("x-forwarded-user", "alice")
        .header("x-forwarded-email", "alice@example.com")
        .send()
        .await
        .unwrap();
    assert_ne!(
        r.status(),
        200,
        "an unauthenticated request reached the server"
    );

    // Alice logs in (proxy → provider → callback → back) and is herself.
    let (_alice, r, alice_jar) = log_in(&oidc, &base, "alice").await;
    assert_eq!(r.status(), 200, "login failed at {}", r.url());
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["via"], "oauth2", "{me}");
    assert!(me["user"].as_str().unwrap().contains("alice"), "{me}");

    // Mallory logs in too, but is not on the server's allow list, and
    // claiming to be Alice through the proxy does not help.
    let (mallory, r, mallory_jar) = log_in(&oidc, &base, "mallory").await;
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "not_allowed", "{v}");
    for (name, value) in [
        ("x-forwarded-user", "alice"),
        ("x-forwarded-email", "alice@example.com"),
        ("x-auth-request-email", "alice@example.com"),
    ] {
        let r = mallory
            .get(format!("{base}/api/whoami"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_ne!(
            r.status(),
            200,
            "a forged {name} through the proxy let Mallory in"
        );
    }

    // While the proxy is stopped, the waker tells who each session is for
    // from the cookie and the secret alone (and its allow list, the
    // server's, then keeps Mallory out), and takes no other proxy's.
    let url: reqwest::Url = base.parse().unwrap();
    for (jar, email) in [
        (&alice_jar, "alice@example.com"),
        (&mallory_jar, "mallory@example.com"),
    ] {
        let cookies = jar.cookies(&url).expect("the proxy set a session cookie");
        let cookies = cookies.to_str().unwrap();
        let now = std::time::SystemTime::now();
        let who = session::identity([cookies].into_iter(), &cookie_secret, now)
            .unwrap_or_else(|e| panic!("{email}'s session: {e}"));
        assert_eq!(who.email.as_deref(), Some(email), "{who:?}");
        assert_eq!(
            session::identity(
                [cookies].into_iter(),
                "0123456789abcdef0123456789abcdef",
                now
            ),
            Err(session::SessionError::BadSignature)
        );
        let later = now + session::COOKIE_LIFETIME + Duration::from_secs(60);
        assert_eq!(
            session::identity([cookies].into_iter(), &cookie_secret, later),
            Err(session::SessionError::Expired)
        );
    }
}
