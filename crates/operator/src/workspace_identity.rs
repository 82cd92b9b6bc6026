//! Which workspace a request comes from: it shows a projected
//! ServiceAccount token of the workspace pod, made for one audience (the
//! token broker's, the builds'), and the API server says whose it is
//! (TokenReview). The token is bound to the pod, so it dies with it, and
//! is useless against the API server itself. A token the API server
//! accepted is taken again for a minute without asking (`Identities`), as
//! the API server's own webhook token cache does: git asks for a
//! credential on every fetch and push. A client address that sent
//! `MAX_REFUSED` refused tokens in a minute gets 429 without the API
//! server being asked: every TokenReview counts against the operator's
//! own share of the API server, so one tenant's flood would slow every
//! workspace's reconciles.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

/// Why a request's identity was not taken: the status to answer, and a
/// message naming the problem.
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
pub struct Refused(pub StatusCode, pub String);

/// The bearer token of `headers`.
pub fn bearer(headers: &HeaderMap, what: &str) -> Result<String, Refused> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .ok_or_else(|| {
            Refused(
                StatusCode::UNAUTHORIZED,
                format!("send the workspace's {what} token as Authorization: Bearer"),
            )
        })
}

/// The name of the Workspace whose pod holds `token`, a token for
/// `audience`, if the API server says so.
async fn identify(client: &kube::Client, token: &str, audience: &str) -> Result<String, Refused> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences: Some(vec![audience.into()]),
        },
        ..Default::default()
    };
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| {
            Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot ask the API server about the token: {e}"),
            )
        })?;
    let status = answer.status.unwrap_or_default();
    if status.authenticated != Some(true)
        || !status
            .audiences
            .unwrap_or_default()
            .iter()
            .any(|a| a == audience)
    {
        return Err(Refused(
            StatusCode::UNAUTHORIZED,
            format!("the token is not a valid {audience} token of a running pod"),
        ));
    }
    let user = status.user.and_then(|u| u.username).unwrap_or_default();
    workspace_of(&user).map(str::to_string).ok_or_else(|| {
        Refused(
            StatusCode::FORBIDDEN,
            format!("{user} is not a workspace's identity"),
        )
    })
}

/// How long an accepted token is taken without asking again. A pod
/// deleted meanwhile keeps its workspace's identity that long at most;
/// what the identity may get is decided afresh on each request (the
/// Workspace must exist and run).
const REMEMBERED: Duration = Duration::from_secs(60);
/// The most tokens (and client addresses) remembered; past it, the
/// expired go, then all.
const MAX_REMEMBERED: usize = 10_000;
/// Refused tokens one client address may send in `REFUSED_WINDOW`.
const MAX_REFUSED: u32 = 30;
const REFUSED_WINDOW: Duration = Duration::from_secs(60);

/// The workspaces of tokens the API server accepted lately, by a hash of
/// audience and token (the tokens themselves are not kept), and the
/// client addresses whose tokens it refused.
#[derive(Default)]
pub struct Identities {
    seen: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    /// Per client address: when its window began, and the refusals in it.
    refused: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Identities {
    /// The name of the Workspace whose pod holds `token`, a token for
    /// `audience`: remembered, or asked of the API server (`identify`).
    /// `peer` is the client's address, when known.
    pub async fn identify(
        &self,
        client: &kube::Client,
        token: &str,
        audience: &str,
        peer: Option<IpAddr>,
    ) -> Result<String, Refused> {
        let key = key_of(token, audience);
        let now = Instant::now();
        let known = self.seen.lock().ok().and_then(|seen| {
            seen.get(&key)
                .filter(|(_, until)| *until > now)
                .map(|(name, _)| name.clone())
        });
        if let Some(name) = known {
            return Ok(name);
        }
        // Each ask counts against the address until the API server
        // accepts the token, so a burst of asks at once is held to the
        // limit too.
        if let Some(ip) = peer.filter(|ip| !self.may_ask(*ip, now)) {
            return Err(Refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{ip} sent more than {MAX_REFUSED} refused tokens in a minute: \
                     try again in a minute, with the workspace's projected token"
                ),
            ));
        }
        let answer = identify(client, token, audience).await;
        let refused = matches!(
            &answer,
            Err(Refused(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _))
        );
        if let Some(ip) = peer.filter(|_| !refused) {
            self.not_refused(ip);
        }
        let name = answer?;
        self.remember(key, &name, now + REMEMBERED);
        Ok(name)
    }

    /// Whether `ip` may have a token reviewed now; if so, the ask counts
    /// as refused until `not_refused` takes it back.
    fn may_ask(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(mut refused) = self.refused.lock() else {
            return true;
        };
        make_room(&mut refused, |(start, _)| {
            now.duration_since(*start) < REFUSED_WINDOW
        });
        let entry = refused.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= REFUSED_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= MAX_REFUSED {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// The ask of `ip` was not refused (the token was taken, or the API
    /// server could not be asked).
    fn not_refused(&self, ip: IpAddr) {
        if let Ok(mut refused) = self.refused.lock() {
            if let Some((_, count)) = refused.get_mut(&ip) {
                *count = count.saturating_sub(1);
            }
        }
    }

    fn remember(&self, key: [u8; 32], name: &str, until: Instant) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let now = Instant::now();
        make_room(&mut seen, |(_, until)| *until > now);
        seen.insert(key, (name.to_string(), until));
    }
}

