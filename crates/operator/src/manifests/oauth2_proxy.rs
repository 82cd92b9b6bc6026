//! Where the oauth2-proxy sidecar is built (`auth.type: oauth2`).
//!
//! It runs in the workspace pod and forwards to the dashboard on
//! 127.0.0.1, so the dashboard port is never reachable from outside the
//! pod without it, and identity headers can only come from loopback (the
//! server's default trusted-proxy range): no pod-CIDR guess to get wrong.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, KeyToPath, SecretKeySelector,
    SecretVolumeSource, Volume, VolumeMount,
};

use super::container::{hardened, http_probe, resources, startup_probe};
use crate::crd::{AuthType, OAuth2, OAuth2Provider, Workspace};
use crate::names;
use crate::settings::Settings;

/// Who the workspace server lets in behind the proxy: the listed users,
/// plus the owner's GitHub login and e-mail, always named explicitly.
/// Never the owner's bare `name`: whoever holds that name at the provider
/// would get the workspace. Empty only when GitHub organisations decide
/// (the proxy then checks membership); the CRD refuses an oauth2
/// Workspace with neither.
pub fn allowed_users(ws: &Workspace) -> Vec<String> {
    let Some(o) = &ws.spec.auth.oauth2 else {
        return vec![];
    };
    let mut users = o.allowed_users.clone();
    let owner = &ws.spec.owner;
    users.extend(owner.github_login.iter().cloned());
    users.extend(owner.email.iter().cloned());
    users.sort();
    users.dedup();
    users
}

/// The e-mail domains the proxy accepts: as the spec says, else those of
/// the e-mails let in. A wildcard only where the spec asks for one, or for
/// GitHub when logins or organisations (checked by the proxy itself with
/// `--github-user`/`--github-org`) are what decides and no e-mail is known.
fn email_domains(ws: &Workspace, o: &OAuth2) -> Vec<String> {
    if !o.email_domains.is_empty() {
        return o.email_domains.clone();
    }
    let mut domains: Vec<String> = allowed_users(ws)
        .iter()
        .filter_map(|u| u.split_once('@').map(|(_, d)| d.to_ascii_lowercase()))
        .collect();
    domains.sort();
    domains.dedup();
    if domains.is_empty() && o.provider == OAuth2Provider::Github {
        domains.push("*".into());
    }
    domains
}

/// GitHub logins the proxy itself checks (entries without an `@`).
fn github_users(ws: &Workspace) -> Vec<String> {
    allowed_users(ws)
        .into_iter()
        .filter(|u| !u.contains('@'))
        .collect()
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
    ];
    if let Some(o) = &ws.spec.auth.oauth2 {
        for d in email_domains(ws, o) {
            args.push(format!("--email-domain={d}"));
        }
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
            let users = github_users(ws);
            if !users.is_empty() {
                args.push(format!("--github-user={}", users.join(",")));
            }
        }
        if let Some(ingress) = &ws.spec.ingress {
            args.push(format!(
                "--redirect-url=https://{}/oauth2/callback",
                ingress.host
            ));
        }
        if o.provider_ca_secret_ref.is_some() {
            args.push(format!(
                "--provider-ca-file={}/{}",
                names::OAUTH2_PROVIDER_CA_DIR,
                names::OAUTH2_PROVIDER_CA_KEY
            ));
        }
    }
    let provider_ca = ws
        .spec
        .auth
        .oauth2
        .as_ref()
        .is_some_and(|o| o.provider_ca_secret_ref.is_some());
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
        startup_probe: Some(startup_probe("/ready", names::OAUTH2_PORT)),
        liveness_probe: Some(http_probe("/ping", names::OAUTH2_PORT, 20)),
        readiness_probe: Some(http_probe("/ready", names::OAUTH2_PORT, 5)),
        resources: Some(resources(("20m", "32Mi"), ("200m", "128Mi"))),
        security_context: Some(hardened()),
        volume_mounts: provider_ca.then(|| {
            vec![VolumeMount {
                name: PROVIDER_CA_VOLUME.into(),
                mount_path: names::OAUTH2_PROVIDER_CA_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }]
        }),
        ..Default::default()
    }
}

/// The volume of the sidecar's provider CA (the oauth2 Secret's CA key).
pub const PROVIDER_CA_VOLUME: &str = "oauth2-provider-ca";

