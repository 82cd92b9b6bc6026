//! HMAC-SHA256 signatures of deliveries, both ways: the completion hooks
//! this server sends and the webhooks it receives use the same two schemes.
//!
//! - **kube-coder** (`X-Kube-Coder-Signature-256`): the signature covers
//!   `<timestamp>.<delivery id>.<body>`, so neither the time nor the id can
//!   be swapped on a captured delivery; the receiver requires a fresh
//!   timestamp and remembers ids.
//! - **GitHub** (`X-Hub-Signature-256`): the signature covers the body only
//!   (GitHub's format, which we cannot change); the delivery id and time
//!   are unsigned, so the receiver remembers the body's digest instead.
//!
//! Both are `sha256=<hex>`. Verification is constant-time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-kube-coder-signature-256";
pub const DELIVERY_HEADER: &str = "x-kube-coder-delivery";
pub const TIMESTAMP_HEADER: &str = "x-kube-coder-timestamp";
pub const GITHUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const GITHUB_DELIVERY_HEADER: &str = "x-github-delivery";

/// How far a signed timestamp may be from now, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this never fails.
    Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

fn hex_of(mac: Hmac<Sha256>) -> String {
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The MAC of the kube-coder scheme: `<timestamp>.<id>.<body>`.
fn delivery_mac(secret: &str, timestamp: i64, id: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = mac(secret);
    m.update(format!("{timestamp}.{id}.").as_bytes());
    m.update(body);
    m
}

/// The MAC of the GitHub scheme: the body.
fn body_mac(secret: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = mac(secret);
    m.update(body);
    m
}

/// The kube-coder scheme: `sha256=<hex HMAC of "<timestamp>.<id>.<body>">`.
pub fn sign_delivery(secret: &str, timestamp: i64, id: &str, body: &[u8]) -> String {
    hex_of(delivery_mac(secret, timestamp, id, body))
}

/// The GitHub scheme: `sha256=<hex HMAC of the body>`.
pub fn sign_body(secret: &str, body: &[u8]) -> String {
    hex_of(body_mac(secret, body))
}

/// Does `header` carry the kube-coder signature of this delivery?
pub fn verify_delivery(secret: &str, timestamp: i64, id: &str, body: &[u8], header: &str) -> bool {
    check(delivery_mac(secret, timestamp, id, body), header)
}

/// Does `header` carry the GitHub signature of `body`?
pub fn verify_body(secret: &str, body: &[u8], header: &str) -> bool {
    check(body_mac(secret, body), header)
}

fn check(m: Hmac<Sha256>, header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    m.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_scheme_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign_body("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_the_right_signature_verifies() {
        let body = br#"{"a":1}"#;
        let good = sign_body("k", body);
        assert!(verify_body("k", body, &good));
        assert!(!verify_body("other", body, &good));
        assert!(!verify_body("k", br#"{"a":2}"#, &good));
        assert!(!verify_body("k", body, good.trim_start_matches("sha256=")));
        assert!(!verify_body("k", body, "sha256=zz"));
        assert!(!verify_body("k", body, ""));
    }

    /// docs/api.md shows the shell command that checks a hook delivery,
    /// with its output: the implementation must sign the same way.
    #[test]
    fn the_delivery_scheme_matches_the_documented_example() {
        let docs = include_str!("../../../docs/api.md");
        let sig = sign_delivery(
            "s3cret",
            1767225600,
            "5f2b9c0e81d4a7e3",
            br#"{"event":"task.finished"}"#,
        );
        assert!(docs.contains(&format!("# → {sig}")), "{sig}");
    }

    #[test]
    fn the_delivery_scheme_binds_time_and_id() {
        let body = br#"{"a":1}"#;
        let good = sign_delivery("k", 1700000000, "d-1", body);
        assert!(verify_delivery("k", 1700000000, "d-1", body, &good));
        assert!(!verify_delivery("k", 1700000001, "d-1", body, &good));
        assert!(!verify_delivery("k", 1700000000, "d-2", body, &good));
        assert!(!verify_delivery("k", 1700000000, "d-1", b"{}", &good));
        // The body alone is not the delivery's signature, nor the reverse.
        assert!(!verify_body("k", body, &good));
        assert!(!verify_delivery(
            "k",
            1700000000,
            "d-1",
            body,
            &sign_body("k", body)
        ));
    }
}
