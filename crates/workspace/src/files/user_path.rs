//! Turning a client's `path` parameter into a relative path for cap-std.
//!
//! This is hygiene and good error messages, not the confinement: every
//! path is opened through a `cap_std::fs::Dir` rooted at the home, which
//! refuses anything that would resolve outside it (including through
//! symlinks and races that swap a directory for a link).

use std::path::{Component, Path, PathBuf};

use crate::error::ApiError;

const MAX_PATH: usize = 4096;

/// A client path relative to the home root. `.` is the root itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPath(PathBuf);

impl UserPath {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let bad = |why: &str| {
            ApiError::bad_request(
                "invalid_path",
                format!("path `{}`: {why}", raw.escape_debug()),
            )
        };
        if raw.len() > MAX_PATH {
            return Err(bad("longer than 4096 bytes"));
        }
        if raw.contains('\0') {
            return Err(bad("contains a NUL byte"));
        }
        // Paths are relative to the home; a leading `/` means the home too.
        let trimmed = raw.trim_start_matches('/');
        let mut out = PathBuf::new();
        for c in Path::new(trimmed).components() {
            match c {
                Component::Normal(p) => out.push(p),
                Component::CurDir => {}
                Component::ParentDir => return Err(bad("must not contain `..`")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(bad("must be relative to the home"))
                }
            }
        }
        if out.as_os_str().is_empty() {
            out.push(".");
        }
        Ok(Self(out))
    }

    pub fn is_root(&self) -> bool {
        self.0 == Path::new(".")
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The parent directory and the final name; `None` for the root.
    pub fn split(&self) -> Option<(&Path, &std::ffi::OsStr)> {
        if self.is_root() {
            return None;
        }
        let name = self.0.file_name()?;
        let parent = match self.0.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Some((parent, name))
    }

    /// Any component that starts with a dot (hidden in read-only mode).
    pub fn is_hidden(&self) -> bool {
        self.0.components().any(
            |c| matches!(c, Component::Normal(p) if p.as_encoded_bytes().first() == Some(&b'.')),
        )
    }

    pub fn display(&self) -> String {
        if self.is_root() {
            "/".into()
        } else {
            self.0.to_string_lossy().into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses() {
        assert!(UserPath::parse("").unwrap().is_root());
        assert!(UserPath::parse("/").unwrap().is_root());
        assert!(UserPath::parse("./.").unwrap().is_root());
        assert_eq!(
            UserPath::parse("/a//b/./c").unwrap().as_path(),
            Path::new("a/b/c")
        );
        assert!(UserPath::parse("a/../b").is_err());
        assert!(UserPath::parse("..").is_err());
        assert!(UserPath::parse("a\0b").is_err());
        assert!(UserPath::parse(&"a".repeat(5000)).is_err());
        let p = UserPath::parse("dir/file.txt").unwrap();
        let (parent, name) = p.split().unwrap();
        assert_eq!(
            (parent, name.to_str().unwrap()),
            (Path::new("dir"), "file.txt")
        );
        let p = UserPath::parse("file.txt").unwrap();
        assert_eq!(p.split().unwrap().0, Path::new("."));
        assert!(UserPath::parse("a/.git/config").unwrap().is_hidden());
        assert!(!UserPath::parse("a/b.txt").unwrap().is_hidden());
    }
}
