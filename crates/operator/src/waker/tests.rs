use std::collections::BTreeMap;

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use serde_json::json;

use super::*;
use crate::manifests::test_support::workspace;

fn credentials(token: &str, password: &str) -> Secret {
    Secret {
        data: Some(BTreeMap::from([
            ("api-token".to_string(), ByteString(token.into())),
            ("password".to_string(), ByteString(password.into())),
        ])),
        ..Default::default()
    }
}

fn with_auth(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    h
}

fn basic(user: &str, password: &str) -> HeaderMap {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    with_auth(&format!("Basic {pair}"))
}

#[test]
fn only_the_workspaces_own_credential_wakes_it() {
    let ws = workspace("alice", json!({"owner": {"name": "alice"}}));
    let secret = credentials("t0k3n", "s3cret");
    let auth = |api: bool, h: &HeaderMap| authenticate(&ws, api, h, Some(&secret), None);
    // The API token, on either host.
    assert_eq!(auth(true, &with_auth("Bearer t0k3n")), Some(Via::Token));
    assert_eq!(auth(false, &with_auth("Bearer t0k3n")), Some(Via::Token));
    assert_eq!(auth(true, &with_auth("Bearer other")), None);
    assert_eq!(auth(true, &with_auth("Bearer ")), None);
    // The dashboard login, on the dashboard host only.
    assert_eq!(auth(false, &basic("alice", "s3cret")), Some(Via::Login));
    assert_eq!(auth(true, &basic("alice", "s3cret")), None);
    assert_eq!(auth(false, &basic("alice", "wrong")), None);
    assert_eq!(auth(false, &basic("mallory", "s3cret")), None);
    assert_eq!(auth(false, &with_auth("Basic !!")), None);
    // Nothing, or no credentials to compare with: nobody.
    assert_eq!(auth(false, &HeaderMap::new()), None);
    assert_eq!(
        authenticate(&ws, true, &with_auth("Bearer t0k3n"), None, None),
        None
    );
    let empty = credentials("", "");
    assert_eq!(
        authenticate(&ws, true, &with_auth("Bearer "), Some(&empty), None),
        None
    );
}

#[test]
fn an_oauth2_workspace_is_woken_by_its_token_or_a_session_of_an_allowed_login() {
    use oauth2_session::{seal, Identity};
    let sso = workspace(
        "bob",
        json!({"owner": {"name": "bob", "email": "bob@example.com"},
               "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh",
                        "allowedUsers": ["carol@example.com"]}}}),
    );
    let secret = credentials("t0k3n", "s3cret");
    let cookie_secret = "8J3x0mQz6Xr0Yc1uVh8aZkq2b5n7PpTt4LwS9dE1fGo=";
    let proxy = Secret {
        data: Some(BTreeMap::from([(
            "cookie-secret".to_string(),
            ByteString(cookie_secret.into()),
        )])),
        ..Default::default()
    };
    let (s, p) = (Some(&secret), Some(&proxy));
    assert_eq!(
        authenticate(&sso, true, &with_auth("Bearer t0k3n"), s, p),
        Some(Via::Token)
    );
    assert_eq!(
        authenticate(&sso, false, &with_auth("Bearer t0k3n"), s, p),
        Some(Via::Token)
    );
    assert_eq!(
        authenticate(&sso, false, &basic("bob", "s3cret"), s, p),
        None
    );
    let session = |email: &str, secret: &str| {
        let who = Identity {
            user: Some("sub-1".into()),
            email: Some(email.into()),
        };
        let mut h = HeaderMap::new();
        let cookie = seal(&who, secret, std::time::SystemTime::now());
        h.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        h
    };
    // The owner and the listed users, by e-mail, any case.
    for who in ["bob@example.com", "Carol@Example.com"] {
        assert_eq!(
            authenticate(&sso, false, &session(who, cookie_secret), s, p),
            Some(Via::OAuth2(who.into()))
        );
    }
    // Not on the dashboard's allow list, though the proxy signed it.
    assert_eq!(
        authenticate(
            &sso,
            false,
            &session("mallory@example.com", cookie_secret),
            s,
            p
        ),
        None
    );
    // Another proxy's session, a made-up one, one on the api host, or
    // no proxy Secret to check it with: nobody.
    assert_eq!(
        authenticate(
            &sso,
            false,
            &session("bob@example.com", "fedcba9876543210"),
            s,
            p
        ),
        None
    );
    let mut forged = HeaderMap::new();
    forged.insert(
        header::COOKIE,
        HeaderValue::from_static("_oauth2_proxy=v|1|s"),
    );
    assert_eq!(authenticate(&sso, false, &forged, s, p), None);
    assert_eq!(
        authenticate(&sso, true, &session("bob@example.com", cookie_secret), s, p),
        None
    );
    assert_eq!(
        authenticate(
            &sso,
            false,
            &session("bob@example.com", cookie_secret),
            s,
            None
        ),
        None
    );
}

#[test]
fn the_host_is_read_without_its_port_and_case() {
    let mut h = HeaderMap::new();
    h.insert(
        header::HOST,
        HeaderValue::from_static("Alice.Dev.Example.com:8443"),
    );
    assert_eq!(host_of(&h), "alice.dev.example.com");
    h.insert(
        header::HOST,
        HeaderValue::from_static("alice.dev.example.com"),
    );
    assert_eq!(host_of(&h), "alice.dev.example.com");
    assert_eq!(host_of(&HeaderMap::new()), "");
}

#[test]
fn pages_escape_what_they_show_and_poll_the_waker() {
    let page = page::starting("alice", "<Provisioning>");
    assert!(page.contains("&lt;Provisioning&gt;"), "{page}");
    assert!(page.contains(names::WAKE_STATUS_PATH));
    assert!(page::sign_in("alice", "stopped").contains("kube-coder token alice --login"));
}
