//! Who a browser is on an oauth2 workspace, read from the session cookie
//! of the workspace's own oauth2-proxy while that proxy is not running.
//!
//! The cookie is the proxy's cookie session store (oauth2-proxy v7):
//! `base64url(sealed)|unix seconds|base64url(HMAC-SHA256)`, signed with
//! the cookie secret over the cookie's name, the sealed value and the
//! time; the sealed value is AES-CFB (a 16-byte IV first) of an LZ4 frame
//! of a MessagePack map, keyed with the secret's base64url bytes when they
//! are 16, 24 or 32 long and with the secret itself otherwise. Only the
//! operator holds the secret (it made it, in the workspace's oauth2
//! Secret), so a valid signature means this workspace's proxy made the
//! session; what it holds says who it was made for.
//!
//! The session's own expiry (the provider's access token) is not checked:
//! a wake only starts the pod, and the proxy applies its full rules
//! (refresh, or a new login) to the request that follows. The cookie's
//! age is, against the proxy's lifetime for it.

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The proxy's session cookie name (its default; the sidecar keeps it).
pub const COOKIE_NAME: &str = "_oauth2_proxy";
/// How long the proxy honours a session cookie (its `--cookie-expire`
/// default, which the sidecar keeps).
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(168 * 3600);
/// How far in the future a cookie's time may be (the proxy's own slack).
const CLOCK_SLACK: Duration = Duration::from_secs(5 * 60);

/// Who the proxy made a session for: its `X-Forwarded-User` and
/// `X-Forwarded-Email` once it runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    pub user: Option<String>,
    pub email: Option<String>,
}

