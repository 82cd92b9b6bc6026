//! htpasswd files for `--auth basic`: bcrypt (`$2y$`, `$2b$`, `$2a$`) and
//! argon2 (`$argon2id$…`) hashes, one `user:hash` per line.
//!
//! Weak schemes (MD5 `$apr1$`, SHA1 `{SHA}`, crypt) are refused at load time
//! rather than silently accepted.

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::PasswordHash;
use argon2::PasswordVerifier;

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("cannot read htpasswd file {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("htpasswd file {path}, line {line}: {why}")]
    Line {
        path: String,
        line: usize,
        why: String,
    },
    #[error("htpasswd file {0} has no users")]
    Empty(String),
}

#[derive(Debug, Clone)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// What an unknown user's password is checked against: the file's
    /// first hash, so the answer takes exactly as long as for a known user
    /// (a fixed dummy of another cost told names apart by timing: 10 ms
    /// against 150 ms). The result is thrown away.
    decoy: String,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Self, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|err| HtpasswdError::Read {
            path: path.display().to_string(),
            err,
        })?;
        Self::parse(&text)
            .map_err(|(line, why)| HtpasswdError::Line {
                path: path.display().to_string(),
                line,
                why,
            })
            .and_then(|h| {
                if h.users.is_empty() {
                    Err(HtpasswdError::Empty(path.display().to_string()))
                } else {
                    Ok(h)
                }
            })
    }

    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut users = HashMap::new();
        let mut decoy = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((i + 1, "expected user:hash".into()));
            };
            if !(hash.starts_with("$2y$")
                || hash.starts_with("$2b$")
                || hash.starts_with("$2a$")
                || hash.starts_with("$argon2"))
            {
                return Err((
                    i + 1,
                    format!("user `{user}`: only bcrypt ($2y$) and argon2 hashes are accepted (htpasswd -B)"),
                ));
            }
            if hash.starts_with("$argon2") && PasswordHash::new(hash).is_err() {
                return Err((i + 1, format!("user `{user}`: malformed argon2 hash")));
            }
            decoy.get_or_insert_with(|| hash.to_string());
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Self {
            users,
            decoy: decoy.unwrap_or_default(),
        })
    }

    /// Check a user's password. Slow on purpose (that is the hash's job):
    /// call it from a blocking thread.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(hash) => check(hash, password),
            None => {
                let _ = check(&self.decoy, password);
                false
            }
        }
    }
}

fn check(hash: &str, password: &str) -> bool {
    if hash.starts_with("$argon2") {
        PasswordHash::new(hash)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    #[test]
    fn bcrypt_and_argon2_verify() {
        let b = bcrypt::hash("pw1", 4).unwrap().replacen("$2b$", "$2y$", 1);
        let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap();
        let a = argon2::Argon2::default()
            .hash_password(b"pw2", &salt)
            .unwrap()
            .to_string();
        let h = Htpasswd::parse(&format!("# users\nalice:{b}\nbob:{a}\n")).unwrap();
        assert!(h.verify("alice", "pw1"));
        assert!(!h.verify("alice", "pw2"));
        assert!(h.verify("bob", "pw2"));
        assert!(!h.verify("bob", "pw1"));
        assert!(!h.verify("carol", "pw1"));
        // An unknown name is never let in, even with the decoy's password.
        assert!(!h.verify("carol", "pw1") && !h.verify("", "pw1"));
    }

    #[test]
    fn weak_schemes_are_refused() {
        assert!(Htpasswd::parse("u:$apr1$abc$def").is_err());
        assert!(Htpasswd::parse("u:{SHA}abc").is_err());
        assert!(Htpasswd::parse("u:plaintext").is_err());
        assert!(Htpasswd::parse("no-colon").is_err());
    }
}
