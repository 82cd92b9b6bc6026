//! The SSH server's host key: an Ed25519 key made on first start and kept
//! (owner-only) in the data dir, so a client that trusted it once keeps
//! trusting the same workspace after a restart.

use std::path::Path;

use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;

/// A new Ed25519 key from the system's randomness.
pub fn generate() -> PrivateKey {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

pub fn load_or_create(path: &Path) -> Result<PrivateKey, String> {
    match std::fs::read_to_string(path) {
        // Trimmed: the PEM reader refuses anything after the last line.
        Ok(text) => PrivateKey::from_openssh(text.trim())
            .map_err(|e| format!("not an OpenSSH private key ({e}); remove it to make a new one")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = generate();
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| format!("cannot encode it ({e})"))?;
            crate::secrets::write_secret_file(path, &text)
                .map_err(|e| format!("cannot write it ({e})"))?;
            Ok(key)
        }
        Err(e) => Err(format!("cannot read it ({e})")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh_host_ed25519_key");
        let first = super::load_or_create(&path).unwrap();
        let again = super::load_or_create(&path).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "garbage").unwrap();
        assert!(super::load_or_create(&path)
            .unwrap_err()
            .contains("remove it"));
    }
}
