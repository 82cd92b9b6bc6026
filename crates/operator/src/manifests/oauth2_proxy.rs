//! Where the oauth2-proxy sidecar is built (`auth.type: oauth2`).
//!
//! It runs in the workspace pod and forwards to the dashboard on
//! 127.0.0.1, so the dashboard port is never reachable from outside the
//! pod without it, and identity headers can only come from loopback (the
//! server's default trusted-proxy range): no pod-CIDR guess to get wrong.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, SecretKeySelector,
};

use super::workload::{hardened, http_probe, resources};
use crate::crd::{OAuth2Provider, Workspace};
use crate::names;
use crate::settings::Settings;

/// Who the workspace server lets in behind the proxy: the listed users,
/// plus the owner's GitHub login and e-mail. Empty only when GitHub
/// organisations decide (the proxy then checks membership).
pub fn allowed_users(ws: &Workspace) -> Vec<String> {
    let Some(o) = &ws.spec.auth.oauth2 else {
        return vec![];
    };
    let mut users = o.allowed_users.clone();
    let owner = &ws.spec.owner;
    users.extend(owner.github_login.iter().cloned());
    users.extend(owner.email.iter().cloned());
    if users.is_empty() && o.allowed_orgs.is_empty() {
        users.push(owner.name.clone());
    }
    users.sort();
    users.dedup();
    users
}

fn secret_env(name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names::OAUTH2_SECRET.into(),
                key: key.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn sidecar(ws: &Workspace, settings: &Settings) -> Container {
    let mut args = vec![
        format!("--http-address=0.0.0.0:{}", names::OAUTH2_PORT),
        format!("--upstream=http://127.0.0.1:{}/", names::DASHBOARD_PORT),
        "--reverse-proxy=true".into(),
        "--cookie-secure=true".into(),
        "--cookie-samesite=lax".into(),
        "--skip-provider-button=true".into(),
        // The server reads X-Forwarded-User/-Email (its default identity
        // headers); the proxy sets them and strips client-sent copies.
        "--pass-user-headers=true".into(),
        "--skip-auth-strip-headers=true".into(),
        "--email-domain=*".into(),
    ];
    if let Some(o) = &ws.spec.auth.oauth2 {
        let provider = match o.provider {
            OAuth2Provider::Github => "github",
            OAuth2Provider::Google => "google",
            OAuth2Provider::Oidc => "oidc",
        };
        args.push(format!("--provider={provider}"));
        if let Some(issuer) = &o.issuer_url {
            args.push(format!("--oidc-issuer-url={issuer}"));
        }
        if o.provider == OAuth2Provider::Github {
            for org in &o.allowed_orgs {
                args.push(format!("--github-org={org}"));
            }
        }
        if let Some(ingress) = &ws.spec.ingress {
            args.push(format!(
                "--redirect-url=https://{}/oauth2/callback",
                ingress.host
            ));
        }
    }
    Container {
        name: "oauth2-proxy".into(),
        image: Some(settings.oauth2_proxy_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        env: Some(vec![
            secret_env("OAUTH2_PROXY_CLIENT_ID", "client-id"),
            secret_env("OAUTH2_PROXY_CLIENT_SECRET", "client-secret"),
            secret_env("OAUTH2_PROXY_COOKIE_SECRET", "cookie-secret"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("oauth2".into()),
            container_port: names::OAUTH2_PORT,
            ..Default::default()
        }]),
        liveness_probe: Some(http_probe("/ping", names::OAUTH2_PORT, 20)),
        readiness_probe: Some(http_probe("/ready", names::OAUTH2_PORT, 5)),
        resources: Some(resources(("20m", "32Mi"), ("200m", "128Mi"))),
        security_context: Some(hardened()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    #[test]
    fn the_owner_is_always_let_in_and_nobody_else_by_default() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice", "githubLogin": "alice-gh"},
                   "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh"}}}),
        );
        assert_eq!(allowed_users(&ws), vec!["alice-gh".to_string()]);
        let ws = workspace(
            "bob",
            json!({"owner": {"name": "bob"},
                   "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh"}}}),
        );
        assert_eq!(allowed_users(&ws), vec!["bob".to_string()]);
    }
}
