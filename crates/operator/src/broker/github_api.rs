//! The two GitHub REST calls the broker makes with the App JWT: which
//! installation holds an owner's repositories, and an installation token
//! limited to some of them and to some permissions.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

/// An installation token as GitHub issues it.
#[derive(Clone, Debug, Deserialize)]
pub struct InstallationToken {
    pub token: String,
    /// RFC 3339, e.g. `2026-11-30T11:00:00Z`.
    pub expires_at: String,
}

/// A client of one GitHub API (github.com's, or an Enterprise Server's).
#[derive(Clone)]
pub struct GithubApi {
    http: reqwest::Client,
    base: String,
}

impl GithubApi {
    /// `base` is the REST API's root; `ca_bundle`, PEM certificates to
    /// trust besides the public roots.
    pub fn new(base: &str, ca_bundle: Option<&str>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .user_agent("kube-coder-broker")
            .timeout(std::time::Duration::from_secs(30))
            // A redirect would carry the App JWT elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_bundle {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("the GitHub CA bundle is not PEM: {e}"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            http: builder
                .build()
                .map_err(|e| format!("cannot build the GitHub client: {e}"))?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str, jwt: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(jwt)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
    }

    /// The installation of the App on `owner/repo`'s account.
    pub async fn installation(&self, jwt: &str, owner: &str, repo: &str) -> Result<u64, String> {
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let path = format!("/repos/{owner}/{repo}/installation");
        let r = self
            .send(self.request(reqwest::Method::GET, &path, jwt))
            .await?;
        let status = r.status();
        if !status.is_success() {
            return Err(format!(
                "the GitHub App is not installed on {owner}/{repo} (GitHub answered {status}: {})",
                message(r).await
            ));
        }
        json_of::<Installation>(r, "installation")
            .await
            .map(|i| i.id)
    }

    /// A token of installation `id` for `repositories` (names, without the
    /// owner) with `permissions`.
    pub async fn installation_token(
        &self,
        jwt: &str,
        id: u64,
        repositories: &[String],
        permissions: &BTreeMap<String, String>,
    ) -> Result<InstallationToken, String> {
        let path = format!("/app/installations/{id}/access_tokens");
        let body = json!({"repositories": repositories, "permissions": permissions});
        let r = self
            .send(self.request(reqwest::Method::POST, &path, jwt).json(&body))
            .await?;
        let status = r.status();
        if !status.is_success() {
            return Err(format!(
                "GitHub refused an installation token ({status}): {}",
                message(r).await
            ));
        }
        json_of::<InstallationToken>(r, "token").await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        request.send().await.map_err(|e| {
            format!(
                "cannot reach the GitHub API at {}: {}",
                self.base,
                with_causes(&e)
            )
        })
    }
}

/// A successful answer's JSON, `what` naming it in the error.
async fn json_of<T: serde::de::DeserializeOwned>(
    r: reqwest::Response,
    what: &str,
) -> Result<T, String> {
    r.json::<T>()
        .await
        .map_err(|e| format!("GitHub's {what} answer is not understood: {e}"))
}

/// An error and what caused it (reqwest's own text stops at "error
/// sending request"); the broker's client, git's helper, say the same.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// GitHub's `message`, or the body's start.
async fn message(r: reqwest::Response) -> String {
    let body = r.text().await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}
