//! The GitHub token broker the operator serves (`POST /github/token` on
//! the broker port): a workspace shows its projected ServiceAccount token
//! of audience `kube-coder-broker`, the API server says whose it is
//! (`workspace_identity`), and
//! the broker answers with an installation token of the operator's GitHub
//! App limited to the repositories and permissions of that Workspace's
//! `spec.github`. The App's private key is read from the operator's
//! namespace for each token minted and never leaves this process. Tokens
//! are reused until five minutes before they expire; a stopped, deleted or
//! unlisted workspace gets none, whatever is cached.

pub mod app_jwt;
pub mod github_api;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

use crate::crd::Workspace;
use crate::names;
use crate::settings::Settings;
use crate::workspace_identity::{self, Identities, Refused};
use github_api::{GithubApi, InstallationToken};

/// The key of the App's private key in its Secret.
pub const APP_KEY: &str = "private-key.pem";

/// A token is handed out again until this long before it expires.
const REUSE_MARGIN: time::Duration = time::Duration::minutes(5);

/// Permissions when the Workspace names none: push and pull code.
fn default_permissions() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("contents".into(), "write".into()),
        ("metadata".into(), "read".into()),
    ])
}

pub struct Broker {
    client: kube::Client,
    settings: Settings,
    api: Result<GithubApi, String>,
    /// Shared with the builds endpoint: one refused-token limit per address.
    identities: Arc<Identities>,
    /// Per workspace: what the token was minted for, and the token.
    tokens: Mutex<HashMap<String, (String, InstallationToken)>>,
    /// Installation IDs by repository owner.
    installations: Mutex<HashMap<String, u64>>,
}

/// A refusal: its status and a message naming the problem.
struct Refusal(StatusCode, String);

impl From<Refused> for Refusal {
    fn from(r: Refused) -> Self {
        Refusal(r.0, r.1)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl Broker {
    pub fn new(client: kube::Client, settings: Settings, identities: Arc<Identities>) -> Arc<Self> {
        let api = GithubApi::new(
            &settings.github.api_url,
            settings.github.ca_bundle.as_deref(),
        );
        Arc::new(Self {
            client,
            settings,
            api,
            identities,
            tokens: Mutex::new(HashMap::new()),
            installations: Mutex::new(HashMap::new()),
        })
    }

    /// Serve on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        crate::serve::until(self.router(), listener, shutdown).await
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/github/token", post(token))
            .with_state(self)
    }

    /// The Workspace, if it may have a token now.
    async fn eligible(&self, name: &str) -> Result<Workspace, Refusal> {
        let refused = |why: String| Refusal(StatusCode::FORBIDDEN, why);
        let ws = Api::<Workspace>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| {
                Refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot read Workspace {name}: {e}"),
                )
            })?
            .ok_or_else(|| refused(format!("Workspace {name} does not exist")))?;
        if ws.metadata.deletion_timestamp.is_some() {
            return Err(refused(format!("Workspace {name} is being deleted")));
        }
        if !ws.spec.running {
            return Err(refused(format!("Workspace {name} is stopped")));
        }
        if ws
            .spec
            .github
            .as_ref()
            .is_none_or(|g| g.repositories.is_empty())
        {
            return Err(refused(format!(
                "Workspace {name} lists no spec.github.repositories: it may reach no repository"
            )));
        }
        Ok(ws)
    }

    async fn app_key(&self) -> Result<Vec<u8>, Refusal> {
        let unavailable = |why: String| Refusal(StatusCode::SERVICE_UNAVAILABLE, why);
        let ns = &self.settings.operator_namespace;
        let name = &self.settings.github.app_key_secret;
        let secret = Api::<Secret>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| unavailable(format!("cannot read Secret {ns}/{name}: {e}")))?
            .ok_or_else(|| {
                unavailable(format!(
                    "the GitHub App's key is missing: create Secret {ns}/{name} with {APP_KEY}"
                ))
            })?;
        secret
            .data
            .and_then(|mut d| d.remove(APP_KEY))
            .map(|b| b.0)
            .ok_or_else(|| unavailable(format!("Secret {ns}/{name} has no {APP_KEY}")))
    }

    async fn mint(
        &self,
        repositories: &[String],
        permissions: &BTreeMap<String, String>,
    ) -> Result<InstallationToken, Refusal> {
        let unavailable = |why: String| Refusal(StatusCode::SERVICE_UNAVAILABLE, why);
        let bad_gateway = |why: String| Refusal(StatusCode::BAD_GATEWAY, why);
        let app_id = self.settings.github.app_id.as_deref().ok_or_else(|| {
            unavailable(
                "the broker has no GitHub App: start the operator with --github-app-id".into(),
            )
        })?;
        let api = self.api.as_ref().map_err(|e| unavailable(e.clone()))?;
        let key = self.app_key().await?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let jwt = app_jwt::sign(app_id, &key, now).map_err(unavailable)?;
        // The CRD holds every repository to one owner (and `eligible` to
        // at least one).
        let (owner, first) = repositories
            .first()
            .and_then(|r| r.split_once('/'))
            .ok_or_else(|| unavailable("spec.github.repositories is empty".into()))?;
        let known = self
            .installations
            .lock()
            .ok()
            .and_then(|m| m.get(owner).copied());
        let id = match known {
            Some(id) => id,
            None => {
                let id = api
                    .installation(&jwt, owner, first)
                    .await
                    .map_err(bad_gateway)?;
                if let Ok(mut m) = self.installations.lock() {
                    m.insert(owner.to_string(), id);
                }
                id
            }
        };
        let names: Vec<String> = repositories
            .iter()
            .map(|r| r.split_once('/').map(|(_, n)| n).unwrap_or(r).to_string())
            .collect();
        api.installation_token(&jwt, id, &names, permissions)
            .await
            .map_err(bad_gateway)
    }
}

