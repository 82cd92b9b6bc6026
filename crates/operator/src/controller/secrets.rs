//! The workspace's Secrets: credentials generated once and kept, and the
//! Secrets copied from the operator's namespace (oauth2 client, image pull,
//! the model keys its providers need, for the egress gateway's pod only),
//! read from their watch cache (`source_secrets.rs`).
//!
//! A cold or lagging cache must never lead to a second, different token,
//! so a credentials Secret the cache lacks is created with POST, which
//! fails if one exists (another reconcile won, or the cache lags): then
//! the stored one is read and kept. A new workspace costs one request,
//! not a GET that finds nothing and then the create.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

use super::caches::Caches;
use super::source_secrets::SourceSecrets;
use super::Error;
use crate::crd::{AuthType, Workspace};
use crate::manifests::credentials::{self, Credentials};
use crate::manifests::egress_gateway;
use crate::manifests::{Kind, Manifest};
use crate::names;
use crate::settings::Settings;

async fn live_secret(
    client: &kube::Client,
    caches: &Caches,
    name: &str,
    ns: &str,
) -> Result<Option<Secret>, Error> {
    if let Some(s) = caches.get_as::<Secret>(Kind::Secret, name, Some(ns)) {
        return Ok(Some(s));
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.map_err(|e| Error::Read {
        what: format!("Secret {ns}/{name}"),
        message: super::describe(e),
    })
}

/// The credentials of `ws`, creating their Secret on first sight.
/// Returns the Secret manifest to keep applied, none when this call has
/// just created it as it is.
pub async fn credentials(
    client: &kube::Client,
    caches: &Caches,
    ws: &Workspace,
) -> Result<(Credentials, Option<Manifest>), Error> {
    let ns = names::namespace(names::workspace_name(ws));
    let user = &ws.spec.owner.name;
    let existing = caches.get_as::<Secret>(Kind::Secret, names::CREDENTIALS_SECRET, Some(&ns));
    // Generating hashes a password: CPU work, kept off the async threads.
    let (creds, _) = {
        let (user, existing) = (user.clone(), existing.clone());
        tokio::task::spawn_blocking(move || Credentials::keep_or_generate(&user, existing.as_ref()))
            .await
            .map_err(|e| Error::BadSecret(format!("could not generate credentials: {e}")))?
    };
    if let Some(existing) = &existing {
        let m = kept_over(ws, &creds, existing)?;
        return Ok((creds, Some(m)));
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let created = api
        .create(
            &PostParams {
                field_manager: Some(names::FIELD_MANAGER.into()),
                ..Default::default()
            },
            &credentials::credentials_secret(ws, &creds),
        )
        .await;
    match created {
        Ok(_) => Ok((creds, None)),
        // Another reconcile created it first, or the cache lags: keep what
        // is stored.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let stored = api
                .get(names::CREDENTIALS_SECRET)
                .await
                .map_err(|e| Error::Read {
                    what: format!("Secret {ns}/{}", names::CREDENTIALS_SECRET),
                    message: super::describe(e),
                })?;
            let (creds, _) = Credentials::keep_or_generate(user, Some(&stored));
            let m = kept_over(ws, &creds, &stored)?;
            Ok((creds, Some(m)))
        }
        Err(e) => Err(Error::Apply {
            kind: Kind::Secret,
            name: names::CREDENTIALS_SECRET.into(),
            namespace: Some(ns),
            message: super::describe(e),
        }),
    }
}

/// The credentials Secret to keep applied over `stored`, the Secret they
/// were read from: written only over that version, so a token rotated
/// meanwhile (`kube-coder token --rotate`) makes the apply fail with a
/// conflict and the next pass keep the new token, rather than this one put
/// the old token back.
fn kept_over(ws: &Workspace, creds: &Credentials, stored: &Secret) -> Result<Manifest, Error> {
    let mut secret = credentials::credentials_secret(ws, creds);
    secret.metadata.resource_version = stored.metadata.resource_version.clone();
    Ok(Manifest::new(Kind::Secret, &secret)?)
}

/// Secrets copied in from the operator's namespace (read from its watch
/// cache), as manifests to apply.
pub async fn copied(
    client: &kube::Client,
    caches: &Caches,
    sources: &SourceSecrets,
    ws: &Workspace,
    settings: &Settings,
) -> Result<Vec<Manifest>, Error> {
    let ns = names::namespace(names::workspace_name(ws));
    let source = |name: String| {
        sources.get(&name).ok_or_else(|| Error::MissingSecret {
            name,
            namespace: settings.operator_namespace.clone(),
        })
    };
    let mut out = Vec::new();
    if ws.spec.auth.kind == AuthType::Oauth2 {
        if let Some(o) = &ws.spec.auth.oauth2 {
            let client_secret = source(o.client_secret_ref.clone())?;
            let provider_ca = match &o.provider_ca_secret_ref {
                Some(name) => Some(source(name.clone())?),
                None => None,
            };
            let existing = live_secret(client, caches, names::OAUTH2_SECRET, &ns).await?;
            let secret = credentials::oauth2_secret(
                ws,
                &client_secret,
                provider_ca.as_deref(),
                existing.as_ref(),
            )
            .map_err(Error::BadSecret)?;
            out.push(Manifest::new(Kind::Secret, &secret)?);
        }
    }
    if egress_gateway::has_models(ws) {
        // Absent keys are not an error here: the gateway answers each model
        // request with which key is missing, and the copy follows as soon
        // as the Secret appears (it triggers a reconcile).
        let found = sources.get(&settings.model_keys_secret);
        if let Some(src) = found {
            let wanted: Vec<&str> = egress_gateway::providers(ws, settings)
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            out.push(Manifest::new(
                Kind::Secret,
                &credentials::model_keys(ws, &src, &wanted),
            )?);
        }
    }
    if let Some(pull) = &ws.spec.image.pull_secret {
        let src = source(pull.clone())?;
        out.push(Manifest::new(
            Kind::Secret,
            &credentials::pull_secret(ws, &src),
        )?);
    }
    Ok(out)
}
