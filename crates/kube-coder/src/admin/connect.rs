//! `kube-coder connect NAME`: reach a workspace without an ingress, through
//! the API server's port-forward of its pod (what `kubectl port-forward`
//! does). Two local listeners, the dashboard and the api; every connection
//! is forwarded to the workspace's current ready pod, so a restart of the
//! workspace does not end the session. Ctrl-C ends it.

use std::net::SocketAddr;

use clap::Args;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use operator::crd::{AuthType, Phase, Workspace};
use operator::names;
use tokio::net::{TcpListener, TcpStream};

use crate::cluster;

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The workspace.
    name: String,
    /// Local port of the dashboard; the api listens on the next one.
    #[arg(long, default_value_t = 6080)]
    port: u16,
    /// Local address to listen on (loopback: only this machine reaches it).
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
}

pub async fn run(args: ConnectArgs) -> Result<(), String> {
    let client = cluster::client().await?;
    let name = &args.name;
    let ns = names::namespace(name);
    let workspaces: Api<Workspace> = Api::all(client.clone());
    let ws = workspaces
        .get_opt(name)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 403 => format!(
                "you may not read workspace {name}: it takes the right to get workspaces.kube-coder.dev (ask your cluster admin)"
            ),
            e => format!("cannot read workspace {name}: {e}"),
        })?
        .ok_or_else(|| format!("workspace {name} does not exist (kube-coder user list)"))?;
    let phase = ws.status.as_ref().and_then(|s| s.phase);
    if !ws.spec.running || phase == Some(Phase::Stopped) {
        return Err(format!(
            "workspace {name} is stopped: start it with `kube-coder user start {name}`"
        ));
    }
    may_port_forward(&client, &ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // Fail now, not at the first connection, if nothing can answer.
    ready_pod(&pods, name).await?;

    // With oauth2 the dashboard is the login proxy's port: the server's own
    // listens on the pod's loopback and trusts what comes from there.
    let dashboard_port = if ws.spec.auth.kind == AuthType::Oauth2 {
        names::OAUTH2_PORT
    } else {
        names::DASHBOARD_PORT
    } as u16;
    let api_port = names::API_PORT as u16;
    let api_local = args
        .port
        .checked_add(1)
        .ok_or("--port must be below 65535")?;
    let dashboard = bind(SocketAddr::new(args.address, args.port)).await?;
    let api = bind(SocketAddr::new(args.address, api_local)).await?;
    let url = |l: &TcpListener| {
        l.local_addr()
            .map(|a| format!("http://{a}/"))
            .unwrap_or_default()
    };
    println!("{name}: connected through the API server's port-forward");
    println!("  dashboard: {}", url(&dashboard));
    println!("  api:       {}", url(&api));
    println!("Ctrl-C to stop.");

    tokio::select! {
        _ = serve(dashboard, pods.clone(), name.clone(), dashboard_port) => {}
        _ = serve(api, pods, name.clone(), api_port) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("{name}: disconnected");
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr} ({e}); pick other ports with --port N (the api takes N+1)")
    })
}

/// Refuses early, with the permission named, when the caller may not
/// port-forward in the workspace's namespace.
pub(crate) async fn may_port_forward(client: &kube::Client, ns: &str) -> Result<(), String> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.into()),
                verb: Some("create".into()),
                resource: Some("pods".into()),
                subresource: Some("portforward".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| format!("cannot check your rights in {ns}: {e}"))?;
    if answer.status.is_some_and(|s| s.allowed) {
        Ok(())
    } else {
        Err(format!(
            "you may not connect to workspaces in {ns}: it takes the right to create pods/portforward there (ask your cluster admin)"
        ))
    }
}

/// The name of the workspace's pod that is Ready now.
pub(crate) async fn ready_pod(pods: &Api<Pod>, name: &str) -> Result<String, String> {
    let selector = names::pod_labels(name)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("cannot list the pods of {name}: {e}"))?;
    list.items
        .into_iter()
        .find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .and_then(|p| p.metadata.name)
        .ok_or_else(|| {
            format!("workspace {name} has no ready pod yet: see `kube-coder user show {name}`")
        })
}

/// Accepts local connections and forwards each to `port` of the ready pod.
async fn serve(listener: TcpListener, pods: Api<Pod>, name: String, port: u16) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let pods = pods.clone();
        let name = name.clone();
        tokio::spawn(async move {
            if let Err(e) = forward(conn, &pods, &name, port).await {
                eprintln!("kube-coder: {name}: a connection to port {port} failed: {e}");
            }
        });
    }
}

async fn forward(
    mut conn: TcpStream,
    pods: &Api<Pod>,
    name: &str,
    port: u16,
) -> Result<(), String> {
    let pod = ready_pod(pods, name).await?;
    relay(&mut conn, pods, &pod, port).await
}

/// Carries `conn` to `port` of `pod` through the API server's
/// port-forward, until either side ends.
pub(crate) async fn relay<S>(
    conn: &mut S,
    pods: &Api<Pod>,
    pod: &str,
    port: u16,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut pf = pods
        .portforward(pod, &[port])
        .await
        .map_err(|e| format!("port-forward to {pod}: {e}"))?;
    let mut upstream = pf
        .take_stream(port)
        .ok_or_else(|| format!("port-forward to {pod} gave no stream"))?;
    let _ = tokio::io::copy_bidirectional(conn, &mut upstream).await;
    drop(upstream);
    let _ = pf.join().await;
    Ok(())
}
