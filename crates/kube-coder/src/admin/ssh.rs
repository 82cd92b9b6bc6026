//! `kube-coder ssh NAME`: an OpenSSH `ProxyCommand` that carries the SSH
//! connection on stdin and stdout through the API server's port-forward to
//! the workspace's SSH port, so no Service of type LoadBalancer or NodePort
//! is ever needed. `kube-coder ssh-config [NAME…]` prints the Host blocks
//! that make `ssh kc-NAME`, `scp`, `sftp` and `git` use it.

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use operator::crd::Workspace;
use operator::names;

use super::connect::{may_port_forward, ready_pod, relay};
use crate::cluster;

#[derive(Args, Debug)]
pub struct SshArgs {
    /// The workspace.
    name: String,
}

#[derive(Args, Debug)]
pub struct SshConfigArgs {
    /// The workspaces (default: every workspace with `ssh` you may read).
    names: Vec<String>,
}

pub async fn proxy(args: SshArgs) -> Result<(), String> {
    let client = cluster::client().await?;
    let name = &args.name;
    let workspaces: Api<Workspace> = Api::all(client.clone());
    let ws = workspaces
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read workspace {name}: {e}"))?
        .ok_or_else(|| format!("workspace {name} does not exist (kube-coder user list)"))?;
    if ws.spec.ssh.is_none() {
        return Err(format!(
            "workspace {name} has no SSH: set spec.ssh.authorizedKeys (or `kube-coder user add {name} --ssh-key-file ~/.ssh/id_ed25519.pub`)"
        ));
    }
    let ns = names::namespace(name);
    may_port_forward(&client, &ns).await?;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let pod = ready_pod(&pods, name).await?;
    let mut stdio = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
    relay(&mut stdio, &pods, &pod, names::SSH_PORT as u16).await
}

pub async fn config(args: SshConfigArgs) -> Result<(), String> {
    let names = if args.names.is_empty() {
        let client = cluster::client().await?;
        let workspaces: Api<Workspace> = Api::all(client);
        workspaces
            .list(&Default::default())
            .await
            .map_err(|e| format!("cannot list workspaces: {e}"))?
            .items
            .into_iter()
            .filter(|w| w.spec.ssh.is_some())
            .filter_map(|w| w.metadata.name)
            .collect()
    } else {
        args.names
    };
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "kube-coder".into());
    print!("{}", host_blocks(&me, &names));
    Ok(())
}

/// One Host block per workspace: `ssh kc-NAME` goes through the
/// port-forward, and its host key is known by that name whatever the route.
fn host_blocks(bin: &str, names: &[String]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "Host kc-{n}\n  HostName {n}\n  User dev\n  ProxyCommand {bin} ssh {n}\n  HostKeyAlias kc-{n}\n\n"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_workspace_gets_a_host_through_the_proxy() {
        let text = super::host_blocks("/usr/bin/kube-coder", &["alice".into()]);
        assert!(text.contains("Host kc-alice\n"));
        assert!(text.contains("ProxyCommand /usr/bin/kube-coder ssh alice\n"));
        assert!(text.contains("HostKeyAlias kc-alice\n"));
    }
}
