//! The operator's image builds, as the workspace server reaches them: when
//! the operator wired the workspace to them (`--build-url`, and the pod's
//! projected token of audience `kube-coder-build` in `--build-token-file`,
//! read at each build: the kubelet renews it), a build's context goes to
//! the operator as it arrives, and its NDJSON log comes back.
//!
//! The client ignores the proxy variables: the workspace's own
//! `HTTP_PROXY` may point at its egress gateway, which refuses in-cluster
//! names.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct BuildService {
    url: String,
    token_file: PathBuf,
    client: reqwest::Client,
}

impl BuildService {
    pub fn new(url: &str, token_file: PathBuf) -> Result<BuildService, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(BuildService {
            url: url.to_string(),
            token_file,
            client,
        })
    }

    /// Starts a build of `query` with the context `body`: the operator's
    /// answer (a refusal, or the log streaming).
    pub async fn start(
        &self,
        query: &str,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, String> {
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                format!(
                    "cannot read the build token {}: {e}",
                    self.token_file.display()
                )
            })?;
        self.client
            .post(format!("{}?{query}", self.url))
            .bearer_auth(token.trim())
            .header("content-type", "application/x-tar")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach the operator's builds at {}: {e}", self.url))
    }
}

/// A build's log (one JSON object a line) cut into lines as its chunks
/// arrive: each complete line, newline included; a partial one waits for
/// the next chunk.
#[derive(Debug, Default)]
pub struct LogLines {
    pending: Vec<u8>,
}

impl LogLines {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            lines.push(self.pending.drain(..=end).collect());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::LogLines;

    #[test]
    fn a_line_split_across_chunks_comes_out_whole() {
        let mut lines = LogLines::default();
        assert!(lines.push(b"{\"log\":").is_empty());
        assert_eq!(
            lines.push(b"\"a\"}\n{\"log\":\"b\"}\n{"),
            [b"{\"log\":\"a\"}\n".to_vec(), b"{\"log\":\"b\"}\n".to_vec()]
        );
        assert_eq!(lines.push(b"}\n"), [b"{}\n".to_vec()]);
    }
}