impl Identity {
    /// The name to show: the e-mail, else the user.
    pub fn name(&self) -> &str {
        self.email
            .as_deref()
            .or(self.user.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SessionError {
    #[error("no oauth2-proxy session cookie")]
    NoCookie,
    #[error("the session cookie is not in the proxy's format")]
    Malformed,
    #[error("the session cookie's signature is not this workspace's")]
    BadSignature,
    #[error("the session cookie has expired")]
    Expired,
    #[error("the session cannot be opened: {0}")]
    Unreadable(&'static str),
}

/// The cookie named [`COOKIE_NAME`] in `cookie_headers` (the values of
/// every `Cookie` header), or its parts `_0`, `_1`, … joined as the proxy
/// joins them, with the name its signature covers.
fn session_cookie<'a>(cookie_headers: impl Iterator<Item = &'a str>) -> Option<(String, String)> {
    let pairs: Vec<(&str, &str)> = cookie_headers
        .flat_map(|h| h.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .collect();
    let first = |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    if let Some(v) = first(COOKIE_NAME) {
        return Some((COOKIE_NAME.into(), v.into()));
    }
    let parts: Vec<&str> = (0..)
        .map_while(|i| first(&format!("{COOKIE_NAME}_{i}")))
        .collect();
    match parts.len() {
        0 => None,
        // One part keeps its own name, as the proxy's join does.
        1 => Some((format!("{COOKIE_NAME}_0"), parts[0].into())),
        _ => Some((COOKIE_NAME.into(), parts.concat())),
    }
}

/// The identity in the session cookie among `cookie_headers`, when the
/// workspace's proxy (cookie secret `secret`) made it less than
/// [`COOKIE_LIFETIME`] before `now`.
pub fn identity<'a>(
    cookie_headers: impl Iterator<Item = &'a str>,
    secret: &str,
    now: SystemTime,
) -> Result<Identity, SessionError> {
    let (name, value) = session_cookie(cookie_headers).ok_or(SessionError::NoCookie)?;
    let mut parts = value.split('|');
    let (Some(sealed), Some(time), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SessionError::Malformed);
    };
    let url = base64::engine::general_purpose::URL_SAFE;
    let signature = url.decode(signature).map_err(|_| SessionError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| SessionError::BadSignature)?;
    for part in [name.as_str(), sealed, time] {
        mac.update(part.as_bytes());
    }
    mac.verify_slice(&signature)
        .map_err(|_| SessionError::BadSignature)?;

    let made = UNIX_EPOCH + Duration::from_secs(time.parse().map_err(|_| SessionError::Malformed)?);
    if made + COOKIE_LIFETIME < now || made > now + CLOCK_SLACK {
        return Err(SessionError::Expired);
    }
    let sealed = url.decode(sealed).map_err(|_| SessionError::Malformed)?;
    let packed = decompress(&open(&sealed, &key(secret))?)?;
    let value = rmpv::decode::read_value(&mut packed.as_slice())
        .map_err(|_| SessionError::Unreadable("not MessagePack"))?;
    let rmpv::Value::Map(fields) = value else {
        return Err(SessionError::Unreadable("not a session"));
    };
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .and_then(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Ok(Identity {
        user: field("u"),
        email: field("e"),
    })
}

/// The AES key the proxy derives from its cookie secret.
fn key(secret: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(secret.trim_end_matches('='))
        .ok()
        .filter(|b| matches!(b.len(), 16 | 24 | 32))
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// AES-CFB with the IV in the first block.
fn open(sealed: &[u8], key: &[u8]) -> Result<Vec<u8>, SessionError> {
    if sealed.len() < 16 {
        return Err(SessionError::Unreadable("too short"));
    }
    let (iv, body) = sealed.split_at(16);
    let mut plain = body.to_vec();
    let bad_key = SessionError::Unreadable("the cookie secret is not an AES key");
    match key.len() {
        16 => cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| bad_key)?
            .decrypt(&mut plain),
        24 => cfb_mode::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
            .map_err(|_| bad_key)?
            .decrypt(&mut plain),
        32 => cfb_mode::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| bad_key)?
            .decrypt(&mut plain),
        _ => return Err(bad_key),
    }
    Ok(plain)
}

/// The LZ4 frame, unpacked; a session is a few KiB, so more is refused.
fn decompress(frame: &[u8]) -> Result<Vec<u8>, SessionError> {
    let mut out = Vec::new();
    lz4_flex::frame::FrameDecoder::new(frame)
        .take(1 << 20)
        .read_to_end(&mut out)
        .map_err(|_| SessionError::Unreadable("not an LZ4 frame"))?;
    Ok(out)
}

/// A session cookie as the proxy makes one (for tests; the black-box
/// oauth2 test reads those the real proxy makes).
#[cfg(test)]
pub(crate) fn seal(who: &Identity, secret: &str, made: SystemTime) -> String {
    use aes::cipher::AsyncStreamCipher;
    use std::io::Write;
    let mut fields = vec![];
    for (k, v) in [("u", &who.user), ("e", &who.email)] {
        if let Some(v) = v {
            fields.push((rmpv::Value::from(k), rmpv::Value::from(v.as_str())));
        }
    }
    let mut packed = vec![];
    rmpv::encode::write_value(&mut packed, &rmpv::Value::Map(fields)).unwrap();
    let mut lz4 = lz4_flex::frame::FrameEncoder::new(vec![]);
    lz4.write_all(&packed).unwrap();
    let mut body = lz4.finish().unwrap();
    let key = key(secret);
    let iv = [7u8; 16];
    match key.len() {
        16 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .unwrap()
            .encrypt(&mut body),
        24 => cfb_mode::Encryptor::<aes::Aes192>::new_from_slices(&key, &iv)
            .unwrap()
            .encrypt(&mut body),
        _ => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .unwrap()
            .encrypt(&mut body),
    }
    let url = base64::engine::general_purpose::URL_SAFE;
    let sealed = url.encode([iv.as_slice(), &body].concat());
    let t = made.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{COOKIE_NAME}{sealed}{t}").as_bytes());
    format!(
        "{COOKIE_NAME}={sealed}|{t}|{}",
        url.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_session_opens_with_its_secret_only() {
        let who = Identity {
            user: Some("1234".into()),
            email: Some("alice@example.com".into()),
        };
        let now = SystemTime::now();
        // A secret that is 32 base64url bytes (as the operator makes
        // them), and one that is not and keys AES as it is.
        for secret in [
            "8J3x0mQz6Xr0Yc1uVh8aZkq2b5n7PpTt4LwS9dE1fGo=",
            "0123456789abcdef",
        ] {
            let cookie = seal(&who, secret, now);
            assert_eq!(
                identity([cookie.as_str()].into_iter(), secret, now),
                Ok(who.clone())
            );
            assert_eq!(
                identity([cookie.as_str()].into_iter(), "another secret", now),
                Err(SessionError::BadSignature)
            );
        }
        assert_eq!(who.name(), "alice@example.com");
    }

    #[test]
    fn the_cookie_is_found_whole_or_in_parts() {
        let one = session_cookie(["a=1; _oauth2_proxy=v|1|s"].into_iter());
        assert_eq!(one, Some((COOKIE_NAME.into(), "v|1|s".into())));
        let parts = session_cookie(["_oauth2_proxy_1=b", "_oauth2_proxy_0=a"].into_iter());
        assert_eq!(parts, Some((COOKIE_NAME.into(), "ab".into())));
        assert_eq!(session_cookie(["_oauth2_proxy_csrf=x"].into_iter()), None);
    }

    #[test]
    fn a_cookie_not_signed_with_the_secret_is_refused_before_anything_is_opened() {
        let now = SystemTime::now();
        let t = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let url = base64::engine::general_purpose::URL_SAFE;
        let sign = |secret: &str, sealed: &str| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{COOKIE_NAME}{sealed}{t}").as_bytes());
            url.encode(mac.finalize().into_bytes())
        };
        let sealed = url.encode([0u8; 40]);
        let forged = format!("{COOKIE_NAME}={sealed}|{t}|{}", sign("another", &sealed));
        assert_eq!(
            identity([forged.as_str()].into_iter(), "secret", now),
            Err(SessionError::BadSignature)
        );
        // Signed, but the time is past the lifetime: refused too.
        let old = t - COOKIE_LIFETIME.as_secs() - 1;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{COOKIE_NAME}{sealed}{old}").as_bytes());
        let stale = format!(
            "{COOKIE_NAME}={sealed}|{old}|{}",
            url.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            identity([stale.as_str()].into_iter(), "secret", now),
            Err(SessionError::Expired)
        );
        assert_eq!(
            identity(["x=1"].into_iter(), "secret", now),
            Err(SessionError::NoCookie)
        );
        assert_eq!(
            identity(
                [format!("{COOKIE_NAME}=a|b").as_str()].into_iter(),
                "secret",
                now
            ),
            Err(SessionError::Malformed)
        );
    }
}
