//! `kube-coder token NAME`: print a workspace's API token (or, with
//! `--login`, its basic-auth login) from its Secret; `kube-coder token
//! --local`: the token of the embedded default (`kube-coder serve` on this
//! machine), from its data dir.

use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use operator::names;

use crate::cluster;

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The workspace (on the cluster).
    #[arg(required_unless_present = "local")]
    name: Option<String>,
    /// The token of `kube-coder serve` on this machine instead.
    #[arg(long, conflicts_with_all = ["name", "login", "rotate"])]
    local: bool,
    /// With --local: the server's --data-dir, if not the default.
    #[arg(long, requires = "local")]
    data_dir: Option<std::path::PathBuf>,
    /// Print the dashboard login (user and password) instead.
    #[arg(long)]
    login: bool,
    /// Replace the API token with a new one and print it. The workspace
    /// takes it when the kubelet refreshes the mounted Secret (about a
    /// minute), without a restart; the old token stops working then.
    #[arg(long, conflicts_with = "login")]
    rotate: bool,
}

impl TokenArgs {
    pub fn local(&self) -> bool {
        self.local
    }
}

/// `--local`: read the token file of the embedded default.
pub fn run_local(args: &TokenArgs) -> Result<(), String> {
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::serve::default_data_dir);
    let file = dir.join("api-token");
    let token = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "no local token at {} ({e}); start the server once with `kube-coder serve` (or `make run`), or pass its --data-dir",
            file.display()
        )
    })?;
    println!("{}", token.trim());
    Ok(())
}

pub async fn run(args: TokenArgs) -> Result<(), String> {
    let name = args.name.clone().unwrap_or_default();
    let client = cluster::client().await?;
    let ns = names::namespace(&name);
    let api: Api<Secret> = Api::namespaced(client, &ns);
    if args.rotate {
        let token = operator::manifests::credentials::random_hex(32);
        let patch = serde_json::json!({"stringData": {"api-token": token}});
        api.patch(
            names::CREDENTIALS_SECRET,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 404 => format!(
                "workspace {:?} has no credentials yet; check `kube-coder user show {}`",
                name, name
            ),
            _ => format!("cannot rotate the token: {}", cluster::api_message(&e)),
        })?;
        println!("{token}");
        eprintln!("the workspace takes the new token within about a minute; the old one stops working then");
        return Ok(());
    }
    let secret = api
        .get_opt(names::CREDENTIALS_SECRET)
        .await
        .map_err(|e| format!("cannot read {ns}/{}: {}", names::CREDENTIALS_SECRET, cluster::api_message(&e)))?
        .ok_or_else(|| {
            format!(
                "workspace {:?} has no credentials yet; check `kube-coder user show {}` (is the operator running?)",
                name, name
            )
        })?;
    let get = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .ok_or_else(|| format!("{ns}/{} has no {key:?}", names::CREDENTIALS_SECRET))
    };
    if args.login {
        let htpasswd = get("htpasswd")?;
        let user = htpasswd.split(':').next().unwrap_or_default();
        println!("user: {user}\npassword: {}", get("password")?);
    } else {
        println!("{}", get("api-token")?);
    }
    Ok(())
}
