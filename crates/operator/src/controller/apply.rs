//! Applying one desired object without writing when nothing changed.
//!
//! The desired body is compared with the cached live object: when every
//! field we set already has our value (the live object may hold more:
//! defaults, status, other managers' fields), there is no write at all.
//! Otherwise one server-side apply under our field manager, forced, so
//! our fields win over drift. A Secret is the exception to "the live object
//! may hold more": every key of a Secret the operator writes is its own, so
//! a key in the live one that the desired one lacks (a model key the
//! workspace may no longer use) is stale, and the apply removes it.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use super::caches::Caches;
use super::Error;
use crate::manifests::{Kind, Manifest};
use crate::names;

/// Whether every field of `desired` is present in `live` with the same
/// value. Lists must match element by element (same length).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    first_difference(desired, live).is_none()
}

/// The first path where `live` lacks `desired`'s value (for the log line
/// that says why a write was made).
pub fn first_difference(desired: &Value, live: &Value) -> Option<String> {
    match (desired, live) {
        // A field we leave unset asks for nothing.
        (Value::Null, _) => None,
        (Value::Object(d), Value::Object(l)) => d.iter().find_map(|(k, v)| match l.get(k) {
            None if v.is_null() => None,
            None => Some(format!(".{k} (missing)")),
            Some(lv) => first_difference(v, lv).map(|p| format!(".{k}{p}")),
        }),
        (Value::Array(d), Value::Array(l)) if d.len() != l.len() => {
            Some(format!(" (length {} instead of {})", l.len(), d.len()))
        }
        (Value::Array(d), Value::Array(l)) => d
            .iter()
            .zip(l)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(a, b).map(|p| format!("[{i}]{p}"))),
        (d, l) if d == l => None,
        _ => Some(String::new()),
    }
}

/// A key of the live Secret's data that the desired one lacks.
pub fn stale_secret_key(desired: &Value, live: &Value) -> Option<String> {
    let keys = |v: &Value| {
        v.get("data")
            .and_then(Value::as_object)
            .map(|d| d.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let wanted = keys(desired);
    keys(live).into_iter().find(|k| !wanted.contains(k))
}

/// Apply `m` unless the cache shows it already as desired.
/// Returns whether a write was made.
pub async fn ensure(client: &kube::Client, caches: &Caches, m: &Manifest) -> Result<bool, Error> {
    if let Some(live) = caches.get(m.kind, &m.name, m.namespace.as_deref()) {
        let live = live.value();
        // Objects from a watch's initial list carry no apiVersion/kind;
        // the cache is keyed by kind anyway.
        let mut desired = m.body.clone();
        if let Some(d) = desired.as_object_mut() {
            d.remove("apiVersion");
            d.remove("kind");
        }
        let stale = (m.kind == Kind::Secret)
            .then(|| stale_secret_key(&desired, &live))
            .flatten();
        if stale.is_none() && is_subset(&desired, &live) {
            return Ok(false);
        }
        let path = match stale {
            Some(key) => format!(".data.{key} (stale)"),
            None => first_difference(&desired, &live).unwrap_or_default(),
        };
        tracing::info!(kind = ?m.kind, name = %m.name, path = %path, "live object differs");
    }
    let ar = m.kind.api_resource();
    let api: Api<DynamicObject> = match &m.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        &m.name,
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(&m.body),
    )
    .await
    .map_err(|e| Error::Apply {
        kind: m.kind,
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        message: super::describe(e),
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::is_subset;
    use serde_json::json;

    #[test]
    fn extra_live_fields_do_not_count_as_drift() {
        let desired = json!({"spec": {"replicas": 1, "ports": [{"port": 80}]}});
        let live = json!({"spec": {"replicas": 1, "paused": false, "ports": [{"port": 80, "protocol": "TCP"}]},
                          "status": {"readyReplicas": 1}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn the_first_difference_is_named() {
        let desired = json!({"spec": {"replicas": 1, "ports": [{"port": 80}]}});
        let live = json!({"spec": {"replicas": 1, "ports": [{"port": 81}]}});
        assert_eq!(
            super::first_difference(&desired, &live).as_deref(),
            Some(".spec.ports[0].port")
        );
        assert_eq!(super::first_difference(&desired, &desired), None);
    }

    #[test]
    fn changed_or_missing_fields_and_list_lengths_do() {
        let desired = json!({"spec": {"replicas": 1, "ports": [{"port": 80}]}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 0, "ports": [{"port": 80}]}})
        ));
        assert!(!is_subset(&desired, &json!({"spec": {"replicas": 1}})));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 1, "ports": [{"port": 80}, {"port": 81}]}})
        ));
    }

    #[test]
    fn a_secret_key_the_desired_secret_lacks_is_stale() {
        use super::stale_secret_key;
        let live = json!({"data": {"anthropic": "YQ==", "openai": "Yg=="}});
        assert_eq!(
            stale_secret_key(&json!({"data": {"anthropic": "YQ=="}}), &live),
            Some("openai".to_string())
        );
        assert_eq!(stale_secret_key(&json!({}), &json!({})), None);
        assert_eq!(stale_secret_key(&live, &live), None);
        assert!(stale_secret_key(&json!({"metadata": {}}), &live).is_some());
    }
}
