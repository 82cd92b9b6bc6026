//! Where SSH into a workspace is set up, for a Workspace with `ssh`: the
//! authorized keys as a ConfigMap (mounted, so a change reaches the running
//! server, which reads the file at each login), and the server's flags and
//! port. No Service or NetworkPolicy opening: `kube-coder ssh NAME` goes
//! through the API server's port-forward, to the pod's own loopback.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, ContainerPort, Volume, VolumeMount,
};

use super::meta;
use crate::crd::Workspace;
use crate::names;

const DIR: &str = "/etc/kube-coder/ssh";
const KEY: &str = "authorized_keys";

pub fn enabled(ws: &Workspace) -> bool {
    ws.spec.ssh.is_some()
}

pub fn config_map(ws: &Workspace) -> ConfigMap {
    let keys = ws
        .spec
        .ssh
        .as_ref()
        .map(|s| s.authorized_keys.iter().map(|k| format!("{k}\n")).collect())
        .unwrap_or_default();
    ConfigMap {
        metadata: meta(ws, names::SSH_AUTHORIZED_KEYS, true, true),
        data: Some(BTreeMap::from([(KEY.into(), keys)])),
        ..Default::default()
    }
}

/// The server's flags.
pub fn args() -> [String; 2] {
    [
        format!("--ssh-listen=0.0.0.0:{}", names::SSH_PORT),
        format!("--ssh-authorized-keys={DIR}/{KEY}"),
    ]
}

pub fn port() -> ContainerPort {
    ContainerPort {
        name: Some("ssh".into()),
        container_port: names::SSH_PORT,
        ..Default::default()
    }
}

pub fn volume() -> Volume {
    Volume {
        name: "ssh-keys".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::SSH_AUTHORIZED_KEYS.into(),
            default_mode: Some(0o444),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn mount() -> VolumeMount {
    super::workload::mount("ssh-keys", DIR, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use crate::settings::Settings;
    use serde_json::json;

    #[test]
    fn keys_are_mounted_and_the_server_listens_without_a_service() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"},
                   "ssh": {"authorizedKeys": ["ssh-ed25519 AAAAC3 alice@laptop"]}}),
        );
        assert_eq!(
            config_map(&ws).data.unwrap()[KEY],
            "ssh-ed25519 AAAAC3 alice@laptop\n"
        );
        let serve = crate::manifests::workload::serve_args(&ws).join(" ");
        assert!(serve.contains("--ssh-listen=0.0.0.0:2222"), "{serve}");
        let d = crate::manifests::workload::deployment(&ws, &Settings::default());
        let pod = d.spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert!(c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p.container_port == 2222));
        assert!(c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == DIR));
        // Nothing opens the port beyond the pod.
        let svc = crate::manifests::routing::service(&ws);
        assert!(svc
            .spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .all(|p| p.port != 2222));
        let plain = workspace("bob", json!({"owner": {"name": "bob"}}));
        assert!(!crate::manifests::workload::serve_args(&plain)
            .join(" ")
            .contains("ssh"));
    }
}
