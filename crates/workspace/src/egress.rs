//! The workspace's egress gateway, as the dashboard sees it: when the
//! operator put the workspace behind one (`--egress-gateway-url`, the
//! gateway's admin port), its recent refusals, so a user whose `npm
//! install` failed reads which name was refused and by which rule; and the
//! month's model usage against the workspace's budget.
//!
//! The client ignores the proxy variables: the workspace's own
//! `HTTP_PROXY` points at this same gateway, whose proxy port would refuse
//! the request (an in-cluster name is never on the allow list).

use std::time::Duration;

/// How long the dashboard waits for the gateway.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct EgressGateway {
    url: String,
    by_name: bool,
    client: reqwest::Client,
}

impl EgressGateway {
    /// The gateway whose admin port answers at `url`; `by_name`: all the
    /// workspace's egress goes through it (else only model calls do).
    pub fn new(url: &str, by_name: bool) -> Result<EgressGateway, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(EgressGateway {
            url: url.trim_end_matches('/').to_string(),
            by_name,
            client,
        })
    }

    pub fn by_name(&self) -> bool {
        self.by_name
    }

    /// The gateway's recent refusals (newest first), as it lists them.
    pub async fn refusals(&self) -> Result<serde_json::Value, String> {
        let body = self.get("refusals").await?;
        Ok(body
            .get("refusals")
            .cloned()
            .unwrap_or_else(|| serde_json::json!([])))
    }

    /// The month's model usage and budget, as the gateway counts them.
    pub async fn usage(&self) -> Result<serde_json::Value, String> {
        self.get("usage").await
    }

    async fn get(&self, what: &str) -> Result<serde_json::Value, String> {
        let url = format!("{}/{what}", self.url);
        let r = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("the egress gateway at {} did not answer ({e})", self.url))?;
        if !r.status().is_success() {
            return Err(format!(
                "the egress gateway at {} answered {}",
                self.url,
                r.status()
            ));
        }
        r.json()
            .await
            .map_err(|e| format!("the egress gateway's answer is not JSON ({e})"))
    }
}
