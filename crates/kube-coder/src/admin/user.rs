//! `kube-coder user add|list|show|stop|start|delete`: workspaces as an
//! admin sees them. `add` and `start` wait for Ready and show progress.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use operator::crd::{
    Auth, AuthType, IngressSpec, OAuth2, Owner, Phase, Storage, Tls, Workspace, WorkspaceSpec,
};
use operator::names;
use serde_json::json;

use crate::cluster;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a workspace and wait until it is ready.
    Add(Box<AddArgs>),
    /// List workspaces.
    List,
    /// Show one workspace: status, conditions, URLs.
    Show { name: String },
    /// Scale a workspace to zero; its home volume is kept.
    Stop { name: String },
    /// Start a stopped workspace and wait until it is ready.
    Start {
        name: String,
        /// Seconds to wait for Ready.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Delete a workspace (asks to retype the name unless --yes).
    Delete {
        name: String,
        #[arg(long)]
        yes: bool,
        /// Also delete the home volume and namespace, even if retained.
        #[arg(long)]
        purge: bool,
        /// Seconds to wait until the workspace and its objects are gone.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Workspace name (a DNS label, at most 40 characters).
    name: String,
    /// The owner's user name (also the basic-auth login). Default: NAME.
    #[arg(long)]
    owner: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    github_login: Option<String>,
    /// basic, oauth2 or none (none needs --read-only).
    #[arg(long, default_value = "basic")]
    auth: String,
    #[arg(long)]
    read_only: bool,
    /// For --auth oauth2: the Secret (in the operator's namespace) with client-id and client-secret.
    #[arg(long)]
    oauth2_client_secret: Option<String>,
    /// Dashboard host name; without it the workspace is reachable only in-cluster.
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    api_host: Option<String>,
    /// TLS secret name prefix (with --host).
    #[arg(long)]
    tls_secret: Option<String>,
    /// cert-manager ClusterIssuer (with --tls-secret).
    #[arg(long)]
    issuer: Option<String>,
    /// Home volume size, e.g. 20Gi.
    #[arg(long, default_value = "20Gi")]
    storage: String,
    #[arg(long)]
    storage_class: Option<String>,
    /// Delete the home volume with the workspace.
    #[arg(long)]
    no_retain: bool,
    /// Stop after this long idle, e.g. 2h.
    #[arg(long)]
    idle_stop_after: Option<String>,
    /// Model providers through the egress gateway (the cluster's keys, never
    /// in the workspace); repeat or separate with commas to name which
    /// (e.g. anthropic), or give `all`.
    #[arg(long = "models", value_delimiter = ',')]
    models: Vec<String>,
    /// A public key file (e.g. ~/.ssh/id_ed25519.pub) whose keys may SSH in
    /// (`kube-coder ssh NAME`); repeatable.
    #[arg(long = "ssh-key-file")]
    ssh_key_files: Vec<std::path::PathBuf>,
    /// A GitHub repository (owner/name) git in the workspace may reach with
    /// tokens from the operator's broker; repeat for more (one owner).
    #[arg(long = "github-repo", value_name = "OWNER/NAME")]
    github_repos: Vec<String>,
    /// Input plus output model tokens per calendar month (implies
    /// `--models all` when no provider is named).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    monthly_token_budget: Option<i64>,
    /// Return after creating, without waiting for Ready.
    #[arg(long)]
    no_wait: bool,
    /// Seconds to wait for Ready.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

pub async fn run(cmd: UserCommand) -> Result<(), String> {
    let client = cluster::client().await?;
    let api: Api<Workspace> = Api::all(client.clone());
    match cmd {
        UserCommand::Add(a) => add(&client, &api, *a).await,
        UserCommand::List => list(&api).await,
        UserCommand::Show { name } => show(&api, &name).await,
        UserCommand::Stop { name } => {
            set_running(&api, &name, false).await?;
            println!("{name}: stopping; the home volume is kept. `kube-coder user start {name}` starts it again.");
            Ok(())
        }
        UserCommand::Start { name, timeout } => {
            set_running(&api, &name, true).await?;
            wait_ready(&api, &name, timeout).await?;
            Ok(())
        }
        UserCommand::Delete {
            name,
            yes,
            purge,
            timeout,
        } => delete(&client, &api, &name, yes, purge, timeout).await,
    }
}

fn spec_from(a: &AddArgs) -> Result<WorkspaceSpec, String> {
    let kind = match a.auth.as_str() {
        "basic" => AuthType::Basic,
        "oauth2" => AuthType::Oauth2,
        "none" => AuthType::None,
        other => return Err(format!("--auth {other:?}: use basic, oauth2 or none")),
    };
    let oauth2 = match (kind, &a.oauth2_client_secret) {
        (AuthType::Oauth2, Some(secret)) => Some(OAuth2 {
            client_secret_ref: secret.clone(),
            allowed_users: Vec::new(),
            ..Default::default()
        }),
        (AuthType::Oauth2, None) => {
            return Err("--auth oauth2 needs --oauth2-client-secret NAME (a Secret in the operator's namespace with client-id and client-secret)".into())
        }
        _ => None,
    };
    if kind == AuthType::Oauth2 && a.github_login.is_none() && a.email.is_none() {
        return Err("--auth oauth2 needs the owner's identity at the provider: --github-login LOGIN (GitHub) or --email ADDRESS (Google, OIDC); the workspace name is not an identity".into());
    }
    let ingress = a.host.as_ref().map(|host| IngressSpec {
        host: host.clone(),
        api_host: a.api_host.clone(),
        // The operator gives the cluster's one class.
        class_name: None,
        tls: a.tls_secret.as_ref().map(|s| Tls {
            secret_name: s.clone(),
            issuer: a.issuer.clone(),
        }),
    });
    Ok(WorkspaceSpec {
        owner: Owner {
            name: a.owner.clone().unwrap_or_else(|| a.name.clone()),
            email: a.email.clone(),
            github_login: a.github_login.clone(),
        },
        running: true,
        image: Default::default(),
        resources: Default::default(),
        storage: Storage {
            size: a.storage.clone(),
            storage_class_name: a.storage_class.clone(),
            retain_on_delete: !a.no_retain,
        },
        auth: Auth {
            kind,
            read_only: a.read_only,
            oauth2,
        },
        ingress,
        network: Default::default(),
        build: Default::default(),
        ssh: ssh_keys(&a.ssh_key_files)?
            .map(|authorized_keys| operator::crd::Ssh { authorized_keys }),
        github: (!a.github_repos.is_empty()).then(|| operator::crd::Github {
            repositories: a.github_repos.clone(),
            permissions: None,
        }),
        models: (!a.models.is_empty() || a.monthly_token_budget.is_some()).then(|| {
            operator::crd::Models {
                providers: (!a.models.is_empty() && !a.models.iter().any(|m| m == "all"))
                    .then(|| a.models.clone()),
                monthly_token_budget: a.monthly_token_budget,
            }
        }),
        idle: a
            .idle_stop_after
            .clone()
            .map(|s| operator::crd::Idle { stop_after: s }),
    })
}

/// The keys in `files`, one per non-empty, non-comment line; none when no
/// file is given.
fn ssh_keys(files: &[std::path::PathBuf]) -> Result<Option<Vec<String>>, String> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read --ssh-key-file {}: {e}", f.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    Ok(Some(keys))
}

async fn add(client: &kube::Client, api: &Api<Workspace>, a: AddArgs) -> Result<(), String> {
    let ws = Workspace::new(&a.name, spec_from(&a)?);
    operator::manifests::validate(&ws).map_err(|e| e.to_string())?;
    let retained = retained_home(client, &a.name).await;
    match api.create(&PostParams::default(), &ws).await {
        Ok(_) => println!("{}: created", a.name),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            return Err(format!(
                "workspace {:?} already exists; see `kube-coder user show {}`",
                a.name, a.name
            ))
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {
            return Err("the Workspace CRD is not installed; install the chart (helm install kube-coder charts/kube-coder) or run `kube-coder doctor`".into())
        }
        Err(e) => return Err(format!("the cluster refused the workspace: {}", cluster::api_message(&e))),
    }
    if retained {
        // The home holds the server's database: what an earlier workspace
        // of this name set up comes back with it.
        println!(
            "{}: reusing the home volume kept from an earlier workspace of this name. Its \
             webhooks, schedules and hook secrets are active again: review them \
             (GET /api/webhooks, /api/schedules) and delete what the new owner should not inherit.",
            a.name
        );
    }
    if a.no_wait {
        return Ok(());
    }
    let ws = wait_ready(api, &a.name, a.timeout).await?;
    let status = ws.status.unwrap_or_default();
    println!(
        "\n  dashboard: {}\n  api:       {}\n",
        status.url.unwrap_or_default(),
        status.api_url.unwrap_or_default()
    );
    println!("  API token:        kube-coder token {}", a.name);
    if ws.spec.auth.kind == AuthType::Basic {
        println!("  dashboard login:  kube-coder token {} --login", a.name);
    }
    Ok(())
}

/// Whether a home volume retained from an earlier workspace of this name
/// exists (it is reused by the new one). Unknown counts as no.
async fn retained_home(client: &kube::Client, name: &str) -> bool {
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &names::namespace(name));
    matches!(pvcs.get_opt(names::HOME_PVC).await, Ok(Some(_)))
}