/// Room for one more entry in `map`: once it holds `MAX_REMEMBERED`, the
/// entries no longer `live` go, then all.
fn make_room<K, V>(map: &mut HashMap<K, V>, live: impl Fn(&V) -> bool) {
    if map.len() >= MAX_REMEMBERED {
        map.retain(|_, v| live(v));
        if map.len() >= MAX_REMEMBERED {
            map.clear();
        }
    }
}

fn key_of(token: &str, audience: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(audience.as_bytes());
    hash.update([0]);
    hash.update(token.as_bytes());
    hash.finalize().into()
}

/// The workspace of a ServiceAccount user name: `workspace` in `ws-NAME`.
fn workspace_of(user: &str) -> Option<&str> {
    user.strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.strip_suffix(":workspace"))
        .and_then(|ns| ns.strip_prefix("ws-"))
        .filter(|name| !name.is_empty() && !name.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_remembered_for_its_audience_until_its_time_and_within_the_cap() {
        let ids = Identities::default();
        let now = Instant::now();
        let key = key_of("t1", "kube-coder-broker");
        ids.remember(key, "alice", now + REMEMBERED);
        let seen = |k: &[u8; 32]| ids.seen.lock().unwrap().get(k).map(|(n, _)| n.clone());
        assert_eq!(seen(&key).as_deref(), Some("alice"));
        // The same token for another audience is another key.
        assert_ne!(key, key_of("t1", "kube-coder-build"));
        assert_ne!(key, key_of("t2", "kube-coder-broker"));
        // Full: the expired go first, and what is still valid stays.
        let expired = now - Duration::from_secs(1);
        for i in 0..MAX_REMEMBERED - 1 {
            ids.remember(key_of(&i.to_string(), "a"), "old", expired);
        }
        ids.remember(key_of("t3", "a"), "bob", now + REMEMBERED);
        assert_eq!(ids.seen.lock().unwrap().len(), 2);
        assert_eq!(seen(&key).as_deref(), Some("alice"));
    }

    #[test]
    fn an_address_is_cut_off_after_its_refused_tokens_for_a_minute() {
        let ids = Identities::default();
        let now = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        // Asks whose tokens were taken do not count.
        for _ in 0..2 * MAX_REFUSED {
            assert!(ids.may_ask(a, now));
            ids.not_refused(a);
        }
        // Asks not yet answered count, as refused ones do.
        for _ in 0..MAX_REFUSED {
            assert!(ids.may_ask(a, now));
        }
        assert!(!ids.may_ask(a, now));
        assert!(ids.may_ask(b, now), "another address may");
        // A minute later the window starts again.
        let later = now + REFUSED_WINDOW;
        assert!(ids.may_ask(a, later));
    }

    #[test]
    fn only_a_workspace_namespaces_workspace_account_is_a_workspace() {
        assert_eq!(
            workspace_of("system:serviceaccount:ws-alice:workspace"),
            Some("alice")
        );
        for other in [
            "system:serviceaccount:ws-alice:default",
            "system:serviceaccount:kube-system:workspace",
            "system:serviceaccount:ws-:workspace",
            "alice",
        ] {
            assert_eq!(workspace_of(other), None, "{other}");
        }
    }
}