/// That volume, when the Workspace names a provider CA.
pub fn provider_ca_volume(ws: &Workspace) -> Option<Volume> {
    let o = ws.spec.auth.oauth2.as_ref()?;
    if ws.spec.auth.kind != AuthType::Oauth2 || o.provider_ca_secret_ref.is_none() {
        return None;
    }
    Some(Volume {
        name: PROVIDER_CA_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names::OAUTH2_SECRET.into()),
            default_mode: Some(0o444),
            items: Some(vec![KeyToPath {
                key: names::OAUTH2_PROVIDER_CA_KEY.into(),
                path: names::OAUTH2_PROVIDER_CA_KEY.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    #[test]
    fn a_private_providers_ca_is_mounted_and_trusted() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice", "email": "a@example.com"},
                   "auth": {"type": "oauth2", "oauth2": {"provider": "oidc",
                     "issuerUrl": "https://sso.internal", "clientSecretRef": "sso",
                     "providerCASecretRef": "sso-ca"}}}),
        );
        let c = sidecar(&ws, &Settings::default());
        let file = format!(
            "{}/{}",
            names::OAUTH2_PROVIDER_CA_DIR,
            names::OAUTH2_PROVIDER_CA_KEY
        );
        assert!(c
            .args
            .unwrap()
            .contains(&format!("--provider-ca-file={file}")));
        let mount = &c.volume_mounts.unwrap()[0];
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (names::OAUTH2_PROVIDER_CA_DIR, Some(true))
        );
        let volume = provider_ca_volume(&ws).unwrap();
        assert_eq!(volume.name, mount.name);
        assert_eq!(
            volume.secret.unwrap().items.unwrap()[0].key,
            names::OAUTH2_PROVIDER_CA_KEY
        );
        // Without one: no mount, no flag, no volume.
        let ws = workspace(
            "bob",
            json!({"owner": {"name": "bob", "email": "b@example.com"},
                   "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh"}}}),
        );
        let c = sidecar(&ws, &Settings::default());
        assert!(c.volume_mounts.is_none());
        assert!(!c
            .args
            .unwrap()
            .iter()
            .any(|a| a.starts_with("--provider-ca-file")));
        assert!(provider_ca_volume(&ws).is_none());
    }

    #[test]
    fn the_owner_is_let_in_by_an_explicit_identity_only() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice", "githubLogin": "alice-gh"},
                   "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh"}}}),
        );
        assert_eq!(allowed_users(&ws), vec!["alice-gh".to_string()]);
        let args = sidecar(&ws, &Settings::default()).args.unwrap();
        assert!(
            args.contains(&"--github-user=alice-gh".to_string()),
            "{args:?}"
        );
        // No identity at the provider: nobody, never the bare owner name.
        let ws = workspace(
            "bob",
            json!({"owner": {"name": "bob"},
                   "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh"}}}),
        );
        assert!(allowed_users(&ws).is_empty());
        assert!(crate::manifests::validate(&ws).is_err());
    }

    #[test]
    fn no_wildcard_email_domain_unless_the_spec_says_so() {
        let domains = |spec| {
            let ws = workspace("w", spec);
            sidecar(&ws, &Settings::default())
                .args
                .unwrap()
                .into_iter()
                .filter_map(|a| a.strip_prefix("--email-domain=").map(str::to_string))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            domains(json!({"owner": {"name": "a", "email": "a@Example.com"},
                "auth": {"type": "oauth2", "oauth2": {"provider": "google", "clientSecretRef": "s",
                "allowedUsers": ["b@corp.test"]}}})),
            vec!["corp.test", "example.com"]
        );
        assert_eq!(
            domains(json!({"owner": {"name": "a", "email": "a@example.com"},
                "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "s", "emailDomains": ["*"]}}})),
            vec!["*"]
        );
        // GitHub by login: the proxy checks the login, so any e-mail.
        assert_eq!(
            domains(json!({"owner": {"name": "a", "githubLogin": "a-gh"},
                "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "s"}}})),
            vec!["*"]
        );
        // OIDC with no e-mail known: no domain at all, so the proxy lets nobody in.
        assert!(domains(json!({"owner": {"name": "a"},
            "auth": {"type": "oauth2", "oauth2": {"provider": "oidc", "issuerUrl": "https://id.test",
            "clientSecretRef": "s", "allowedUsers": ["a-login"]}}})).is_empty());
    }
}