/// Print each new phase/message until Ready (or Failed, or timeout).
async fn wait_ready(api: &Api<Workspace>, name: &str, timeout: u64) -> Result<Workspace, String> {
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let ws = api
            .get_opt(name)
            .await
            .map_err(|e| cluster::api_message(&e))?
            .ok_or_else(|| format!("workspace {name:?} does not exist"))?;
        let status = ws.status.clone().unwrap_or_default();
        let current = status.observed_generation == ws.metadata.generation;
        let line = format!(
            "{:?}: {}",
            status.phase.unwrap_or(Phase::Pending),
            status
                .message
                .clone()
                .unwrap_or_else(|| "waiting for the operator".into())
        );
        if line != last {
            println!("  [{:>3}s] {line}", started.elapsed().as_secs());
            let _ = std::io::stdout().flush();
            last = line;
        }
        match status.phase {
            Some(Phase::Ready) if current => return Ok(ws),
            Some(Phase::Failed) if current => {
                return Err(format!(
                    "workspace {name:?} failed: {}; see `kube-coder user show {name}`",
                    status.message.unwrap_or_default()
                ))
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(format!(
                "workspace {name:?} is not ready after {timeout}s (last: {last}); is the operator running? see `kube-coder user show {name}` and `kube-coder doctor`"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn list(api: &Api<Workspace>) -> Result<(), String> {
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list workspaces: {}", cluster::api_message(&e)))?;
    println!(
        "{:<24} {:<16} {:<13} {:<7} {:<8} URL",
        "NAME", "OWNER", "PHASE", "AUTH", "RUNNING"
    );
    for ws in list.items {
        let s = ws.status.clone().unwrap_or_default();
        println!(
            "{:<24} {:<16} {:<13} {:<7} {:<8} {}",
            names::workspace_name(&ws),
            ws.spec.owner.name,
            s.phase.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            ws.spec.auth.kind.to_string(),
            ws.spec.running,
            s.url.unwrap_or_default()
        );
    }
    Ok(())
}

async fn get(api: &Api<Workspace>, name: &str) -> Result<Workspace, String> {
    api.get_opt(name)
        .await
        .map_err(|e| cluster::api_message(&e))?
        .ok_or_else(|| {
            format!("workspace {name:?} does not exist; `kube-coder user list` shows them all")
        })
}

async fn show(api: &Api<Workspace>, name: &str) -> Result<(), String> {
    let ws = get(api, name).await?;
    let s = ws.status.clone().unwrap_or_default();
    println!("name:       {name}");
    println!("owner:      {}", ws.spec.owner.name);
    println!(
        "phase:      {}",
        s.phase.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
    );
    println!("message:    {}", s.message.unwrap_or_default());
    println!("running:    {}", ws.spec.running);
    println!(
        "auth:       {}{}",
        ws.spec.auth.kind,
        if ws.spec.auth.read_only {
            " (read-only)"
        } else {
            ""
        }
    );
    println!(
        "namespace:  {}",
        s.namespace.unwrap_or_else(|| names::namespace(name))
    );
    println!("dashboard:  {}", s.url.unwrap_or_default());
    println!("api:        {}", s.api_url.unwrap_or_default());
    if let Some(a) = s.last_activity {
        println!("activity:   {a}");
    }
    println!(
        "storage:    {} ({})",
        ws.spec.storage.size,
        if ws.spec.storage.retain_on_delete {
            "kept on delete"
        } else {
            "deleted with the workspace"
        }
    );
    for c in s.conditions {
        println!(
            "condition:  {}={} ({}): {}",
            c.type_, c.status, c.reason, c.message
        );
    }
    Ok(())
}

async fn set_running(api: &Api<Workspace>, name: &str, running: bool) -> Result<(), String> {
    get(api, name).await?;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"running": running}})),
    )
    .await
    .map_err(|e| cluster::api_message(&e))?;
    Ok(())
}

