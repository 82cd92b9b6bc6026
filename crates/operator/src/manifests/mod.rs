//! Builders: one Workspace (plus the operator's settings) in, the plain
//! Kubernetes objects it becomes out. No I/O here, so `kube-coder render`
//! and the reconciler print and apply exactly the same objects.
//!
//! One file per concern: where the Namespace is built, where the
//! Deployment is built, and so on. Secrets are built separately
//! (`credentials.rs`) because their values come from the cluster.

pub mod build_client;
pub mod build_pod;
pub mod container;
pub mod credentials;
pub mod egress_gateway;
pub mod github;
pub mod in_pod_builder;
pub mod limits;
pub mod namespace;
pub mod network_policy;
pub mod oauth2_proxy;
pub mod quantity;
pub mod routing;
pub mod ssh;
pub mod storage;
pub mod workload;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::ApiResource;
use kube::Resource;
use serde::Serialize;

use crate::crd::{AuthType, BuildMode, Workspace};
use crate::names;
use crate::settings::Settings;

/// The kinds of object a workspace is made of, in the order they are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    ServiceAccount,
    Secret,
    PersistentVolumeClaim,
    ResourceQuota,
    LimitRange,
    ConfigMap,
    Role,
    RoleBinding,
    NetworkPolicy,
    Deployment,
    Service,
    Ingress,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::Secret,
        Kind::PersistentVolumeClaim,
        Kind::ResourceQuota,
        Kind::LimitRange,
        Kind::ConfigMap,
        Kind::Role,
        Kind::RoleBinding,
        Kind::NetworkPolicy,
        Kind::Deployment,
        Kind::Service,
        Kind::Ingress,
    ];

    pub fn api_resource(self) -> ApiResource {
        use k8s_openapi::api::{
            apps::v1 as apps, core::v1 as core, networking::v1 as net, rbac::v1 as rbac,
        };
        match self {
            Kind::Namespace => ApiResource::erase::<core::Namespace>(&()),
            Kind::ServiceAccount => ApiResource::erase::<core::ServiceAccount>(&()),
            Kind::Secret => ApiResource::erase::<core::Secret>(&()),
            Kind::PersistentVolumeClaim => ApiResource::erase::<core::PersistentVolumeClaim>(&()),
            Kind::ResourceQuota => ApiResource::erase::<core::ResourceQuota>(&()),
            Kind::LimitRange => ApiResource::erase::<core::LimitRange>(&()),
            Kind::ConfigMap => ApiResource::erase::<core::ConfigMap>(&()),
            Kind::Role => ApiResource::erase::<rbac::Role>(&()),
            Kind::RoleBinding => ApiResource::erase::<rbac::RoleBinding>(&()),
            Kind::NetworkPolicy => ApiResource::erase::<net::NetworkPolicy>(&()),
            Kind::Deployment => ApiResource::erase::<apps::Deployment>(&()),
            Kind::Service => ApiResource::erase::<core::Service>(&()),
            Kind::Ingress => ApiResource::erase::<net::Ingress>(&()),
        }
    }

    pub fn namespaced(self) -> bool {
        self != Kind::Namespace
    }
}

/// One object ready to apply: its kind, name, namespace and full body.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub kind: Kind,
    pub name: String,
    pub namespace: Option<String>,
    pub body: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("workspace {0:?}: {1}")]
    Invalid(String, String),
    #[error("could not serialise a {0:?}: {1}")]
    Serialise(Kind, serde_json::Error),
}

impl Manifest {
    pub fn new<K: Resource + Serialize>(kind: Kind, object: &K) -> Result<Self, BuildError> {
        let meta = object.meta();
        Ok(Self {
            kind,
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone(),
            body: serde_json::to_value(object).map_err(|e| BuildError::Serialise(kind, e))?,
        })
    }
}

