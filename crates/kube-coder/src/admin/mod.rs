//! The admin CLI: `kube-coder user …`, `token`, `render`, `doctor`, `crd`.
//! Each talks to the cluster through the admin's kubeconfig; errors say
//! what to do next.

pub mod doctor;
pub mod render;
pub mod token;
pub mod user;
