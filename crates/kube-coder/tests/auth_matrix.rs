//! The auth matrix: every route × every auth mode × every kind of
//! credential, on both listeners, against the real binary. Each answer is
//! pinned by the rules of docs/api.md and docs/configuration.md, written
//! out in `expected`; `the_matrix_covers_every_route_the_router_serves`
//! fails when router.rs serves a route that `ROUTES` lacks.
//! Starts: one `kube-coder serve` per mode, tmux.

mod common;

use std::fmt;

use common::{write_htpasswd, Workspace};
use reqwest::Method;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Auth {
    Basic,
    Oauth2,
    Token,
    None,
}

struct Mode {
    name: &'static str,
    auth: Auth,
    read_only: bool,
    /// Our test client (127.0.0.1) is a trusted proxy peer.
    proxy_trusted: bool,
    flags: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cred {
    Nothing,
    /// The dashboard mode's own credential: basic password, proxy headers,
    /// session cookie (nothing in `none` mode).
    ModeCredential,
    /// `X-Auth-Request-User` sent straight by the client.
    ForgedIdentity,
    GoodBearer,
    WrongBearer,
}

const CREDS: [Cred; 5] = [
    Cred::Nothing,
    Cred::ModeCredential,
    Cred::ForgedIdentity,
    Cred::GoodBearer,
    Cred::WrongBearer,
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Listener {
    Dashboard,
    Api,
}

#[derive(Clone, Copy)]
struct Route {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    /// Answer when allowed, in a writable workspace with a live task.
    ok: u16,
}

/// A path no route serves: 404 whoever asks.
const NO_ROUTE: u16 = 0;

impl Route {
    fn writes(&self) -> bool {
        self.method != "GET" && self.method != "HEAD"
    }
    fn needs_task(&self) -> bool {
        self.path.contains("{id}")
    }
}

const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/livez",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/readyz",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/metrics",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/activity",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/tasks",
        body: None,
        ok: 200,
    },
    Route {
        method: "POST",
        path: "/api/tasks",
        body: Some(r#"{"assistant":"fake"}"#),
        ok: 201,
    },
    Route {
        method: "GET",
        path: "/api/tasks/{id}",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/tasks/{id}/output",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/tasks/{id}/stream",
        body: None,
        ok: 200,
    },
    Route {
        method: "POST",
        path: "/api/tasks/{id}/message",
        body: Some(r#"{"text":"hi"}"#),
        ok: 202,
    },
    Route {
        method: "POST",
        path: "/api/tasks/{id}/keys",
        body: Some(r#"{"keys":["Enter"]}"#),
        ok: 202,
    },
    Route {
        method: "DELETE",
        path: "/api/tasks/{id}",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/claude/tasks",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/claude/tasks/{id}",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/events",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/assistants",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/whoami",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/system",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/egress/refusals",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/usage",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/builds",
        body: None,
        ok: 200,
    },
    // No operator here: the build is refused, after the caller is let in.
    Route {
        method: "POST",
        path: "/api/builds?tag=r.io/team/app",
        body: None,
        ok: 409,
    },
    // No such build: named as missing, after the caller is let in.
    Route {
        method: "GET",
        path: "/api/builds/b000000000000/log",
        body: None,
        ok: 404,
    },
    Route {
        method: "GET",
        path: "/api/webhooks",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/files?path=",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/files/watch?path=",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/files/content?path=seed.txt",
        body: None,
        ok: 200,
    },
    Route {
        method: "PUT",
        path: "/api/files/content?path=up.txt",
        body: Some("uploaded"),
        ok: 201,
    },
    Route {
        method: "POST",
        path: "/api/files/mkdir",
        body: Some(r#"{"path":"made","parents":true}"#),
        ok: 201,
    },
    Route {
        method: "GET",
        path: "/api/hooks/deliveries",
        body: None,
        ok: 200,
    },
    Route {
        method: "POST",
        path: "/api/claude/tasks",
        body: Some(r#"{"assistant":"fake"}"#),
        ok: 201,
    },
    Route {
        method: "GET",
        path: "/api/claude/tasks/{id}/output",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/claude/tasks/{id}/stream",
        body: None,
        ok: 200,
    },
    Route {
        method: "POST",
        path: "/api/claude/tasks/{id}/message",
        body: Some(r#"{"text":"hi"}"#),
        ok: 202,
    },
    Route {
        method: "POST",
        path: "/api/claude/tasks/{id}/keys",
        body: Some(r#"{"keys":["Enter"]}"#),
        ok: 202,
    },
    Route {
        method: "DELETE",
        path: "/api/claude/tasks/{id}",
        body: None,
        ok: 200,
    },
    Route {
        method: "GET",
        path: "/api/tasks/{id}/terminal",
        body: None,
        ok: 400,
    },
    Route {
        method: "GET",
        path: "/api/claude/tasks/{id}/terminal",
        body: None,
        ok: 400,
    },
    Route {
        method: "HEAD",
        path: "/api/files/content?path=seed.txt",
        body: None,
        ok: 200,
    },
    Route {
        method: "POST",
        path: "/api/files/upload?path=up2.txt",
        body: Some("uploaded"),
        ok: 201,
    },
    Route {
        method: "POST",
        path: "/api/files/rename",
        body: Some(r#"{"from":"no-such-file","to":"x"}"#),
        ok: 404,
    },
    Route {
        method: "POST",
        path: "/api/files/extract",
        body: Some(r#"{"path":"no-such.zip","dest":"x"}"#),
        ok: 404,
    },
    Route {
        method: "DELETE",
        path: "/api/files?path=no-such-file",
        body: None,
        ok: 404,
    },
    Route {
        method: "POST",
        path: "/api/hooks/deliveries/0123456789ab/redeliver",
        body: None,
        ok: 404,
    },
    Route {
        method: "GET",
        path: "/api/schedules",
        body: None,
        ok: 200,
    },
    Route {
        method: "POST",
        path: "/api/schedules",
        body: Some(r#"{"name":"m{n}","cron":"0 3 * * *","prompt":"p","assistant":"fake"}"#),
        ok: 201,
    },
    Route {
        method: "DELETE",
        path: "/api/schedules/0123456789ab",
        body: None,
        ok: 404,
    },
    Route {
        method: "PATCH",
        path: "/api/schedules/0123456789ab",
        body: Some(r#"{"paused":true}"#),
        ok: 404,
    },
    Route {
        method: "GET",
        path: "/api/schedules/0123456789ab/firings",
        body: None,
        ok: 404,
    },
    Route {
        method: "POST",
        path: "/api/schedules/0123456789ab/run",
        body: None,
        ok: 404,
    },
    Route {
        method: "POST",
        path: "/api/webhooks",
        body: Some(r#"{"name":"w{n}","prompt_template":"p","assistant":"fake"}"#),
        ok: 201,
    },
    Route {
        method: "PATCH",
        path: "/api/webhooks/0123456789ab",
        body: Some(r#"{"paused":true}"#),
        ok: 404,
    },
    Route {
        method: "GET",
        path: "/api/webhooks/0123456789ab/deliveries",
        body: None,
        ok: 404,
    },
    Route {
        method: "DELETE",
        path: "/api/webhooks/0123456789ab",
        body: None,
        ok: 404,
    },
    Route {
        method: "POST",
        path: "/api/webhooks/0123456789ab",
        body: Some("{}"),
        ok: 401,
    },
    Route {
        method: "GET",
        path: "/assets/no-such-asset.js",
        body: None,
        ok: 404,
    },
    Route {
        method: "POST",
        path: "/auth/login",
        body: Some(r#"{"token":"not-the-token-0000000000"}"#),
        ok: 401,
    },
    Route {
        method: "POST",
        path: "/auth/logout",
        body: None,
        ok: 204,
    },
    Route {
        method: "POST",
        path: "/api/token",
        body: None,
        ok: 201,
    },
    Route {
        method: "GET",
        path: "/no/such/route",
        body: None,
        ok: NO_ROUTE,
    },
    Route {
        method: "GET",
        path: "/Cargo.toml",
        body: None,
        ok: NO_ROUTE,
    },
];

/// The rules, from the spec, in one place.
fn expected(mode: &Mode, l: Listener, cred: Cred, r: &Route) -> u16 {
    if r.path == "/livez" || r.path == "/readyz" {
        return 200;
    }
    // Unknown paths never fall through to files.
    if r.ok == NO_ROUTE {
        return 404;
    }
    let receive = r.method == "POST" && r.path.starts_with("/api/webhooks/");
    match l {
        Listener::Api => {
            // The app, its files and the login are the dashboard's.
            if r.path == "/" || r.path.starts_with("/assets/") || r.path.starts_with("/auth/") {
                return 404;
            }
            // A delivery proves itself by its signature; a token is none.
            if receive {
                return 401;
            }
            if cred != Cred::GoodBearer {
                return 401;
            }
        }
        // Login and logout are public, and browsers must send them from
        // our pages (the matrix sends that proof with browser credentials
        // only); logging in with a token is for token mode.
        Listener::Dashboard if r.path.starts_with("/auth/") => {
            let bearer = matches!(cred, Cred::GoodBearer | Cred::WrongBearer);
            if r.path == "/auth/login" && mode.auth != Auth::Token {
                return 400;
            }
            if bearer {
                return 403;
            }
            return r.ok;
        }
        Listener::Dashboard if r.path.starts_with("/assets/") && mode.auth == Auth::Token => {
            return 404;
        }
        // Deliveries are received on the api listener only; here the path
        // edits and deletes a definition, and a delivery, whoever sends
        // it, is told where to go.
        Listener::Dashboard if receive => return 421,
        Listener::Dashboard => {
            // Scrapes and the operator's idle check are api-listener only.
            if r.path == "/metrics" || r.path == "/api/activity" {
                return 404;
            }
            if r.path == "/" && mode.auth == Auth::Token {
                return 200;
            }
            let authed = match cred {
                Cred::GoodBearer => true,
                Cred::WrongBearer => false,
                Cred::Nothing => mode.auth == Auth::None,
                Cred::ModeCredential => match mode.auth {
                    Auth::Oauth2 => mode.proxy_trusted,
                    _ => true,
                },
                // Identity headers count only from a trusted proxy peer.
                Cred::ForgedIdentity => match mode.auth {
                    Auth::Oauth2 => mode.proxy_trusted,
                    Auth::None => true,
                    _ => false,
                },
            };
            if !authed {
                return 401;
            }
        }
    }
    // A WebSocket opened with a browser credential must come from our page;
    // then a plain GET is refused as not a WebSocket. Both come before the
    // task is looked up.
    if r.path.ends_with("/terminal") {
        if l == Listener::Dashboard && cred != Cred::GoodBearer {
            return 403;
        }
        return 400;
    }
    if r.writes() && mode.read_only {
        return 403;
    }
    // Read-only workspaces have no task: the id is unknown.
    if r.needs_task() && mode.read_only {
        return 404;
    }
    r.ok
}

fn modes(dir: &std::path::Path) -> Vec<Mode> {
    let htpasswd = dir.join("htpasswd");
    write_htpasswd(&htpasswd, "alice", "alice-pw");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        Mode {
            name: "basic",
            auth: Auth::Basic,
            read_only: false,
            proxy_trusted: false,
            flags: s(&[
                "--auth",
                "basic",
                "--htpasswd-file",
                htpasswd.to_str().unwrap(),
            ]),
        },
        Mode {
            name: "oauth2 (client is the trusted proxy)",
            auth: Auth::Oauth2,
            read_only: false,
            proxy_trusted: true,
            flags: s(&["--auth", "oauth2", "--trusted-proxy-cidrs", "127.0.0.1/32"]),
        },
        Mode {
            name: "oauth2 (client outside trusted CIDRs)",
            auth: Auth::Oauth2,
            read_only: false,
            proxy_trusted: false,
            flags: s(&["--auth", "oauth2", "--trusted-proxy-cidrs", "10.0.0.0/8"]),
        },
        Mode {
            name: "oauth2 (TRUSTED_PROXY=false)",
            auth: Auth::Oauth2,
            read_only: false,
            proxy_trusted: false,
            flags: s(&["--auth", "oauth2", "--trusted-proxy", "false"]),
        },
        Mode {
            name: "token",
            auth: Auth::Token,
            read_only: false,
            proxy_trusted: false,
            flags: s(&["--auth", "token"]),
        },
        Mode {
            name: "token read-only",
            auth: Auth::Token,
            read_only: true,
            proxy_trusted: false,
            flags: s(&["--auth", "token", "--read-only"]),
        },
        Mode {
            name: "none read-only (public demo)",
            auth: Auth::None,
            read_only: true,
            proxy_trusted: false,
            flags: s(&["--auth", "none", "--read-only"]),
        },
        Mode {
            name: "basic read-only",
            auth: Auth::Basic,
            read_only: true,
            proxy_trusted: false,
            flags: s(&[
                "--auth",
                "basic",
                "--read-only",
                "--htpasswd-file",
                htpasswd.to_str().unwrap(),
            ]),
        },
    ]
}

struct Row {
    mode: &'static str,
    listener: Listener,
    cred: Cred,
    method: &'static str,
    path: &'static str,
    want: u16,
    got: u16,
    note: String,
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<40} {:<9} {:<15} {:<6} {:<28} want {} got {} {}",
            self.mode,
            format!("{:?}", self.listener),
            format!("{:?}", self.cred),
            self.method,
            self.path,
            self.want,
            self.got,
            self.note
        )
    }
}

async fn session_cookie(ws: &Workspace) -> String {
    ws.session_cookie().await
}

#[tokio::test]
async fn every_route_every_mode_every_credential() {
    let scratch = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    let mut sent = 0u64;
    for mode in modes(scratch.path()) {
        let flags: Vec<&str> = mode.flags.iter().map(String::as_str).collect();
        let mut all = flags.clone();
        all.extend(["--max-tasks", "200"]);
        let mut ws = Workspace::start(&all).await;
        std::fs::write(ws.home().join("seed.txt"), "seed").unwrap();
        let mut cookie = if mode.auth == Auth::Token {
            Some(session_cookie(&ws).await)
        } else {
            None
        };
        for listener in [Listener::Dashboard, Listener::Api] {
            for cred in CREDS {
                for route in ROUTES {
                    let id = if route.needs_task() && !mode.read_only {
                        ws.create_fake().await
                    } else {
                        "0123456789ab".to_string()
                    };
                    let base = match listener {
                        Listener::Dashboard => ws.dashboard.clone(),
                        Listener::Api => ws.api.clone(),
                    };
                    let url = format!("{base}{}", route.path.replace("{id}", &id));
                    let method = Method::from_bytes(route.method.as_bytes()).unwrap();
                    let mut req = ws.client.request(method, &url);
                    if let Some(b) = route.body {
                        // Names of schedules and webhooks are unique.
                        sent += 1;
                        let b = b.replace("{n}", &sent.to_string());
                        req = req.header("content-type", "application/json").body(b);
                    }
                    // Browser credentials come from our own page.
                    if route.writes() && cred != Cred::GoodBearer && cred != Cred::WrongBearer {
                        req = req.header("sec-fetch-site", "same-origin");
                    }
                    req = match cred {
                        Cred::Nothing => req,
                        Cred::GoodBearer => req.header("authorization", ws.bearer()),
                        Cred::WrongBearer => {
                            req.header("authorization", "Bearer not-the-token-0000000000")
                        }
                        Cred::ForgedIdentity => req
                            .header("x-forwarded-user", "alice")
                            .header("x-forwarded-email", "alice@example.com"),
                        Cred::ModeCredential => match mode.auth {
                            Auth::Basic => req.basic_auth("alice", Some("alice-pw")),
                            Auth::Oauth2 => req
                                .header("x-forwarded-user", "alice")
                                .header("x-forwarded-email", "alice@example.com"),
                            Auth::Token => req.header("cookie", cookie.clone().unwrap()),
                            Auth::None => req,
                        },
                    };
                    let resp = req.send().await.unwrap();
                    let got = resp.status().as_u16();
                    let is_sse = resp
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
                    let www = resp
                        .headers()
                        .get("www-authenticate")
                        .map(|v| v.to_str().unwrap().to_string());
                    let body = if is_sse {
                        String::new()
                    } else {
                        resp.text().await.unwrap()
                    };
                    let want = expected(&mode, listener, cred, route);
                    let mut note = String::new();
                    // No answer ever carries the API token.
                    if body.contains(&ws.token) {
                        note.push_str("LEAKS THE TOKEN ");
                    }
                    // (A HEAD answer has no body to check.)
                    if got >= 400 && route.method != "HEAD" {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                        if !v["code"].is_string() || !v["error"].is_string() {
                            note.push_str(&format!("not a JSON error: {body:.80} "));
                        }
                        if got == 403 && v["code"] != "read_only" && v["code"] != "cross_origin" {
                            note.push_str(&format!("403 code {} ", v["code"]));
                        }
                    }
                    // A new token was made: the old one and every session
                    // are gone; the rest of the matrix uses the new ones.
                    let logged_out = route.path == "/auth/logout" && got == 204;
                    if logged_out && mode.auth == Auth::Token {
                        cookie = Some(session_cookie(&ws).await);
                    }
                    if route.path == "/api/token" && got == 201 {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        ws.token = v["token"].as_str().unwrap().to_string();
                        if mode.auth == Auth::Token {
                            cookie = Some(session_cookie(&ws).await);
                        }
                    }
                    if got == 401
                        && listener == Listener::Dashboard
                        && mode.auth == Auth::Basic
                        && www.is_none()
                    {
                        note.push_str("no Basic challenge ");
                    }
                    if route.path == "/api/whoami" && got == 200 {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let want_user = match cred {
                            Cred::GoodBearer => "api-token",
                            _ => match mode.auth {
                                Auth::Basic | Auth::Oauth2 => "alice",
                                Auth::Token => "token",
                                Auth::None => "anonymous",
                            },
                        };
                        if v["user"] != want_user {
                            note.push_str(&format!("whoami user {} ", v["user"]));
                        }
                    }
                    rows.push(Row {
                        mode: mode.name,
                        listener,
                        cred,
                        method: route.method,
                        path: route.path,
                        want,
                        got,
                        note,
                    });
                }
            }
        }
    }
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| r.want != r.got || !r.note.is_empty())
        .collect();
    eprintln!("auth matrix: {} answers checked", rows.len());
    if !bad.is_empty() {
        for r in &bad {
            eprintln!("{r}");
        }
        panic!(
            "{} of {} answers differ from the rules",
            bad.len(),
            rows.len()
        );
    }
}

#[tokio::test]
async fn browser_writes_must_prove_same_origin_bearer_is_exempt() {
    let ws = Workspace::start(&["--auth", "token"]).await;
    let cookie = session_cookie(&ws).await;
    let host = ws.dashboard.trim_start_matches("http://").to_string();
    let post = |headers: Vec<(&'static str, String)>| {
        let mut req = ws
            .client
            .post(format!("{}/api/tasks", ws.dashboard))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body(r#"{"assistant":"fake"}"#);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    for (headers, want) in [
        (vec![], 403),
        (vec![("sec-fetch-site", "cross-site".to_string())], 403),
        (vec![("sec-fetch-site", "same-site".to_string())], 403),
        (vec![("origin", "https://evil.example".to_string())], 403),
        (vec![("origin", format!("http://{host}.evil.example"))], 403),
        (vec![("origin", format!("http://{host}"))], 201),
        (vec![("sec-fetch-site", "same-origin".to_string())], 201),
    ] {
        let label = format!("{headers:?}");
        let r = post(headers).await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{label}");
        if want == 403 {
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["code"], "cross_origin");
        }
    }
    // A form post cannot send JSON: a text/plain body is refused.
    let r = ws
        .client
        .post(format!("{}/api/tasks", ws.dashboard))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "text/plain")
        .body(r#"{"assistant":"fake"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Bearer requests need no origin proof.
    let r = ws
        .client
        .post(format!("{}/api/tasks", ws.dashboard))
        .header("authorization", ws.bearer())
        .json(&json!({"assistant": "fake"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Login itself is CSRF-protected.
    let r = ws
        .client
        .post(format!("{}/auth/login", ws.dashboard))
        .header("origin", "https://evil.example")
        .json(&json!({"token": ws.token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// One family of identity headers per configuration: the proxy sets (and
/// strips) its own family but passes the other through from the client, so
/// the other family must mean nothing even from the trusted proxy.
#[tokio::test]
async fn oauth2_allowlist_one_header_family_and_api_listener_ignores_identity_headers() {
    for (flag, (user_header, email_header), (other_user, other_email)) in [
        (
            "x-forwarded",
            ("x-forwarded-user", "x-forwarded-email"),
            ("x-auth-request-user", "x-auth-request-email"),
        ),
        (
            "x-auth-request",
            ("x-auth-request-user", "x-auth-request-email"),
            ("x-forwarded-user", "x-forwarded-email"),
        ),
    ] {
        let ws = Workspace::start(&[
            "--auth",
            "oauth2",
            "--trusted-proxy-cidrs",
            "127.0.0.1/32",
            "--proxy-identity-headers",
            flag,
            "--allowed-users",
            "alice@example.com",
        ])
        .await;
        let get = |base: &str, headers: (&str, &str), user: &str, email: &str| {
            ws.client
                .get(format!("{base}/api/whoami"))
                .header(headers.0, user)
                .header(headers.1, email)
                .send()
        };
        let ours = (user_header, email_header);
        let r = get(&ws.dashboard, ours, "alice", "alice@example.com")
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{flag}");
        let r = get(&ws.dashboard, ours, "mallory", "mallory@example.com")
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{flag}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], "not_allowed");
        // The other family, even from the trusted proxy: nobody.
        let r = get(
            &ws.dashboard,
            (other_user, other_email),
            "alice",
            "alice@example.com",
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 401, "{flag}: {other_user} was believed");
        // On the api listener the headers mean nothing.
        let r = get(&ws.api, ours, "alice", "alice@example.com")
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{flag}");
    }
}

#[tokio::test]
async fn forwarded_identity_from_an_untrusted_peer_is_ignored() {
    // Loopback is not a trusted proxy here, so the test client is not one.
    let ws = Workspace::start(&["--auth", "oauth2", "--trusted-proxy-cidrs", "10.9.9.9/32"]).await;
    for (name, value) in [
        ("x-forwarded-user", "alice"),
        ("x-forwarded-email", "alice@example.com"),
    ] {
        let r = ws
            .client
            .get(format!("{}/api/whoami", ws.dashboard))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{name}");
    }
}

#[tokio::test]
async fn token_regeneration_is_shown_once_revokes_the_old_token_and_sessions() {
    let ws = Workspace::start(&["--auth", "token"]).await;
    let cookie = session_cookie(&ws).await;
    let (s, v) = ws.api_post("/api/token", json!({})).await;
    assert_eq!(s, 201);
    let new = v["token"].as_str().unwrap().to_string();
    assert_ne!(new, ws.token);
    // The old token and the old session no longer work; the new one does.
    let (s, _) = ws.api_get("/api/tasks").await;
    assert_eq!(s, 401);
    let r = ws
        .client
        .get(format!("{}/api/tasks", ws.dashboard))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = ws
        .client
        .get(format!("{}/api/tasks", ws.api))
        .header("authorization", format!("Bearer {new}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Saved for the next start, mode 0600.
    let on_disk = std::fs::read_to_string(ws.data_dir().join("api-token")).unwrap();
    assert_eq!(on_disk.trim(), new);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ws.data_dir().join("api-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Read-only: the token can be neither regenerated nor read.
    let ro = Workspace::start(&["--auth", "none", "--read-only"]).await;
    for base in [&ro.dashboard, &ro.api] {
        let r = ro
            .client
            .post(format!("{base}/api/token"))
            .header("authorization", ro.bearer())
            .header("x-forwarded-user", "admin")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body = r.text().await.unwrap();
        assert!(body.contains("read_only") && !body.contains(&ro.token));
    }
}

/// Rewriting the token file (as an admin, or the kubelet refreshing a
/// mounted Secret, would) rotates the token at once, without a restart.
#[tokio::test]
async fn rewriting_the_token_file_rotates_the_token_without_a_restart() {
    let mut ws = Workspace::start(&["--auth", "token"]).await;
    let cookie = session_cookie(&ws).await;
    let new = "0123456789abcdef0123456789abcdef-rotated";
    // Written beside and renamed into place, like a Secret volume update.
    let tmp = ws.data_dir().join(".api-token.new");
    std::fs::write(&tmp, format!("{new}\n")).unwrap();
    std::fs::rename(&tmp, ws.token_file()).unwrap();
    let old = ws.token.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, _) = ws.api_get("/api/tasks").await;
        if s == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old token still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ws.token = new.to_string();
    let (s, _) = ws.api_get("/api/tasks").await;
    assert_eq!(s, 200, "the new token is refused");
    let r = ws
        .client
        .get(format!("{}/api/tasks", ws.dashboard))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a browser session outlived the rotation");
    // A file too short to be a token is ignored, not taken.
    std::fs::write(ws.token_file(), "short").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (s, _) = ws.api_get("/api/tasks").await;
    assert_eq!(s, 200);
    assert_ne!(old, ws.token);
}

/// Opens of the token file's name in its directory since the last call.
fn token_file_opens(inotify: &mut inotify::Inotify, name: &str) -> usize {
    let mut buf = [0u8; 4096];
    let mut n = 0;
    loop {
        match inotify.read_events(&mut buf) {
            Ok(events) => n += events.filter(|e| e.name.is_some_and(|f| f == name)).count(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return n,
            Err(e) => panic!("inotify: {e}"),
        }
    }
}

/// An idle server does not read its token file: it reads it once per
/// change. (It used to react to the events of its own reads, re-reading
/// the file thousands of times a second: 60-75 % of a core, idle.)
#[tokio::test]
async fn the_token_file_is_read_once_per_change_and_never_while_idle() {
    let mut ws = Workspace::start(&["--auth", "token"]).await;
    let mut inotify = inotify::Inotify::init().unwrap();
    inotify
        .watches()
        .add(ws.data_dir(), inotify::WatchMask::OPEN)
        .unwrap();
    // A request and a database write (a session) happen in the same
    // directory; neither is a reason to read the token.
    let _cookie = session_cookie(&ws).await;
    let (s, _) = ws.api_get("/api/tasks").await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        token_file_opens(&mut inotify, "api-token"),
        0,
        "the idle server read its token file"
    );
    // One rotation by rename, one by rewriting in place: one read each.
    for (i, in_place) in [false, true].into_iter().enumerate() {
        let new = format!("0123456789abcdef0123456789abcdef-rotation-{i}");
        if in_place {
            // Truncate and write through a handle opened before counting.
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(ws.token_file())
                .unwrap();
            token_file_opens(&mut inotify, "api-token");
            f.set_len(0).unwrap();
            f.write_all(format!("{new}\n").as_bytes()).unwrap();
            drop(f);
        } else {
            let tmp = ws.data_dir().join(".api-token.new");
            std::fs::write(&tmp, format!("{new}\n")).unwrap();
            std::fs::rename(&tmp, ws.token_file()).unwrap();
        }
        ws.token = new;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ws.api_get("/api/tasks").await.0 != 200 {
            assert!(std::time::Instant::now() < deadline, "not rotated");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert_eq!(
            token_file_opens(&mut inotify, "api-token"),
            1,
            "one change, one read (rotation {i})"
        );
    }
}

/// A token file on a read-only mount (a Kubernetes Secret volume) is
/// managed elsewhere: POST /api/token says so with 409, and changes nothing.
#[tokio::test]
async fn a_read_only_token_file_is_not_regenerated_by_the_server() {
    let mnt = tempfile::tempdir().unwrap();
    let mount = |args: &[&str]| {
        std::process::Command::new("mount")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let path = mnt.path().to_str().unwrap().to_string();
    assert!(
        mount(&["-t", "tmpfs", "-o", "size=1m", "tmpfs", &path]),
        "this test mounts a tmpfs and needs root (CI and `make test` run as root)"
    );
    let _mount = common::Mount(mnt.path().to_path_buf());
    let token_file = mnt.path().join("api-token");
    std::fs::write(&token_file, "fedcba9876543210fedcba9876543210").unwrap();
    assert!(mount(&["-o", "remount,ro", &path]), "remount read-only");
    let arg = format!("--api-token-file={}", token_file.display());
    let ws = Workspace::start(&[arg.as_str()]).await;
    let (s, v) = ws.api_post("/api/token", json!({})).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("token_managed")), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("kube-coder token"),
        "{v}"
    );
    let (s, _) = ws.api_get("/api/tasks").await;
    assert_eq!(s, 200, "the token changed");
}

/// Basic auth does not tell known user names from unknown ones by time:
/// an unknown name is checked against a hash of the file's own cost. (A
/// fixed cost-10 dummy against the operator's cost-6 hashes answered an
/// unknown name some 15 times slower.) The bound is loose on purpose; the
/// gap it guards against is an order of magnitude.
#[tokio::test]
async fn basic_auth_takes_as_long_for_unknown_users_as_for_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let hash = bcrypt::hash("right-password", 6)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    std::fs::write(&file, format!("alice:{hash}\n")).unwrap();
    let arg = format!("--htpasswd-file={}", file.display());
    let ws = Workspace::start(&["--auth", "basic", arg.as_str()]).await;
    let url = format!("{}/api/tasks", ws.dashboard);
    let time = |user: &'static str| {
        let (client, url) = (ws.client.clone(), url.clone());
        async move {
            let t = std::time::Instant::now();
            let r = client
                .get(&url)
                .basic_auth(user, Some("wrong-password"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
            t.elapsed()
        }
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        known.push(time("alice").await);
        unknown.push(time("mallory").await);
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[10], unknown[10]);
    let ratio = u.as_secs_f64() / k.as_secs_f64();
    assert!(
        (0.4..2.5).contains(&ratio),
        "median known {k:?}, unknown {u:?}: a name is told apart by time"
    );
}

/// At rest: the data dir is the owner's alone at every start (an existing
/// one too), the database and key files are 0600, webhook and hook secrets
/// appear in no database file, and session cookies are `Secure` when the
/// browser came over HTTPS.
#[tokio::test]
async fn data_at_rest_is_the_owners_alone_and_secrets_are_sealed() {
    use std::os::unix::fs::PermissionsExt;
    let mut ws = Workspace::start(&["--auth", "token"]).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    ws.crash();
    std::fs::set_permissions(ws.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    ws.spawn().await;
    assert_eq!(mode(&ws.data_dir()), 0o700, "the data dir kept its mode");
    for f in ["kube-coder.sqlite", "secret.key", "api-token"] {
        assert_eq!(mode(&ws.data_dir().join(f)), 0o600, "{f}");
    }
    let (s, v) = ws
        .api_post(
            "/api/webhooks",
            json!({"name": "ci", "prompt_template": "p", "assistant": "fake",
                   "hook": {"url": "http://127.0.0.1:9/", "secret": "hook-secret-at-rest"}}),
        )
        .await;
    // The guard refuses 127.0.0.1 without --allow-internal-hooks.
    assert_eq!(s, 400, "{v}");
    let (s, v) = ws
        .api_post(
            "/api/webhooks",
            json!({"name": "ci", "prompt_template": "p", "assistant": "fake"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    ws.crash(); // no checkpoint: the WAL holds the newest rows
    for e in std::fs::read_dir(ws.data_dir()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("kube-coder.sqlite") {
            let bytes = std::fs::read(e.path()).unwrap();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "the webhook secret is readable in {name}");
            assert_eq!(mode(&e.path()), 0o600, "{name}");
        }
    }
    ws.spawn().await;
    // Cookies over HTTPS are Secure; over plain HTTP they cannot be.
    for (header, value, secure) in [
        ("origin", ws.dashboard.clone(), false),
        ("origin", "https://ws.example.com".to_string(), true),
        ("x-forwarded-proto", "https".to_string(), true),
        ("forwarded", "for=10.0.0.1;proto=https".to_string(), true),
    ] {
        let r = ws
            .client
            .post(format!("{}/auth/login", ws.dashboard))
            .header("sec-fetch-site", "same-origin")
            .header(header, &value)
            .json(&json!({"token": ws.token}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{header}: {value}");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert_eq!(set.contains("; Secure"), secure, "{header}: {value}: {set}");
    }
}

/// `(method, path)` of every route `router.rs` serves, read from its source:
/// `.route("path", get(..).post(..))` calls, with the prefixes the task and
/// authenticated routes are nested under.
fn router_routes() -> Vec<(String, String)> {
    let src = include_str!("../../workspace/src/http/router.rs");
    let prefixes = |func: &str| -> &'static [&'static str] {
        match func {
            "task_routes" => &["/api", "/api/claude"],
            "authenticated_routes" => &["/api"],
            _ => &[""],
        }
    };
    let mut out = Vec::new();
    let mut func = String::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < src.len() {
        if src[i..].starts_with("fn ") {
            func = src[i + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
        }
        if src[i..].starts_with(".route(") {
            // The call's text, to its closing parenthesis.
            let start = i + ".route(".len();
            let (mut depth, mut j) = (1, start);
            while depth > 0 && j < bytes.len() {
                match bytes[j] {
                    b'(' => depth += 1,
                    b')' => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            let call = &src[start..j - 1];
            let path = call.split('"').nth(1).expect("a route path literal");
            for method in ["get", "post", "put", "delete", "head"] {
                let used = call
                    .match_indices(&format!("{method}("))
                    .any(|(k, _)| k == 0 || !call.as_bytes()[k - 1].is_ascii_alphanumeric());
                if used {
                    for prefix in prefixes(&func) {
                        out.push((method.to_uppercase(), format!("{prefix}{path}")));
                    }
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// Does a matrix path (query, concrete ids) name this router path?
fn same_route(router: &str, matrix: &str) -> bool {
    let matrix = matrix.split('?').next().unwrap_or(matrix);
    let (a, b): (Vec<_>, Vec<_>) = (router.split('/').collect(), matrix.split('/').collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || x.starts_with('{') || y.starts_with('{'))
}

/// The matrix follows the router: a route served without a line in
/// `ROUTES` fails here, so no route goes untested for auth.
#[test]
fn the_matrix_covers_every_route_the_router_serves() {
    let served = router_routes();
    assert!(served.len() > 40, "the router was not read: {served:?}");
    let missing: Vec<_> = served
        .iter()
        .filter(|(m, p)| {
            !ROUTES
                .iter()
                .any(|r| r.method == m && same_route(p, r.path))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "routes the auth matrix does not cover (add a line to ROUTES): {missing:?}"
    );
}
