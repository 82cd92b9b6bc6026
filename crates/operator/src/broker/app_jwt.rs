//! The GitHub App's own credential: a JWT signed RS256 with the App's
//! private key, issued by the App ID and valid for nine minutes (GitHub
//! takes at most ten, and a minute of clock skew is allowed for).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    iat: u64,
    exp: u64,
    iss: &'a str,
}

/// The App JWT for `app_id`, signed with `key_pem` (PKCS#1 or PKCS#8),
/// as of `now` (seconds since the epoch).
pub fn sign(app_id: &str, key_pem: &[u8], now: u64) -> Result<String, String> {
    let key = EncodingKey::from_rsa_pem(key_pem)
        .map_err(|e| format!("the GitHub App private key is not an RSA PEM key: {e}"))?;
    let claims = Claims {
        iat: now.saturating_sub(60),
        exp: now + 540,
        iss: app_id,
    };
    encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map_err(|e| format!("cannot sign the GitHub App JWT: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    /// A 2048-bit key pair for this test only (openssl, as `make test`
    /// installs it): the private and the public key, PEM.
    fn key_pair() -> (String, String) {
        let run = |args: &[&str], stdin: &[u8]| {
            use std::io::Write;
            let mut c = std::process::Command::new("openssl")
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("openssl runs (apt-get install openssl)");
            c.stdin.take().unwrap().write_all(stdin).unwrap();
            String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
        };
        let private = run(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            b"",
        );
        let public = run(&["pkey", "-pubout"], private.as_bytes());
        (private, public)
    }

    #[derive(serde::Deserialize)]
    struct Seen {
        iss: String,
        iat: u64,
        exp: u64,
    }

    #[test]
    fn the_jwt_verifies_with_the_apps_public_key_and_no_other() {
        let (private, public) = key_pair();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let jwt = sign("12345", private.as_bytes(), now).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&["12345"]);
        let seen = decode::<Seen>(
            &jwt,
            &DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(seen.iss, "12345");
        assert!(seen.exp - seen.iat <= 600);
        let (_, other) = key_pair();
        assert!(decode::<Seen>(
            &jwt,
            &DecodingKey::from_rsa_pem(other.as_bytes()).unwrap(),
            &v
        )
        .is_err());
        assert!(sign("1", b"not a key", now)
            .unwrap_err()
            .contains("not an RSA PEM key"));
    }
}