fn still_fresh(token: &InstallationToken) -> bool {
    time::OffsetDateTime::parse(
        &token.expires_at,
        &time::format_description::well_known::Rfc3339,
    )
    .is_ok_and(|expires| expires - time::OffsetDateTime::now_utc() > REUSE_MARGIN)
}

async fn token(
    State(broker): State<Arc<Broker>>,
    peer: crate::serve::Peer,
    headers: HeaderMap,
) -> Response {
    match answer(&broker, crate::serve::peer(peer), &headers).await {
        Ok(body) => Json(body).into_response(),
        Err(refusal) => {
            tracing::info!(status = %refusal.0, reason = %refusal.1, "broker refused a token");
            refusal.into_response()
        }
    }
}

async fn answer(
    broker: &Broker,
    peer: Option<std::net::IpAddr>,
    headers: &HeaderMap,
) -> Result<serde_json::Value, Refusal> {
    let bearer = workspace_identity::bearer(headers, "broker")?;
    let name = broker
        .identities
        .identify(&broker.client, &bearer, names::BROKER_AUDIENCE, peer)
        .await?;
    let ws = broker.eligible(&name).await?;
    let github = ws.spec.github.unwrap_or_default();
    let permissions = github.permissions.unwrap_or_else(default_permissions);
    let wanted = format!("{:?} {:?}", github.repositories, permissions);
    let cached = broker.tokens.lock().ok().and_then(|m| {
        m.get(&name)
            .filter(|(what, t)| *what == wanted && still_fresh(t))
            .map(|(_, t)| t.clone())
    });
    let token = match cached {
        Some(t) => t,
        None => {
            let t = broker.mint(&github.repositories, &permissions).await?;
            tracing::info!(workspace = %name, repositories = ?github.repositories, expires_at = %t.expires_at, "broker minted a GitHub token");
            if let Ok(mut m) = broker.tokens.lock() {
                m.insert(name.clone(), (wanted, t.clone()));
            }
            t
        }
    };
    Ok(json!({
        "token": token.token,
        "expires_at": token.expires_at,
        "repositories": github.repositories,
        "permissions": permissions,
    }))
}
