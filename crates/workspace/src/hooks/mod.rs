//! Completion hooks: where the server talks to the outside world on a
//! user's behalf. `ssrf` decides where a hook may go, `payload` what it
//! says, `deliver` drains the durable outbox the store writes with each
//! final task state.

pub mod deliver;
pub mod payload;
pub mod ssrf;

use serde::Deserialize;

/// A hook URL as anyone but a writer may see it, and as logs and error
/// texts show it: scheme, host and port. Paths and queries often carry a
/// token (`https://hooks.example/T0/B1/secret`), so they are elided.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path() == "/" && u.query().is_none() {
                "/"
            } else {
                "/…"
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// A hook as given at task creation (or per assistant, or server-wide).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    pub url: String,
    /// Signs each delivery (`X-Kube-Coder-Signature-256`); never returned.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A stored hook URL as a caller sees it: whole for writers, redacted for
/// read-only viewers.
pub fn hook_url_view(url: Option<&str>, writer: bool) -> Option<String> {
    url.map(|u| if writer { u.to_string() } else { redacted(u) })
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn redaction_keeps_scheme_host_and_port_only() {
        assert_eq!(
            redacted("https://hooks.example.com/services/T0/B1/s3cr3t?token=x"),
            "https://hooks.example.com/…"
        );
        assert_eq!(redacted("http://10.0.0.1:8080/"), "http://10.0.0.1:8080/");
        assert_eq!(redacted("http://u:pw@h.test/p"), "http://h.test/…");
        assert_eq!(redacted("not a url s3cr3t"), "(not a URL)");
    }
}
