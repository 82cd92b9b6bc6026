//! Where the Namespace and the ServiceAccount are built.
//!
//! The namespace enforces Pod Security `restricted`; the ServiceAccount
//! has no token mounted and no RoleBinding: the workspace needs no
//! Kubernetes API access for its job, so it gets none.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};

use super::meta;
use crate::crd::Workspace;
use crate::names;

pub fn namespace(ws: &Workspace) -> Namespace {
    let name = names::namespace(names::workspace_name(ws));
    // Kept with the home volume when retainOnDelete is set: no owner
    // reference then, so garbage collection leaves it (and the PVC) alone.
    let owned = !ws.spec.storage.retain_on_delete;
    let mut m = meta(ws, &name, false, owned);
    // The in-pod builder of build.mode buildkit holds CAP_SYS_ADMIN in
    // the pod's own user namespace, which only `privileged` admits; that
    // mode alone gets it (acknowledged), still warned and audited against
    // `baseline`. The workspace's identity cannot create pods.
    let buildkit = super::in_pod_builder::enabled(ws);
    let labels = m.labels.get_or_insert_with(BTreeMap::new);
    for mode in ["enforce", "audit", "warn"] {
        let level = match (buildkit, mode) {
            (false, _) => "restricted",
            (true, "enforce") => "privileged",
            (true, _) => "baseline",
        };
        labels.insert(format!("pod-security.kubernetes.io/{mode}"), level.into());
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".into(),
        );
    }
    if buildkit {
        m.annotations = Some(BTreeMap::from([(
            "kube-coder.dev/pod-security".into(),
            "privileged: build.mode buildkit was acknowledged; its in-pod builder holds CAP_SYS_ADMIN in the pod's own user namespace (hostUsers: false), never privileged".into(),
        )]));
    }
    Namespace {
        metadata: m,
        ..Default::default()
    }
}

pub fn service_account(ws: &Workspace) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(ws, names::SERVICE_ACCOUNT, true, true),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    #[test]
    fn the_namespace_enforces_restricted_and_survives_deletion_when_retained() {
        let ws = workspace("alice", json!({"owner": {"name": "alice"}}));
        let ns = namespace(&ws);
        let labels = ns.metadata.labels.unwrap();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(ns.metadata.name.as_deref(), Some("ws-alice"));
        assert!(ns.metadata.owner_references.is_none());

        let ws = workspace(
            "bob",
            json!({"owner": {"name": "bob"}, "storage": {"retainOnDelete": false}}),
        );
        assert_eq!(namespace(&ws).metadata.owner_references.unwrap().len(), 1);
    }

    #[test]
    fn the_service_account_mounts_no_token() {
        let ws = workspace("alice", json!({"owner": {"name": "alice"}}));
        assert_eq!(
            service_account(&ws).automount_service_account_token,
            Some(false)
        );
    }
}
