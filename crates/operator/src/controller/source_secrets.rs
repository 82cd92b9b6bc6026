//! The Secrets workspaces copy from the operator's namespace (oauth2
//! clients and their CAs, image pull secrets, the model keys), kept in a
//! watch cache of that namespace: a reconcile reads them there instead of
//! asking the API server each time (a workspace with an idle check was
//! reconciled every minute, with a GET per copied Secret each time), and a
//! Secret created, changed or deleted reconciles every Workspace that
//! names it, so a rotated client secret or key is copied at once.
//!
//! Helm's release Secrets live in the same namespace and are left out by
//! type (they hold the whole chart).

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};

use crate::crd::{AuthType, Workspace};
use crate::manifests::egress_gateway;
use crate::settings::Settings;

pub struct SourceSecrets {
    store: Store<Secret>,
    namespace: String,
    /// Drives the watch; stopped when the cache is dropped.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SourceSecrets {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The names of the operator-namespace Secrets `ws` copies.
pub fn used_by(ws: &Workspace, settings: &Settings) -> Vec<String> {
    let mut names = Vec::new();
    if ws.spec.auth.kind == AuthType::Oauth2 {
        if let Some(o) = &ws.spec.auth.oauth2 {
            names.push(o.client_secret_ref.clone());
            names.extend(o.provider_ca_secret_ref.clone());
        }
    }
    names.extend(ws.spec.image.pull_secret.clone());
    if egress_gateway::has_models(ws) {
        names.push(settings.model_keys_secret.clone());
    }
    names
}

impl SourceSecrets {
    /// Start the watch, in a task of its own (the cache must fill before
    /// the controller runs). Returns the cache and the reconcile requests
    /// its changes make.
    pub fn start(
        client: &kube::Client,
        settings: &Settings,
        workspaces: Store<Workspace>,
    ) -> (Self, BoxStream<'static, ObjectRef<Workspace>>) {
        let namespace = settings.operator_namespace.clone();
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let config = watcher::Config::default().fields("type!=helm.sh/release.v1");
        let (store, writer) = reflector::store();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let changes = watcher(api, config)
            .default_backoff()
            .reflect(writer)
            .touched_objects();
        let task = tokio::spawn(async move {
            futures_util::pin_mut!(changes);
            while let Some(event) = changes.next().await {
                if let Ok(secret) = event {
                    let _ = tx.send(secret.metadata.name.unwrap_or_default());
                }
            }
        });
        let settings = settings.clone();
        let names = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|name| (name, rx))
        });
        let requests = names
            .flat_map(move |name| {
                let refs: Vec<ObjectRef<Workspace>> = workspaces
                    .state()
                    .iter()
                    .filter(|ws| used_by(ws, &settings).contains(&name))
                    .map(|ws| ObjectRef::from_obj(ws.as_ref()))
                    .collect();
                futures_util::stream::iter(refs)
            })
            .boxed();
        (
            Self {
                store,
                namespace,
                task,
            },
            requests,
        )
    }

    /// Wait until the watch has listed once.
    pub async fn ready(&self) {
        let _ = self.store.wait_until_ready().await;
    }

    /// The Secret `name` of the operator's namespace, if it exists.
    pub fn get(&self, name: &str) -> Option<std::sync::Arc<Secret>> {
        self.store
            .get(&ObjectRef::new(name).within(&self.namespace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    #[test]
    fn a_workspace_uses_the_secrets_it_names_and_the_model_keys_with_models() {
        let settings = Settings::default();
        let plain = workspace("alice", json!({"owner": {"name": "alice"}}));
        assert!(used_by(&plain, &settings).is_empty());
        let all = workspace(
            "bob",
            json!({"owner": {"name": "bob", "email": "bob@example.com"},
                   "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh",
                            "providerCASecretRef": "ca", "provider": "github"}},
                   "image": {"pullSecret": "pull"},
                   "models": {}}),
        );
        assert_eq!(
            used_by(&all, &settings),
            vec!["gh", "ca", "pull", settings.model_keys_secret.as_str()]
        );
    }
}
