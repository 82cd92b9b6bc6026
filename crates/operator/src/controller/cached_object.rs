//! An object as the watch caches keep it: what identifies it, and the part
//! a reconcile reads, as compact JSON.
//!
//! A reconcile compares the fields the operator set with the live object
//! (`apply`), reads a Deployment's status and the credentials Secret's
//! data, and asks whether an object exists. So the cache keeps the fields
//! the operator owns (`owned_fields`), plus a Deployment's status and a
//! Secret's data whoever wrote them (`kube-coder token --rotate` writes the
//! token the operator must keep), as one string: kept as a `serde_json::Value` tree, the same content took six
//! times the memory, and the caches were most of the operator's (heap
//! profile in docs/operator.md "Scale"). It is parsed on the rare read.
//!
//! It is a `kube::Resource` of its own so that kube's reflector keeps the
//! store (its initial-list buffering and readiness signal) for it as for
//! any kind.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::core::DynamicResourceScope;
use kube::Resource;
use serde_json::Value;

use super::owned_fields;
use crate::names;

#[derive(Clone, Debug)]
pub struct CachedObject {
    /// Name, namespace, generation and the workspace label only.
    metadata: ObjectMeta,
    /// The object cut down to what a reconcile reads.
    json: Box<str>,
}

impl CachedObject {
    /// Cut a live object down: the fields `manager` owns (all of it when it
    /// owns none, as for an object someone else made), its name, namespace
    /// and resourceVersion, and the top-level fields `whole` names as they
    /// are.
    pub fn from_live(mut live: DynamicObject, manager: &str, whole: &[&str]) -> Self {
        let owned = live
            .metadata
            .managed_fields
            .take()
            .and_then(|entries| owned_fields::owned_by(&entries, manager));
        let meta = &live.metadata;
        let workspace = live
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::WORKSPACE_LABEL));
        let metadata = ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            generation: meta.generation,
            labels: workspace
                .map(|w| BTreeMap::from([(names::WORKSPACE_LABEL.to_string(), w.clone())])),
            ..Default::default()
        };
        let full = serde_json::to_value(&live).unwrap_or(Value::Null);
        let mut kept = match &owned {
            Some(set) => owned_fields::project(&full, set),
            None => full.clone(),
        };
        if let Some(obj) = kept.as_object_mut() {
            obj.remove("apiVersion");
            obj.remove("kind");
            let identity = obj
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(identity) = identity.as_object_mut() {
                // The version, for a write that must not overwrite a
                // newer one (`secrets`).
                for field in ["name", "namespace", "resourceVersion"] {
                    if let Some(v) = full["metadata"].get(field) {
                        identity.insert(field.into(), v.clone());
                    }
                }
            }
            for field in whole {
                if let Some(v) = full.get(*field) {
                    obj.insert((*field).into(), v.clone());
                }
            }
        }
        Self {
            metadata,
            json: kept.to_string().into_boxed_str(),
        }
    }

    /// The kept object.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }

    /// The kept object as a typed one (a Secret).
    pub fn parse<K: serde::de::DeserializeOwned>(&self) -> Option<K> {
        serde_json::from_str(&self.json).ok()
    }

    /// `metadata.generation` of the live object.
    pub fn generation(&self) -> Option<i64> {
        self.metadata.generation
    }

    /// Bytes of the kept JSON (for the operator's metrics).
    pub fn size(&self) -> usize {
        self.json.len()
    }
}

impl Resource for CachedObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(managed_fields: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "workspace", "namespace": "ws-alice", "generation": 3,
                "uid": "u-1", "resourceVersion": "42",
                "labels": {"kube-coder.dev/workspace": "alice", "extra": "x"},
                "managedFields": managed_fields},
            "spec": {"replicas": 1, "revisionHistoryLimit": 10},
            "status": {"readyReplicas": 1, "observedGeneration": 3}
        }))
        .unwrap()
    }

    #[test]
    fn an_object_of_ours_keeps_our_fields_its_identity_and_a_deployments_status() {
        let fields = json!([{"manager": "kube-coder-operator", "operation": "Apply",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:kube-coder.dev/workspace": {}}},
                         "f:spec": {"f:replicas": {}}}}]);
        let cached =
            CachedObject::from_live(live(fields.clone()), "kube-coder-operator", &["status"]);
        assert_eq!(
            cached.value(),
            json!({"metadata": {"name": "workspace", "namespace": "ws-alice",
                                "resourceVersion": "42",
                                "labels": {"kube-coder.dev/workspace": "alice"}},
                   "spec": {"replicas": 1},
                   "status": {"readyReplicas": 1, "observedGeneration": 3}})
        );
        assert_eq!(cached.generation(), Some(3));
        assert_eq!(
            cached.meta().labels.as_ref().unwrap()[names::WORKSPACE_LABEL],
            "alice"
        );
        let without_status = CachedObject::from_live(live(fields), "kube-coder-operator", &[]);
        assert!(without_status.value().get("status").is_none());
    }

    #[test]
    fn an_object_we_own_nothing_of_is_kept_whole_but_for_its_managed_fields() {
        let cached = CachedObject::from_live(live(json!([])), "kube-coder-operator", &[]);
        let v = cached.value();
        assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(v["metadata"]["labels"]["extra"], "x");
        assert!(v["metadata"].get("managedFields").is_none());
    }
}
