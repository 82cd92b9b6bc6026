//! The model providers a workspace may use, as the operator writes them
//! (`models.json` in the gateway's ConfigMap), and their keys (one file per
//! provider in the key Secret's volume, mounted into the gateway only).
//!
//! A provider is a name (the first segment of the path on the model port:
//! `/anthropic/v1/messages`), the API it speaks (which decides how the key
//! is sent) and the base URL the name stands for.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// How a provider takes its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `x-api-key`.
    Anthropic,
    /// `Authorization: Bearer` (OpenAI, and every compatible server).
    Openai,
    /// `x-goog-api-key`.
    Gemini,
}

impl Api {
    /// The request headers that carry a client's own credential; all are
    /// removed before the gateway adds the key.
    pub const CREDENTIAL_HEADERS: [&'static str; 4] =
        ["authorization", "x-api-key", "x-goog-api-key", "api-key"];

    /// The header the key goes in, and its value.
    pub fn credential(self, key: &str) -> (&'static str, String) {
        match self {
            Api::Anthropic => ("x-api-key", key.to_string()),
            Api::Openai => ("authorization", format!("Bearer {key}")),
            Api::Gemini => ("x-goog-api-key", key.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    pub api: Api,
    /// What the provider's base URL stands for, e.g.
    /// `https://api.anthropic.com` or `https://api.openai.com/v1`.
    pub base_url: url::Url,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelsConfig {
    #[serde(default)]
    pub providers: Vec<Provider>,
    /// Input and output tokens this workspace may use per calendar month
    /// (UTC); none = no limit.
    #[serde(default)]
    pub monthly_token_budget: Option<u64>,
    /// PEM certificates trusted besides the public roots (a provider inside
    /// the company, behind its own CA).
    #[serde(default)]
    pub ca_bundle: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid models file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("model provider {0:?}: names are lower-case letters, digits and '-'")]
    Name(String),
    #[error("model provider {0:?} is listed twice")]
    Twice(String),
    #[error("model provider {name}: the base URL must be https:// (or http:// to a loopback address for tests), not {url}")]
    Scheme { name: String, url: String },
    #[error("the models file's caBundle holds no usable certificate: {0}")]
    Ca(String),
}

impl ModelsConfig {
    pub fn parse(path: &str, text: &str) -> Result<ModelsConfig, ConfigError> {
        let config: ModelsConfig =
            serde_json::from_str(text).map_err(|source| ConfigError::Parse {
                path: path.to_string(),
                source,
            })?;
        let mut seen = std::collections::BTreeSet::new();
        for p in &config.providers {
            let valid = !p.name.is_empty()
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(ConfigError::Name(p.name.clone()));
            }
            if !seen.insert(p.name.as_str()) {
                return Err(ConfigError::Twice(p.name.clone()));
            }
            // The key must never cross the network in clear text.
            let loopback = p
                .base_url
                .host_str()
                .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]");
            if p.base_url.scheme() != "https" && !(p.base_url.scheme() == "http" && loopback) {
                return Err(ConfigError::Scheme {
                    name: p.name.clone(),
                    url: p.base_url.to_string(),
                });
            }
        }
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<ModelsConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&shown, &text)
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }
}

/// The keys in `dir`, by provider name (file name); surrounding white
/// space dropped. Hidden files (a Secret volume's `..data` links) are not
/// keys. A missing directory is no keys.
pub fn load_keys(dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut keys = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let key = std::fs::read_to_string(entry.path())?.trim().to_string();
        if !key.is_empty() {
            keys.insert(name, key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_checked_before_any_key_is_sent() {
        let ok = ModelsConfig::parse(
            "m",
            r#"{"providers":[{"name":"anthropic","api":"anthropic","baseUrl":"https://api.anthropic.com"},
                             {"name":"local-llm","api":"openai","baseUrl":"http://127.0.0.1:8000/v1"}],
                "monthlyTokenBudget":1000}"#,
        )
        .unwrap();
        assert_eq!(ok.provider("local-llm").unwrap().api, Api::Openai);
        assert_eq!(ok.monthly_token_budget, Some(1000));
        let err = |text: &str| ModelsConfig::parse("m", text).unwrap_err().to_string();
        assert!(err(
            r#"{"providers":[{"name":"x","api":"openai","baseUrl":"http://llm.example.com"}]}"#
        )
        .contains("must be https://"));
        assert!(
            err(r#"{"providers":[{"name":"X","api":"openai","baseUrl":"https://a"}]}"#)
                .contains("lower-case")
        );
        assert!(err(r#"{"providers":[{"name":"a","api":"openai","baseUrl":"https://a"},{"name":"a","api":"gemini","baseUrl":"https://b"}]}"#)
            .contains("listed twice"));
        assert!(
            err(r#"{"providers":[{"name":"a","api":"cohere","baseUrl":"https://a"}]}"#)
                .contains("unknown variant")
        );
    }

    #[test]
    fn keys_are_the_files_of_the_secret_volume() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("anthropic"), "sk-ant-1\n").unwrap();
        std::fs::write(dir.path().join("..data"), "not a key").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let keys = load_keys(dir.path()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys["anthropic"], "sk-ant-1");
        assert!(load_keys(&dir.path().join("absent")).unwrap().is_empty());
        assert_eq!(
            Api::Openai.credential("k"),
            ("authorization", "Bearer k".to_string())
        );
    }
}
