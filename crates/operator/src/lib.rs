//! The kube-coder operator as a library: the `Workspace` CRD, the builders
//! that turn one Workspace into plain Kubernetes objects, and the
//! reconciler that applies them. The `kube-coder` binary wires it to the
//! `operator`, `user`, `token`, `render` and `doctor` subcommands.

pub mod crd;
pub mod manifests;
pub mod names;
pub mod settings;

/// Where the generated CRD is checked in (relative to the repository).
pub const CRD_PATH: &str = "charts/kube-coder/crds/workspaces.kube-coder.dev.yaml";

/// The Workspace CRD as YAML, as checked in at [`CRD_PATH`].
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let body = serde_yaml::to_string(&crd::Workspace::crd())
        .unwrap_or_else(|e| format!("# could not serialise the CRD: {e}\n"));
    format!("# Generated from crates/operator/src/crd.rs by `kube-coder crd`; do not edit.\n{body}")
}
pub mod broker;
pub mod builds;
pub mod controller;
pub mod serve;
pub mod waker;
pub mod workspace_identity;