async fn delete(
    client: &kube::Client,
    api: &Api<Workspace>,
    name: &str,
    yes: bool,
    purge: bool,
    timeout: u64,
) -> Result<(), String> {
    let ws = get(api, name).await?;
    let retained = ws.spec.storage.retain_on_delete && !purge;
    if !yes {
        print!(
            "Delete workspace {name}{}? Type its name to confirm: ",
            if retained {
                " (its home volume is kept)"
            } else {
                " and its home volume"
            }
        );
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != name {
            return Err("not confirmed; nothing deleted".into());
        }
    }
    api.delete(name, &DeleteParams::foreground())
        .await
        .map_err(|e| cluster::api_message(&e))?;
    if !retained {
        let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        match ns
            .delete(&names::namespace(name), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(format!(
                    "deleted the workspace, but not its namespace: {}",
                    cluster::api_message(&e)
                ))
            }
        }
    }
    // Foreground deletion keeps the Workspace until the garbage collector has
    // removed what it owns; "deleted" is printed only once that is true.
    println!("{name}: deleting (waiting for its objects to be removed)");
    let _ = std::io::stdout().flush();
    let gone = await_condition(
        api.clone(),
        name,
        conditions::is_deleted(ws.metadata.uid.as_deref().unwrap_or_default()),
    );
    match tokio::time::timeout(Duration::from_secs(timeout), gone).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("deletion requested; cannot watch it: {e}")),
        Err(_) => {
            return Err(format!(
                "deletion requested, but {name:?} is still there after {timeout}s; is the garbage collector (kube-controller-manager) running? see `kube-coder user show {name}`"
            ))
        }
    }
    println!(
        "{name}: deleted{}",
        if retained {
            format!(
                "; namespace {} keeps the home volume (delete it to free the storage)",
                names::namespace(name)
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
