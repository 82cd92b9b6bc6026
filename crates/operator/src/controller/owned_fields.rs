//! The part of a live object the operator owns, read from its
//! managedFields. The watch caches keep only that part (and what a
//! reconcile reads besides, such as a Deployment's status): a live object is
//! mostly fields the API server defaulted and other managers set, which
//! the operator never compares, so caching them whole made the caches most
//! of the operator's memory.
//!
//! Dropping a field the operator does not own also answers drift
//! correctly: when another manager changes one of our fields (kubectl
//! edit, a merge patch), the field becomes theirs, is missing here, and the
//! next reconcile applies ours again; an element another manager adds to a
//! list (an injected container) is theirs and no longer looks like drift.
//!
//! The field sets are FieldsV1 (the API server's own format): `f:NAME` is a
//! field of an object, `k:{..}` an element of a list identified by its key
//! fields, `v:VALUE` an element of a set, `i:N` an element by position, and
//! `.` the value itself.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::{Map, Value};

/// The union of the fields `manager` holds on the object through its
/// applies and updates (a subresource's, such as status, excluded); `None`
/// when it holds none.
pub fn owned_by(entries: &[ManagedFieldsEntry], manager: &str) -> Option<Value> {
    let mut union: Option<Value> = None;
    for entry in entries {
        let ours = entry.manager.as_deref() == Some(manager)
            && entry.subresource.as_deref().unwrap_or_default().is_empty();
        let Some(fields) = entry.fields_v1.as_ref().filter(|_| ours) else {
            continue;
        };
        match &mut union {
            None => union = Some(fields.0.clone()),
            Some(all) => merge(all, &fields.0),
        }
    }
    union
}

/// `into` ∪ `from`, both field sets.
fn merge(into: &mut Value, from: &Value) {
    let (Value::Object(into), Value::Object(from)) = (into, from) else {
        return;
    };
    for (k, v) in from {
        match into.get_mut(k) {
            Some(existing) => merge(existing, v),
            None => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `live` cut down to the fields of `set`.
pub fn project(live: &Value, set: &Value) -> Value {
    let Some(set) = set.as_object().filter(|s| s.keys().any(|k| k != ".")) else {
        // A leaf, or a value owned whole (an atomic list or map).
        return live.clone();
    };
    match live {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, sub) in set {
                if let Some(name) = key.strip_prefix("f:") {
                    if let Some(v) = fields.get(name) {
                        out.insert(name.to_string(), project(v, sub));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    set.iter()
                        .find(|(key, _)| element_matches(key, i, item))
                        .map(|(_, sub)| project(item, sub))
                })
                .collect(),
        ),
        scalar => scalar.clone(),
    }
}

/// Whether the field-set key `key` names list element `item` at `index`.
fn element_matches(key: &str, index: usize, item: &Value) -> bool {
    if let Some(fields) = key.strip_prefix("k:") {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) else {
            return false;
        };
        fields.iter().all(|(k, v)| item.get(k) == Some(v))
    } else if let Some(value) = key.strip_prefix("v:") {
        serde_json::from_str::<Value>(value).is_ok_and(|v| &v == item)
    } else if let Some(i) = key.strip_prefix("i:") {
        i.parse() == Ok(index)
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    fn entry(manager: &str, subresource: Option<&str>, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            subresource: subresource.map(Into::into),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    /// A Deployment as the API server returns it: our fields, its defaults,
    /// another manager's replica count, a container injected by someone else.
    fn deployment() -> Value {
        json!({"spec": {
            "replicas": 0,
            "revisionHistoryLimit": 10,
            "template": {"spec": {
                "dnsPolicy": "ClusterFirst",
                "containers": [
                    {"name": "workspace", "image": "ws:1", "imagePullPolicy": "IfNotPresent",
                     "args": ["serve", "--auth=token"],
                     "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "api"}],
                     "terminationMessagePath": "/dev/termination-log"},
                    {"name": "injected", "image": "sidecar:1"}
                ],
                "tolerations": [{"key": "a", "operator": "Exists"}]
            }}
        },
        "status": {"replicas": 1}})
    }

    fn ours() -> Value {
        json!({"f:spec": {
            "f:replicas": {},
            "f:template": {"f:spec": {
                "f:containers": {"k:{\"name\":\"workspace\"}": {
                    ".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                    "f:ports": {"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {
                        ".": {}, "f:containerPort": {}, "f:name": {}}}
                }},
                "f:tolerations": {}
            }}
        }})
    }

    #[test]
    fn only_the_fields_we_own_are_kept() {
        let projected = project(&deployment(), &ours());
        assert_eq!(
            projected,
            json!({"spec": {
                "replicas": 0,
                "template": {"spec": {
                    "containers": [
                        {"name": "workspace", "image": "ws:1", "args": ["serve", "--auth=token"],
                         "ports": [{"containerPort": 8080, "name": "api"}]}
                    ],
                    "tolerations": [{"key": "a", "operator": "Exists"}]
                }}
            }})
        );
    }

    #[test]
    fn a_field_taken_by_another_manager_is_missing_so_it_counts_as_drift() {
        // kubectl scaled the Deployment: spec.replicas is no longer ours.
        let mut set = ours();
        set["f:spec"].as_object_mut().unwrap().remove("f:replicas");
        let projected = project(&deployment(), &set);
        assert!(projected["spec"].get("replicas").is_none());
        let desired = json!({"spec": {"replicas": 1}});
        assert!(!super::super::apply::is_subset(&desired, &projected));
    }

    #[test]
    fn our_applies_and_updates_are_united_and_others_and_status_left_out() {
        let entries = [
            entry("kube-coder-operator", None, json!({"f:data": {"f:a": {}}})),
            entry("someone", None, json!({"f:data": {"f:b": {}}})),
            entry(
                "kube-coder-operator",
                Some("status"),
                json!({"f:status": {}}),
            ),
            entry("kube-coder-operator", None, json!({"f:data": {"f:c": {}}})),
        ];
        let set = owned_by(&entries, "kube-coder-operator").unwrap();
        let live = json!({"data": {"a": "1", "b": "2", "c": "3"}, "status": {"x": 1}});
        assert_eq!(project(&live, &set), json!({"data": {"a": "1", "c": "3"}}));
        assert!(owned_by(&entries, "nobody").is_none());
    }

    #[test]
    fn set_elements_and_positions_are_matched() {
        let live = json!({"finalizers": ["a", "b"], "items": [{"x": 1}, {"x": 2}]});
        let set = json!({"f:finalizers": {"v:\"b\"": {}}, "f:items": {"i:1": {"f:x": {}}}});
        assert_eq!(
            project(&live, &set),
            json!({"finalizers": ["b"], "items": [{"x": 2}]})
        );
    }
}
