//! Secret material: generation, storage on disk, hashing and comparison.
//!
//! Tokens come from a CSPRNG seeded by the OS. Only a SHA-256 digest of the API token is
//! kept in memory; comparisons are constant-time. The token file is created
//! with mode 0600 by writing a temp file and renaming it, so a crash never
//! leaves a half-written token.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

// rand's thread RNG is a CSPRNG (ChaCha) seeded and reseeded from the OS.
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 32 random bytes, hex encoded (64 characters).
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A short random identifier (not a secret): 12 hex characters.
pub fn generate_id() -> String {
    let mut bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The digest stored in place of a secret that only needs verifying.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Constant-time check of a presented secret.
    pub fn matches(&self, presented: &str) -> bool {
        let other = Sha256::digest(presented.as_bytes());
        self.0.ct_eq(other.as_slice()).into()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

/// Read the API token file, or create it with a fresh token.
/// Returns the token and whether it was just created.
pub fn load_or_create_token(path: &Path) -> std::io::Result<(String, bool)> {
    match fs::read_to_string(path) {
        Ok(s) => {
            let token = s.trim().to_string();
            if token.len() < 16 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the API token in {} is shorter than 16 characters",
                        path.display()
                    ),
                ));
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = generate_token();
            write_secret_file(path, &token)?;
            Ok((token, true))
        }
        Err(e) => Err(e),
    }
}

/// Write a secret atomically with mode 0600: temp file, fsync, rename.
pub fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        generate_id()
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let result = (|| {
        f.write_all(contents.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_long_random_and_distinct() {
        let a = generate_token();
        let b = generate_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn digest_matches_only_the_same_secret() {
        let d = SecretDigest::of("correct horse");
        assert!(d.matches("correct horse"));
        assert!(!d.matches("correct hors"));
        assert!(!d.matches(""));
        assert_eq!(format!("{d:?}"), "SecretDigest(..)");
    }

    #[test]
    fn token_file_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/api-token");
        let (t1, created) = load_or_create_token(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (t2, created) = load_or_create_token(&path).unwrap();
        assert!(!created);
        assert_eq!(t1, t2);
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }
}