/// Refuse what the CRD's CEL rules refuse, for `render` (no API server to
/// ask) and as a second line in the reconciler.
pub fn validate(ws: &Workspace) -> Result<(), BuildError> {
    let name = names::workspace_name(ws);
    let bad = |why: &str| Err(BuildError::Invalid(name.to_string(), why.to_string()));
    let valid_name = !name.is_empty()
        && name.len() <= crate::crd::MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_name {
        return bad("the name must be a DNS label of at most 40 characters: lower-case letters, digits and '-', starting with a letter");
    }
    let s = &ws.spec;
    if s.auth.kind == AuthType::None && !s.auth.read_only {
        return bad(
            "auth.type none requires auth.readOnly: true (a public dashboard must not be writable)",
        );
    }
    if s.auth.kind == AuthType::Oauth2 && s.auth.oauth2.is_none() {
        return bad(
            "auth.type oauth2 requires auth.oauth2 (provider, client id and client secret)",
        );
    }
    if s.auth.kind == AuthType::Oauth2
        && oauth2_proxy::allowed_users(ws).is_empty()
        && s.auth
            .oauth2
            .as_ref()
            .is_some_and(|o| o.allowed_orgs.is_empty())
    {
        return bad("auth.type oauth2 needs the owner's identity at the provider: owner.githubLogin or owner.email (or auth.oauth2.allowedUsers or allowedOrgs); owner.name alone would let in whoever holds that name at the provider");
    }
    if s.build.mode == BuildMode::Buildkit && !s.build.acknowledge_buildkit_risk {
        return bad("build.mode buildkit runs a builder with more privilege; set build.acknowledgeBuildkitRisk: true to accept that");
    }
    Ok(())
}

/// When an object is applied: the stages in order, the objects of one
/// stage together. The namespace holds everything else; the quota comes
/// after the objects of ours it counts (a create the API server timed out
/// stays charged until the controller-manager recounts, minutes later, and
/// must not leave our own retry over quota); the pods come last, once the
/// policies, Secrets, volume and quota they must meet exist.
pub fn stage(kind: Kind) -> u8 {
    match kind {
        Kind::Namespace => 0,
        Kind::ServiceAccount
        | Kind::Secret
        | Kind::PersistentVolumeClaim
        | Kind::ConfigMap
        | Kind::Role
        | Kind::NetworkPolicy
        | Kind::Service => 1,
        // A binding after its Role: RBAC checks what it grants.
        Kind::RoleBinding | Kind::ResourceQuota | Kind::LimitRange => 2,
        Kind::Deployment | Kind::Ingress => LAST_STAGE,
    }
}

pub const LAST_STAGE: u8 = 3;

/// Everything but the Secrets, in apply order: by `stage` (render prints
/// them so, for `kubectl apply`).
pub fn build(ws: &Workspace, settings: &Settings) -> Result<Vec<Manifest>, BuildError> {
    validate(ws)?;
    let mut out = vec![
        Manifest::new(Kind::Namespace, &namespace::namespace(ws))?,
        Manifest::new(Kind::ServiceAccount, &namespace::service_account(ws))?,
        Manifest::new(Kind::PersistentVolumeClaim, &storage::home_volume(ws))?,
    ];
    let gateway = egress_gateway::enabled(ws);
    if gateway {
        out.push(Manifest::new(
            Kind::ConfigMap,
            &egress_gateway::config_map(ws, settings)?,
        )?);
    }
    if ssh::enabled(ws) {
        out.push(Manifest::new(Kind::ConfigMap, &ssh::config_map(ws))?);
    }
    if in_pod_builder::enabled(ws) {
        out.push(Manifest::new(
            Kind::ConfigMap,
            &in_pod_builder::config_map(ws, settings),
        )?);
    }
    if egress_gateway::has_models(ws) {
        // The gateway's identity: it may change its usage ConfigMap, and
        // nothing else; the workspace's has no token at all.
        out.push(Manifest::new(
            Kind::ServiceAccount,
            &egress_gateway::service_account(ws),
        )?);
        out.push(Manifest::new(
            Kind::ConfigMap,
            &egress_gateway::usage_config_map(ws),
        )?);
        out.push(Manifest::new(Kind::Role, &egress_gateway::role(ws))?);
    }
    for policy in network_policy::policies(ws, settings)? {
        out.push(Manifest::new(Kind::NetworkPolicy, &policy)?);
    }
    out.push(Manifest::new(Kind::Service, &routing::service(ws))?);
    if ws.spec.ingress.is_some() {
        out.push(Manifest::new(
            Kind::Service,
            &routing::waker_service(ws, settings),
        )?);
    }
    if gateway {
        out.push(Manifest::new(Kind::Service, &egress_gateway::service(ws))?);
    }
    if egress_gateway::has_models(ws) {
        out.push(Manifest::new(
            Kind::RoleBinding,
            &egress_gateway::role_binding(ws),
        )?);
    }
    out.push(Manifest::new(
        Kind::ResourceQuota,
        &limits::resource_quota(ws)?,
    )?);
    out.push(Manifest::new(Kind::LimitRange, &limits::limit_range(ws))?);
    out.push(Manifest::new(
        Kind::Deployment,
        &workload::deployment(ws, settings),
    )?);
    if gateway {
        out.push(Manifest::new(
            Kind::Deployment,
            &egress_gateway::deployment(ws, settings),
        )?);
    }
    for ingress in routing::ingresses(ws, settings)? {
        out.push(Manifest::new(Kind::Ingress, &ingress)?);
    }
    Ok(out)
}

