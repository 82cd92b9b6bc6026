//! Where the ResourceQuota and the LimitRange are built.
//!
//! The quota allows twice the workspace's own requests and limits, so a
//! restart beside the running pod and the small sidecars fit, and nothing
//! more: no LoadBalancer or NodePort Services, two volumes. With the
//! in-pod builder (`build.mode: buildkit`), which may use as much as the
//! workspace, three times.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity::{canonical, times};
use super::{meta, BuildError};
use crate::crd::Workspace;
use crate::names;

pub fn resource_quota(ws: &Workspace) -> Result<ResourceQuota, BuildError> {
    let r = &ws.spec.resources;
    let n = if super::in_pod_builder::enabled(ws) {
        3
    } else {
        2
    };
    let twice = |q: &str| {
        times(q, n).map(Quantity).ok_or_else(|| {
            BuildError::Invalid(
                names::workspace_name(ws).into(),
                format!("{q:?} is not a quantity"),
            )
        })
    };
    let hard = BTreeMap::from([
        ("requests.cpu".to_string(), twice(&r.requests.cpu)?),
        ("requests.memory".to_string(), twice(&r.requests.memory)?),
        ("limits.cpu".to_string(), twice(&r.limits.cpu)?),
        ("limits.memory".to_string(), twice(&r.limits.memory)?),
        (
            "requests.storage".to_string(),
            times(&ws.spec.storage.size, 2)
                .map(Quantity)
                .ok_or_else(|| {
                    BuildError::Invalid(
                        names::workspace_name(ws).into(),
                        format!("{:?} is not a quantity", ws.spec.storage.size),
                    )
                })?,
        ),
        ("persistentvolumeclaims".to_string(), Quantity("2".into())),
        ("pods".to_string(), Quantity("4".into())),
        ("services".to_string(), Quantity("2".into())),
        ("services.loadbalancers".to_string(), Quantity("0".into())),
        ("services.nodeports".to_string(), Quantity("0".into())),
    ]);
    Ok(ResourceQuota {
        metadata: meta(ws, "workspace-quota", true, true),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Defaults for containers that name no resources (the quota would refuse
/// them otherwise), and a ceiling of the workspace's own limits.
pub fn limit_range(ws: &Workspace) -> LimitRange {
    let r = &ws.spec.resources;
    let q = |cpu: &str, memory: &str| {
        Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(canonical(cpu))),
            ("memory".to_string(), Quantity(canonical(memory))),
        ]))
    };
    LimitRange {
        metadata: meta(ws, "workspace-limits", true, true),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: q(&r.limits.cpu, &r.limits.memory),
                default_request: q(&r.requests.cpu, &r.requests.memory),
                max: q(&r.limits.cpu, &r.limits.memory),
                ..Default::default()
            }],
        }),
    }
}
