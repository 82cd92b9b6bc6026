//! Which workspace a request comes from: it shows a projected
//! ServiceAccount token of the workspace pod, made for one audience (the
//! token broker's, the builds'), and the API server says whose it is
//! (TokenReview). The token is bound to the pod, so it dies with it, and
//! is useless against the API server itself.

use axum::http::{HeaderMap, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};

/// Why a request's identity was not taken: the status to answer, and a
/// message naming the problem.
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
pub struct Refused(pub StatusCode, pub String);

/// The bearer token of `headers`.
pub fn bearer(headers: &HeaderMap, what: &str) -> Result<String, Refused> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .ok_or_else(|| {
            Refused(
                StatusCode::UNAUTHORIZED,
                format!("send the workspace's {what} token as Authorization: Bearer"),
            )
        })
}

/// The name of the Workspace whose pod holds `token`, a token for
/// `audience`, if the API server says so.
pub async fn identify(
    client: &kube::Client,
    token: &str,
    audience: &str,
) -> Result<String, Refused> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences: Some(vec![audience.into()]),
        },
        ..Default::default()
    };
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| {
            Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot ask the API server about the token: {e}"),
            )
        })?;
    let status = answer.status.unwrap_or_default();
    if status.authenticated != Some(true)
        || !status
            .audiences
            .unwrap_or_default()
            .iter()
            .any(|a| a == audience)
    {
        return Err(Refused(
            StatusCode::UNAUTHORIZED,
            format!("the token is not a valid {audience} token of a running pod"),
        ));
    }
    let user = status.user.and_then(|u| u.username).unwrap_or_default();
    workspace_of(&user).map(str::to_string).ok_or_else(|| {
        Refused(
            StatusCode::FORBIDDEN,
            format!("{user} is not a workspace's identity"),
        )
    })
}

/// The workspace of a ServiceAccount user name: `workspace` in `ws-NAME`.
fn workspace_of(user: &str) -> Option<&str> {
    user.strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.strip_suffix(":workspace"))
        .and_then(|ns| ns.strip_prefix("ws-"))
        .filter(|name| !name.is_empty() && !name.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_workspace_namespaces_workspace_account_is_a_workspace() {
        assert_eq!(
            workspace_of("system:serviceaccount:ws-alice:workspace"),
            Some("alice")
        );
        for other in [
            "system:serviceaccount:ws-alice:default",
            "system:serviceaccount:kube-system:workspace",
            "system:serviceaccount:ws-:workspace",
            "alice",
        ] {
            assert_eq!(workspace_of(other), None, "{other}");
        }
    }
}
