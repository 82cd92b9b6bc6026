//! Secrets at rest in the database: hook secrets (outbound signatures) and
//! inbound webhook secrets, sealed with ChaCha20-Poly1305 under a key kept
//! in its own file (`--secret-key-file`, default `<data>/secret.key`, 0600),
//! so a copy of the database (a backup, a shared file) gives none away.
//!
//! Why not a digest, as for session ids and the API token: a signature is
//! an HMAC, and computing or checking one needs the key itself, so the
//! server must be able to recover it. Whoever has the key file as well as
//! the database has the secrets; on a cluster the key file can come from a
//! Secret, apart from the volume that holds the database.
//!
//! Stored form: `kcs1:` + base64(nonce ‖ ciphertext). A value without the
//! prefix is one written before sealing existed; the store seals those at
//! start.

use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

const PREFIX: &str = "kcs1:";
const NONCE: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("a stored secret cannot be opened with this key file (was the key file replaced?)")]
    WrongKey,
    #[error("a stored secret is malformed")]
    Malformed,
}

pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Read the key file (64 hex characters), or create it with a new key.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        let hex_key = match std::fs::read_to_string(path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = crate::secrets::generate_token();
                crate::secrets::write_secret_file(path, &key)?;
                key
            }
            Err(e) => return Err(e),
        };
        let bytes = hex::decode(&hex_key)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} must hold 64 hex characters (a 32-byte key)",
                        path.display()
                    ),
                )
            })?;
        Ok(Self::from_key(&bytes))
    }

    fn from_key(key: &[u8]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// A key that exists only in this process (tests).
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::from_key(&key)
    }

    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce size does not fail.
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .unwrap_or_default();
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&sealed);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
        )
    }

    /// The secret in a stored value (one from before sealing passes as it is).
    pub fn open(&self, stored: &str) -> Result<String, SealError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded)
            .map_err(|_| SealError::Malformed)?;
        if raw.len() < NONCE {
            return Err(SealError::Malformed);
        }
        let (nonce, sealed) = raw.split_at(NONCE);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| SealError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_hide_the_secret() {
        let a = SecretBox::ephemeral();
        let sealed = a.seal("whsec-123");
        assert!(SecretBox::is_sealed(&sealed) && !sealed.contains("whsec"));
        assert_ne!(sealed, a.seal("whsec-123"), "a fresh nonce each time");
        assert_eq!(a.open(&sealed).unwrap(), "whsec-123");
        assert!(matches!(
            SecretBox::ephemeral().open(&sealed),
            Err(SealError::WrongKey)
        ));
        assert_eq!(a.open("legacy-plain").unwrap(), "legacy-plain");
        assert!(a.open("kcs1:!!").is_err());
    }

    #[test]
    fn the_key_file_is_made_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let sealed = SecretBox::load_or_create(&path).unwrap().seal("x");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            SecretBox::load_or_create(&path)
                .unwrap()
                .open(&sealed)
                .unwrap(),
            "x"
        );
        std::fs::write(&path, "short").unwrap();
        assert!(SecretBox::load_or_create(&path).is_err());
    }
}
