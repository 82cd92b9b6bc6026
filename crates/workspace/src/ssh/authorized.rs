//! Whether a key may log in: it is listed in the authorized-keys file
//! (OpenSSH's format; options and comments ignored). The file is read at
//! each attempt, so an added or removed key counts at once, and a missing
//! or unreadable file lets no one in.

use std::path::Path;

use russh::keys::ssh_key::{AuthorizedKeys, PublicKey};

pub async fn is_authorized(path: &Path, key: &PublicKey) -> bool {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the SSH authorized keys; refusing");
            return false;
        }
    };
    AuthorizedKeys::new(&text).any(|entry| match entry {
        Ok(entry) => entry.public_key().key_data() == key.key_data(),
        Err(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::host_key::generate;

    #[tokio::test]
    async fn only_listed_keys_get_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authorized_keys");
        let (listed, other) = (generate(), generate());
        assert!(!is_authorized(&file, listed.public_key()).await);
        let line = listed.public_key().to_openssh().unwrap();
        std::fs::write(
            &file,
            format!("# team keys\n\nnot a key\n{line} alice@laptop\n"),
        )
        .unwrap();
        assert!(is_authorized(&file, listed.public_key()).await);
        assert!(!is_authorized(&file, other.public_key()).await);
    }
}
