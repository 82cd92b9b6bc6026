//! Where the home volume (PVC) is built. Without `retainOnDelete: false`
//! it carries no owner reference, so deleting the Workspace keeps it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::meta;
use super::quantity::canonical;
use crate::crd::Workspace;
use crate::names;

pub fn home_volume(ws: &Workspace) -> PersistentVolumeClaim {
    let s = &ws.spec.storage;
    PersistentVolumeClaim {
        metadata: meta(ws, names::HOME_PVC, true, !s.retain_on_delete),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: s.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(canonical(&s.size)),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
