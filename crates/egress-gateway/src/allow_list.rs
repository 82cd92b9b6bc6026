//! The allow list: which host names (and ports) a workspace may reach
//! through the gateway.
//!
//! One entry per line (`#` starts a comment): `example.com` is that name
//! only; `*.example.com` is every name below it (`api.example.com`,
//! `a.b.example.com`) but not `example.com` itself, so a list says each
//! on purpose. Without a port an entry allows 80 and 443 (HTTP and HTTPS);
//! `name:port` allows that port only. Names compare in lower case with
//! any trailing dot removed. Addresses are not entries: the gateway lets
//! names through, and a workspace that must reach an address range says
//! so in `allowCIDRs`.

use std::fmt;
use std::net::IpAddr;

/// The ports an entry without one allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("line {line}: `{entry}` is an IP address; the allow list holds host names (allow addresses with allowCIDRs)")]
    Address { line: usize, entry: String },
    #[error("line {line}: `{entry}` is not a host name (letters, digits, `-` and dots; `*.` only as the first label)")]
    Name { line: usize, entry: String },
    #[error("line {line}: `{entry}` has a port that is not a number from 1 to 65535")]
    Port { line: usize, entry: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// `*.suffix`: names ending in `.suffix`.
    Below(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pattern: Pattern,
    port: Option<u16>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pattern {
            Pattern::Exact(n) => write!(f, "{n}")?,
            Pattern::Below(n) => write!(f, "*.{n}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

impl Entry {
    fn allows(&self, host: &str, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        };
        port_ok
            && match &self.pattern {
                Pattern::Exact(n) => host == n,
                Pattern::Below(n) => host
                    .strip_suffix(n.as_str())
                    .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            }
    }
}

/// A host name as compared: lower case, no trailing dot.
pub fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn parse_entry(line: usize, raw: &str) -> Result<Entry, EntryError> {
    let entry = raw.to_string();
    if raw.parse::<IpAddr>().is_ok() || raw.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        return Err(EntryError::Address { line, entry });
    }
    let (name, port) = match raw.rsplit_once(':') {
        Some((name, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or(EntryError::Port {
                    line,
                    entry: entry.clone(),
                })?;
            (name, Some(port))
        }
        None => (raw, None),
    };
    let name = normalize(name);
    if name.parse::<IpAddr>().is_ok() {
        return Err(EntryError::Address { line, entry });
    }
    let pattern = match name.strip_prefix("*.") {
        Some(rest) if valid_name(rest) => Pattern::Below(rest.to_string()),
        None if valid_name(&name) => Pattern::Exact(name),
        _ => return Err(EntryError::Name { line, entry }),
    };
    Ok(Entry { pattern, port })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

impl AllowList {
    /// Parses the file's text; the first bad line is the error (a list is
    /// taken whole or not at all).
    pub fn parse(text: &str) -> Result<AllowList, EntryError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_text = line.split('#').next().unwrap_or_default().trim();
            if line_text.is_empty() {
                continue;
            }
            entries.push(parse_entry(i + 1, line_text)?);
        }
        Ok(AllowList { entries })
    }

    /// The entry that lets `host:port` through, if any (`host` normalised).
    pub fn allowing(&self, host: &str, port: u16) -> Option<&Entry> {
        self.entries.iter().find(|e| e.allows(host, port))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> AllowList {
        AllowList::parse(text).unwrap()
    }

    #[test]
    fn exact_names_match_themselves_only_on_http_and_https_ports() {
        let l = list("registry.npmjs.org\n");
        assert!(l.allowing("registry.npmjs.org", 443).is_some());
        assert!(l.allowing("registry.npmjs.org", 80).is_some());
        assert!(l.allowing("registry.npmjs.org", 22).is_none());
        assert!(l.allowing("evil.registry.npmjs.org", 443).is_none());
        assert!(l.allowing("registry.npmjs.org.evil.com", 443).is_none());
        assert!(l.allowing("xregistry.npmjs.org", 443).is_none());
    }

    #[test]
    fn wildcards_match_names_below_not_the_name_itself_nor_lookalikes() {
        let l = list("*.github.com");
        assert!(l.allowing("api.github.com", 443).is_some());
        assert!(l.allowing("a.b.github.com", 443).is_some());
        assert!(l.allowing("github.com", 443).is_none());
        assert!(l.allowing("evilgithub.com", 443).is_none());
        assert!(l.allowing("github.com.evil.org", 443).is_none());
        assert!(l.allowing(".github.com", 443).is_none());
    }

    #[test]
    fn ports_comments_case_and_trailing_dots() {
        let l = list("# package mirrors\nGit.Example.COM.:9418  # git protocol\n\n  pypi.org  \n");
        assert_eq!(l.len(), 2);
        assert!(l.allowing(&normalize("git.example.com."), 9418).is_some());
        assert!(l.allowing("git.example.com", 443).is_none());
        assert_eq!(
            l.allowing("pypi.org", 443).map(|e| e.to_string()),
            Some("pypi.org".to_string())
        );
    }

    #[test]
    fn bad_entries_name_their_line_and_the_problem() {
        for (text, want) in [
            ("ok.com\n10.0.0.1", "line 2: `10.0.0.1` is an IP address"),
            ("[::1]", "line 1: `[::1]` is an IP address"),
            ("::1", "line 1: `::1` is an IP address"),
            ("exa mple.com", "line 1: `exa mple.com` is not a host name"),
            ("*.", "line 1: `*.` is not a host name"),
            ("a.*.com", "line 1: `a.*.com` is not a host name"),
            ("-bad.com", "is not a host name"),
            ("x.com:0", "line 1: `x.com:0` has a port"),
            ("x.com:99999", "has a port"),
            ("x.com:http", "has a port"),
        ] {
            let e = AllowList::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
