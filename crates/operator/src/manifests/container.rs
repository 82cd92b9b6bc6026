//! What every container of a workspace pod shares: the hardened security
//! context, resource figures in canonical form, HTTP probes, and plain
//! environment variables. Used by
//! the workload and the oauth2-proxy sidecar alike.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, EnvVar, HTTPGetAction, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::quantity::canonical;
use crate::names;

/// The container security context every container of a workspace gets.
/// An environment variable with a plain value.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

pub fn hardened() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(names::UID),
        run_as_group: Some(names::UID),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    let q = |(cpu, memory): (&str, &str)| {
        Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(canonical(cpu))),
            ("memory".to_string(), Quantity(canonical(memory))),
        ]))
    };
    ResourceRequirements {
        requests: q(requests),
        limits: q(limits),
        ..Default::default()
    }
}

/// Asked each second until it first answers (for up to five minutes), so
/// a starting container is seen ready within a second of listening: the
/// kubelet runs the readiness probe at once when a startup probe passes,
/// where without one a first readiness probe sent before the server
/// listens leaves the pod unready for a whole readiness period (a wake on
/// request waited 5 s on it).
pub fn startup_probe(path: &str, port: i32) -> Probe {
    Probe {
        failure_threshold: Some(300),
        ..http_probe(path, port, 1)
    }
}

pub fn http_probe(path: &str, port: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}