/// Metadata of an object of this workspace: its labels, and an owner
/// reference to the Workspace when `owned` (and the Workspace has a uid,
/// which `render` inputs do not), so that deleting the Workspace lets the
/// garbage collector remove the object.
pub fn meta(ws: &Workspace, name: &str, namespaced: bool, owned: bool) -> ObjectMeta {
    let ws_name = names::workspace_name(ws);
    let owner_references = match (&ws.metadata.uid, owned) {
        (Some(uid), true) => Some(vec![OwnerReference {
            api_version: "kube-coder.dev/v1alpha1".into(),
            kind: "Workspace".into(),
            name: ws_name.to_string(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: None,
        }]),
        _ => None,
    };
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespaced.then(|| names::namespace(ws_name)),
        labels: Some(names::labels(ws_name)),
        owner_references,
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::crd::{Workspace, WorkspaceSpec};

    /// A Workspace as the API server would hand it over (defaults filled).
    pub fn workspace(name: &str, spec: serde_json::Value) -> Workspace {
        let spec: WorkspaceSpec = serde_json::from_value(spec).expect("test spec");
        let mut ws = Workspace::new(name, spec);
        ws.metadata.uid = Some("0f0e0d0c-0000-4000-8000-000000000001".into());
        ws
    }

    /// A container's plain environment variables, by name.
    pub fn env_of(
        c: &k8s_openapi::api::core::v1::Container,
    ) -> std::collections::BTreeMap<String, String> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The quota is applied after every object it counts that the operator
    /// creates (a create that times out stays charged for minutes, and must
    /// not leave the operator's own retry over quota), and before the pods;
    /// the policies before the pods; `build` lists them in stage order.
    #[test]
    fn the_stages_put_the_quota_between_what_it_counts_and_the_pods() {
        let ws = test_support::workspace(
            "alice",
            json!({"owner": {"name": "alice"},
                   "network": {"egress": {"allowDomains": ["*.github.com"]}}}),
        );
        let built = build(&ws, &Settings::default()).unwrap();
        let stages: Vec<u8> = built.iter().map(|m| stage(m.kind)).collect();
        assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{built:?}");
        let of = |kind: Kind| -> Vec<u8> {
            built
                .iter()
                .filter(|m| m.kind == kind)
                .map(|m| stage(m.kind))
                .collect()
        };
        let quota = of(Kind::ResourceQuota);
        assert_eq!(quota.len(), 1);
        let counted = [of(Kind::PersistentVolumeClaim), of(Kind::Service)].concat();
        assert_eq!(
            counted.len(),
            3,
            "home volume, workspace and gateway Services"
        );
        assert!(counted.iter().all(|&s| s < quota[0]));
        let pods = of(Kind::Deployment);
        assert_eq!(pods.len(), 2);
        assert!(pods.iter().all(|&s| s > quota[0]));
        for before_pods in [
            Kind::LimitRange,
            Kind::NetworkPolicy,
            Kind::Secret,
            Kind::ServiceAccount,
        ] {
            assert!(stage(before_pods) < pods[0], "{before_pods:?}");
        }
        assert!(stage(Kind::Role) < stage(Kind::RoleBinding));
        assert!(built
            .iter()
            .skip(1)
            .all(|m| stage(m.kind) > stage(Kind::Namespace)));
    }
}
