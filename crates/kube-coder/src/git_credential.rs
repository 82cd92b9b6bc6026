//! `kube-coder git-credential get`: git's credential helper inside a
//! workspace with `spec.github`. It shows the pod's projected broker token
//! (`KUBE_CODER_BROKER_TOKEN_FILE`) to the operator's token broker
//! (`KUBE_CODER_BROKER_URL`) and hands git the installation token it gets,
//! as `x-access-token`; `token` prints the token alone (the image's `gh`
//! wrapper). `store` and `erase` do nothing: the broker keeps the tokens. A workspace without the broker gets no answer, so git
//! falls back to whatever else is configured.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct GitCredentialArgs {
    /// get, store or erase (git says which), or token: print the token.
    operation: String,
}

/// The `key=value` lines git writes, up to a blank line.
fn read_request(input: impl BufRead) -> Vec<(String, String)> {
    input
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn fail(message: &str) -> ExitCode {
    eprintln!("kube-coder git-credential: {message}");
    ExitCode::FAILURE
}

pub fn run(args: GitCredentialArgs) -> ExitCode {
    match args.operation.as_str() {
        "get" => {
            let request = read_request(std::io::stdin().lock());
            let https = request.iter().any(|(k, v)| k == "protocol" && v == "https");
            if !https {
                return ExitCode::SUCCESS;
            }
            match broker_token() {
                Ok(Some(token)) => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "username=x-access-token\npassword={token}\n");
                    ExitCode::SUCCESS
                }
                // No broker here: no answer, git tries what else it has.
                Ok(None) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        // For programs that take a token, not git's protocol (the image's
        // gh wrapper).
        "token" => match broker_token() {
            Ok(Some(token)) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Ok(None) => fail("this workspace has no token broker (no spec.github)"),
            Err(e) => fail(&e),
        },
        // store, erase: the broker owns the tokens.
        _ => ExitCode::SUCCESS,
    }
}

/// The broker's installation token for this workspace; None where the
/// workspace has no broker.
fn broker_token() -> Result<Option<String>, String> {
    let (Ok(url), Ok(token_file)) = (
        std::env::var("KUBE_CODER_BROKER_URL"),
        std::env::var("KUBE_CODER_BROKER_TOKEN_FILE"),
    ) else {
        return Ok(None);
    };
    // The kubelet rewrites the file as it renews the token: read it now.
    let pod_token = std::fs::read_to_string(&token_file)
        .map_err(|e| format!("cannot read the broker token {token_file}: {e}"))?
        .trim()
        .to_string();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        // The broker is in the cluster: never through an egress proxy.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let r = http
            .post(format!("{}/github/token", url.trim_end_matches('/')))
            .bearer_auth(pod_token)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot reach the token broker at {url}: {}",
                    operator::broker::github_api::with_causes(&e)
                )
            })?;
        let status = r.status();
        let body: serde_json::Value = r
            .json()
            .await
            .map_err(|e| format!("the token broker's answer is not JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "the token broker refused ({status}): {}",
                body["error"].as_str().unwrap_or("no reason given")
            ));
        }
        body["token"]
            .as_str()
            .map(|t| Some(t.to_string()))
            .ok_or_else(|| "the token broker's answer has no token".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gits_request_is_read_up_to_the_blank_line() {
        let r = read_request(
            "protocol=https\nhost=github.com\npath=acme/app.git\n\nignored=1\n".as_bytes(),
        );
        assert_eq!(
            r,
            vec![
                ("protocol".to_string(), "https".to_string()),
                ("host".to_string(), "github.com".to_string()),
                ("path".to_string(), "acme/app.git".to_string()),
            ]
        );
    }
}
