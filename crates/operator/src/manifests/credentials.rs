//! Where the workspace's Secrets are built, and their values generated.
//!
//! Values are generated once (CSPRNG) and then read back from the cluster
//! on every reconcile, so a token never changes under a running client;
//! only a missing key is generated anew. The login password is stored
//! next to its bcrypt hash so that an admin can hand it over
//! (`kube-coder token NAME --login`); the pod mounts only the hash and
//! the API token.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use rand::RngCore;

use super::meta;
use crate::crd::Workspace;
use crate::names;

/// What lives in the `workspace-credentials` Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub api_token: String,
    pub password: String,
    pub htpasswd: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn value(secret: Option<&Secret>, key: &str) -> Option<String> {
    let data = secret?.data.as_ref()?;
    let v = String::from_utf8(data.get(key)?.0.clone()).ok()?;
    (!v.is_empty()).then_some(v)
}

impl Credentials {
    /// The credentials in `existing`, with any missing part generated.
    /// Returns whether anything was generated.
    pub fn keep_or_generate(user: &str, existing: Option<&Secret>) -> (Self, bool) {
        let mut generated = false;
        let api_token = value(existing, "api-token").unwrap_or_else(|| {
            generated = true;
            random_hex(32)
        });
        let stored_password = value(existing, "password");
        let stored_hash = value(existing, "htpasswd");
        let (password, htpasswd) = match (stored_password, stored_hash) {
            (Some(p), Some(h)) if h.starts_with(&format!("{user}:")) => (p, h),
            (Some(p), _) => {
                generated = true;
                let h = htpasswd_line(user, &p);
                (p, h)
            }
            _ => {
                generated = true;
                let p = random_hex(12);
                let h = htpasswd_line(user, &p);
                (p, h)
            }
        };
        (
            Self {
                api_token,
                password,
                htpasswd,
            },
            generated,
        )
    }
}

/// bcrypt work factor of generated logins. The password is 96 random
/// bits, so a higher cost would add nothing against offline guessing,
/// while the server pays it on every basic-auth request (~5 ms at 6,
/// ~70 ms at 10 on a small core).
const BCRYPT_COST: u32 = 6;

fn htpasswd_line(user: &str, password: &str) -> String {
    let hash = bcrypt::hash(password, BCRYPT_COST).unwrap_or_default();
    format!("{user}:{hash}\n")
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

pub fn credentials_secret(ws: &Workspace, c: &Credentials) -> Secret {
    Secret {
        metadata: meta(ws, names::CREDENTIALS_SECRET, true, true),
        type_: Some("Opaque".into()),
        data: Some(data(&[
            ("api-token", &c.api_token),
            ("password", &c.password),
            ("htpasswd", &c.htpasswd),
        ])),
        ..Default::default()
    }
}

/// oauth2-proxy's client (copied from the operator's namespace) and its
/// cookie secret (kept, or generated: 32 random bytes, base64url).
pub fn oauth2_secret(
    ws: &Workspace,
    client: &Secret,
    provider_ca: Option<&Secret>,
    existing: Option<&Secret>,
) -> Result<Secret, String> {
    let get = |key: &str| {
        value(Some(client), key).ok_or_else(|| {
            format!(
                "the oauth2 client Secret {:?} has no {key:?} key",
                client.metadata.name.as_deref().unwrap_or_default()
            )
        })
    };
    let id = get("client-id")?;
    let secret = get("client-secret")?;
    let cookie = value(existing, "cookie-secret").unwrap_or_else(|| {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        base64::engine::general_purpose::URL_SAFE.encode(b)
    });
    let mut keys = vec![
        ("client-id", id),
        ("client-secret", secret),
        ("cookie-secret", cookie),
    ];
    if let Some(ca) = provider_ca {
        let pem = value(Some(ca), "ca.crt").ok_or_else(|| {
            format!(
                "the provider CA Secret {:?} has no \"ca.crt\" key",
                ca.metadata.name.as_deref().unwrap_or_default()
            )
        })?;
        keys.push((names::OAUTH2_PROVIDER_CA_KEY, pem));
    }
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(Secret {
        metadata: meta(ws, names::OAUTH2_SECRET, true, true),
        type_: Some("Opaque".into()),
        data: Some(data(&keys)),
        ..Default::default()
    })
}

/// The image pull Secret, copied from the operator's namespace.
pub fn pull_secret(ws: &Workspace, source: &Secret) -> Secret {
    Secret {
        metadata: meta(ws, names::PULL_SECRET, true, true),
        type_: source.type_.clone(),
        data: source.data.clone(),
        ..Default::default()
    }
}

/// The keys of the workspace's model providers (`wanted`), copied from the
/// cluster's key Secret; no other provider's key enters the namespace.
pub fn model_keys(ws: &Workspace, source: &Secret, wanted: &[&str]) -> Secret {
    let data = source.data.as_ref().map(|d| {
        d.iter()
            .filter(|(k, _)| wanted.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    Secret {
        metadata: meta(ws, names::MODEL_KEYS_SECRET, true, true),
        type_: Some("Opaque".into()),
        data,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    #[test]
    fn credentials_are_generated_once_and_then_kept() {
        let ws = workspace("alice", json!({"owner": {"name": "alice"}}));
        let (first, generated) = Credentials::keep_or_generate("alice", None);
        assert!(generated);
        assert_eq!(first.api_token.len(), 64);
        assert!(bcrypt::verify(
            &first.password,
            first.htpasswd.trim().strip_prefix("alice:").unwrap()
        )
        .unwrap());
        let stored = credentials_secret(&ws, &first);
        let (again, generated) = Credentials::keep_or_generate("alice", Some(&stored));
        assert!(!generated);
        assert_eq!(again, first);
    }

    #[test]
    fn a_new_owner_name_gets_a_new_hash_for_the_same_password() {
        let ws = workspace("alice", json!({"owner": {"name": "alice"}}));
        let (first, _) = Credentials::keep_or_generate("alice", None);
        let stored = credentials_secret(&ws, &first);
        let (renamed, generated) = Credentials::keep_or_generate("alice2", Some(&stored));
        assert!(generated);
        assert_eq!(renamed.password, first.password);
        assert!(renamed.htpasswd.starts_with("alice2:"));
    }
}
