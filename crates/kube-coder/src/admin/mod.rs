//! The admin CLI: `kube-coder user …`, `token`, `connect`, `render`,
//! `doctor`, `crd`.
//! Each talks to the cluster through the admin's kubeconfig; errors say
//! what to do next.

pub mod connect;
pub mod doctor;
pub mod render;
pub mod ssh;
pub mod token;
pub mod user;
