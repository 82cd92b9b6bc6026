//! Helpers for tests that run against the real control plane that
//! `hack/cluster up` starts (`make test` does it). Each test uses its own
//! namespaces, so test binaries can share one running cluster.

use k8s_openapi::api::authorization::v1 as authz;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

pub mod builds;
pub mod registry;
pub mod test_host;

/// A client for the test cluster, or a panic that says how to get one.
pub async fn client() -> kube::Client {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!("KUBECONFIG is not set: these tests need the test control plane; run `make test`, or `hack/cluster up` and `eval $(hack/cluster env)`");
    }
    // Several TLS backends are linked into the workspace; pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    kube::Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test cluster from KUBECONFIG: {e}"))
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{:x}", std::process::id(), nanos)
}

/// Poll `check` until it returns `Some`, or panic after `secs` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until `api` lists nothing (with `what` in the panic otherwise).
pub async fn eventually_empty<K>(api: &kube::Api<K>, what: &str, secs: u64)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(what, secs, || async {
        api.list(&kube::api::ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await
}

/// Install (server-side apply) the checked-in Workspace CRD and wait
/// until the API server serves it.
pub async fn install_crd(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(operator::CRD_PATH);
    let text = std::fs::read_to_string(&path).expect("read the CRD");
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("parse the CRD");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        "workspaces.kube-coder.dev",
        &PatchParams::apply("kube-coder-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("the API server refused the CRD: {e}"));
    eventually("the Workspace CRD to be established", 30, || {
        let api = api.clone();
        async move {
            let crd = api.get("workspaces.kube-coder.dev").await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}

/// The test storage class: no provisioner; [`provide_volume`] makes the
/// volumes by hand, each reserved for one workspace's home claim.
pub const STORAGE_CLASS: &str = "kube-coder-test";

/// A PersistentVolume reserved for `ws-<name>/home`, so the home claim
/// binds and the pod can be scheduled on the fake nodes.
pub async fn provide_volume(client: &kube::Client, workspace: &str) {
    use k8s_openapi::api::core::v1::PersistentVolume;
    use k8s_openapi::api::storage::v1::StorageClass;
    use kube::api::{Api, Patch, PatchParams};
    let pp = PatchParams::apply("kube-coder-tests").force();
    let classes: Api<StorageClass> = Api::all(client.clone());
    classes
        .patch(
            STORAGE_CLASS,
            &pp,
            &Patch::Apply(serde_json::json!({
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": STORAGE_CLASS},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "Immediate",
                "reclaimPolicy": "Retain",
            })),
        )
        .await
        .expect("apply the test storage class");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let name = format!("home-{workspace}");
    volumes
        .patch(
            &name,
            &pp,
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": "100Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": STORAGE_CLASS,
                    "hostPath": {"path": format!("/tmp/kube-coder-test-volumes/{workspace}")},
                    "claimRef": {"namespace": format!("ws-{workspace}"), "name": "home"},
                }
            })),
        )
        .await
        .expect("apply a test volume");
}

/// The operator, run in this test process on a runtime of its own (so it
/// outlives any one test), restartable.
pub struct OperatorHandle {
    pub stats: std::sync::Arc<operator::controller::Stats>,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    runtime: tokio::runtime::Runtime,
    pub activity_port: u16,
    /// Where its waker listens, on every address of this machine (the
    /// real node's pods reach it at the node's address).
    pub waker_port: u16,
    settings: operator::settings::Settings,
}

impl OperatorHandle {
    pub fn settings(&self) -> operator::settings::Settings {
        self.settings.clone()
    }

    /// Start (or start again) the operator.
    pub fn start(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stats = self.stats.clone();
        let settings = self.settings();
        let waker_port = self.waker_port;
        self.runtime.spawn(async move {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = kube::Client::try_default().await.expect("operator client");
            // The last start's waker may still be letting go of its port.
            let mut tries = 0;
            let waker_listener = loop {
                match tokio::net::TcpListener::bind(("0.0.0.0", waker_port)).await {
                    Ok(l) => break l,
                    Err(_) if tries < 50 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("the waker's port {waker_port}: {e}"),
                }
            };
            let (waker_stop, waker_stopped) = tokio::sync::oneshot::channel::<()>();
            operator::controller::run(
                client,
                settings,
                operator::controller::Tuning {
                    idle_check: Duration::from_secs(2),
                    ..Default::default()
                },
                stats,
                move |ctx, workspaces| {
                    let waker = operator::waker::Waker::new(ctx, workspaces);
                    tokio::spawn(waker.serve(waker_listener, async move {
                        let _ = waker_stopped.await;
                    }));
                },
                async move {
                    let _ = rx.await;
                },
            )
            .await;
            let _ = waker_stop.send(());
        });
        *self.stop.lock().unwrap() = Some(tx);
    }

    /// Stop it, as a crash or a rollout would.
    pub fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

/// The one operator of this test process (started on first use), for
/// workspaces on kwok's fake nodes: idle checks go to a local port.
pub fn operator_running() -> &'static OperatorHandle {
    static OP: std::sync::OnceLock<OperatorHandle> = std::sync::OnceLock::new();
    OP.get_or_init(|| {
        launch_operator(|port| operator::settings::Settings {
            activity_url: format!("http://127.0.0.1:{port}"),
            ..Default::default()
        })
    })
}

/// The label and taint of the test cluster's real node (hack/node.sh).
pub const REAL_NODE_KEY: &str = "kube-coder.dev/node";

/// The operator of this test process for workspaces on the real node:
/// their pods select and tolerate it; images are the ones `make test`
/// built into it (the defaults: `ghcr.io/kube-coder/workspace:<version>`).
pub fn operator_for_real_node() -> &'static OperatorHandle {
    static OP: std::sync::OnceLock<OperatorHandle> = std::sync::OnceLock::new();
    OP.get_or_init(|| launch_operator(|_| real_node_settings()))
}

/// The settings of [`operator_for_real_node`], for a test binary that
/// needs an operator of its own with some changed (one per binary: test
/// binaries run one at a time).
pub fn real_node_settings() -> operator::settings::Settings {
    operator::settings::Settings {
        node_selector: [(REAL_NODE_KEY.to_string(), "real".to_string())].into(),
        tolerations: vec![k8s_openapi::api::core::v1::Toleration {
            key: Some(REAL_NODE_KEY.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }],
        oauth2_proxy_image: format!("ghcr.io/kube-coder/oauth2-proxy:{}", oauth2_proxy_version()),
        ingress_namespace: INGRESS_NAMESPACE.into(),
        ingress_class: INGRESS_CLASS.into(),
        ..Default::default()
    }
}

/// The real node's ingress controller (Traefik, hack/node.sh): its
/// namespace, its class, and its Service's address, which this host reaches.
pub const INGRESS_NAMESPACE: &str = "kube-coder-ingress";
pub const INGRESS_CLASS: &str = "traefik";
pub const INGRESS_ADDR: &str = "10.96.0.80:80";

/// A workspace's dashboard login (user and password), as
/// `kube-coder token NAME --login` prints it.
pub async fn basic_login(name: &str) -> (String, String) {
    let (code, out, err) = kube_coder(&["token", name, "--login"], "").await;
    assert_eq!(code, 0, "{err}");
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    (field("user:"), field("password:"))
}

/// An HTTP client that sends requests for these host names to the ingress
/// controller, as DNS would send a browser's (`http://HOST/...`).
pub fn via_ingress(hosts: &[&str]) -> reqwest::Client {
    let addr: std::net::SocketAddr = INGRESS_ADDR.parse().expect("the ingress address");
    hosts
        .iter()
        .fold(reqwest::Client::builder(), |b, h| b.resolve(h, addr))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// The oauth2-proxy version hack/versions.env pins (the test image's tag).
pub fn oauth2_proxy_version() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/versions.env");
    let text = std::fs::read_to_string(&path).expect("read hack/versions.env");
    text.lines()
        .find_map(|l| l.strip_prefix("OAUTH2_PROXY_VERSION="))
        .expect("OAUTH2_PROXY_VERSION in hack/versions.env")
        .trim()
        .to_string()
}

/// Panics with what to do unless the test cluster has its real node, Ready.
pub async fn require_real_node(client: &kube::Client) -> String {
    use k8s_openapi::api::core::v1::Node;
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let list = nodes
        .list(&kube::api::ListParams::default().labels(&format!("{REAL_NODE_KEY}=real")))
        .await
        .expect("list nodes");
    let node = list.items.into_iter().next().unwrap_or_else(|| {
        panic!("the test cluster has no real node: hack/cluster up starts one as root once the images are built (PROFILE=debug images/build.sh; make test does both)")
    });
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    assert!(ready, "the real node is not Ready");
    node.metadata.name.unwrap_or_default()
}

/// The real node's object, as the API server has it.
async fn real_node(client: &kube::Client) -> k8s_openapi::api::core::v1::Node {
    let name = require_real_node(client).await;
    kube::Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get(&name)
        .await
        .expect("the real node")
}

/// The real node's kubelet port, as the node reports it.
pub async fn real_node_kubelet_port(client: &kube::Client) -> u16 {
    real_node(client)
        .await
        .status
        .and_then(|s| s.daemon_endpoints?.kubelet_endpoint)
        .map(|e| e.port as u16)
        .expect("the kubelet's port")
}

/// The API server's real port (KUBECONFIG's; pods see this one behind
/// the `kubernetes` Service).
pub async fn apiserver_port() -> u16 {
    kube::Config::infer()
        .await
        .expect("a kubeconfig")
        .cluster_url
        .port_u16()
        .expect("the API server's port in KUBECONFIG")
}

/// The real node's address (its InternalIP), where this host's listeners
/// are reached from its pods.
pub async fn real_node_address(client: &kube::Client) -> String {
    real_node(client)
        .await
        .status
        .and_then(|s| s.addresses)
        .and_then(|a| a.into_iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address)
        .expect("the node's address")
}

/// The chart's `kube-coder-waker` Service, leading to `operator`'s waker
/// in this test process at the node's address (where the real node's
/// pods, the ingress controller's among them, reach it).
pub async fn expose_waker(client: &kube::Client, operator: &OperatorHandle) {
    let (settings, port) = (operator.settings(), operator.waker_port);
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Patch, PatchParams};
    let node_ip = real_node_address(client).await;
    let ns = &settings.operator_namespace;
    let pp = PatchParams::apply("kube-coder-tests").force();
    kube::Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &pp,
            &Patch::Apply(
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            ),
        )
        .await
        .unwrap();
    kube::Api::<Service>::namespaced(client.clone(), ns)
        .patch(
            "kube-coder-waker",
            &pp,
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kube-coder-waker"},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}]},
            })),
        )
        .await
        .unwrap();
    kube::Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .patch(
            "kube-coder-waker-local",
            &pp,
            &Patch::Apply(serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kube-coder-waker-local",
                             "labels": {"kubernetes.io/service-name": "kube-coder-waker"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [node_ip], "conditions": {"ready": true}}],
                "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            })),
        )
        .await
        .unwrap();
}

/// An operator in this process with the settings `settings` makes (given
/// a free local port, for idle checks).
pub fn launch_operator(
    settings: impl FnOnce(u16) -> operator::settings::Settings,
) -> OperatorHandle {
    {
        // KUBE_CODER_LOG=debug shows the operator's log in test output.
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("KUBE_CODER_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("operator runtime");
        let free_port = |addr: &str| {
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        };
        let port = free_port("127.0.0.1:0");
        let handle = OperatorHandle {
            stats: Default::default(),
            stop: std::sync::Mutex::new(None),
            runtime,
            activity_port: port,
            waker_port: free_port("0.0.0.0:0"),
            settings: settings(port),
        };
        handle.start();
        handle
    }
}

/// A Workspace body for tests: fake-node friendly storage, and `extra`
/// merged into the spec.
pub fn workspace_json(name: &str, extra: serde_json::Value) -> operator::crd::Workspace {
    let mut spec = serde_json::json!({
        "owner": {"name": name},
        "storage": {"storageClassName": STORAGE_CLASS, "size": "1Gi"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let spec: operator::crd::WorkspaceSpec = serde_json::from_value(spec).expect("test spec");
    operator::crd::Workspace::new(name, spec)
}

/// A short workspace name no other test run uses (names are at most 40).
pub fn ws_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{:x}{:x}",
        std::process::id() % 4096,
        nanos % 0xfffff
    )
}

/// The `kube-coder` binary of this workspace (built by `make test` before
/// the cluster tests).
pub fn kube_coder_bin() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let bin = target.join("debug/kube-coder");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p kube-coder` first (make test does)",
        bin.display()
    );
    bin
}

/// Run `kube-coder ARGS` with `stdin`; returns (exit code, stdout, stderr).
pub async fn kube_coder(args: &[&str], stdin: &str) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(kube_coder_bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kube-coder");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes()).await;
    }
    let out = child.wait_with_output().await.expect("kube-coder output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Provide a volume for `name`, then create its Workspace (test defaults
/// plus `extra`).
pub async fn create_workspace(
    client: &kube::Client,
    api: &kube::Api<operator::crd::Workspace>,
    name: &str,
    extra: serde_json::Value,
) {
    provide_volume(client, name).await;
    api.create(
        &kube::api::PostParams::default(),
        &workspace_json(name, extra),
    )
    .await
    .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

/// Wait until `name` reports `phase` for its current generation.
pub async fn wait_phase(
    api: &kube::Api<operator::crd::Workspace>,
    name: &str,
    phase: operator::crd::Phase,
    secs: u64,
) -> operator::crd::Workspace {
    eventually(&format!("{name} to be {phase}"), secs, || async {
        let ws = api.get(name).await.ok()?;
        let s = ws.status.as_ref()?;
        (s.phase == Some(phase) && s.observed_generation == ws.metadata.generation).then_some(ws)
    })
    .await
}

/// Wait until the namespace `ws-<name>` is gone.
pub async fn wait_namespace_gone(client: &kube::Client, name: &str, secs: u64) {
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    let ns = format!("ws-{name}");
    eventually(&format!("namespace {ns} to be deleted"), secs, || async {
        namespaces.get_opt(&ns).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// The Helm binary `make test` built (hack/tools-env names it).
pub fn helm() -> std::path::PathBuf {
    let path = std::env::var_os("KUBE_CODER_HELM")
        .expect("KUBE_CODER_HELM is not set: run `make test`, or `eval $(hack/cluster env)`");
    std::path::PathBuf::from(path)
}

/// The chart of this repository.
pub fn chart() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/kube-coder")
}

/// Run helm; panics with its output when it fails; returns its stdout.
pub fn run_helm(args: &[&str]) -> String {
    let out = std::process::Command::new(helm())
        .args(args)
        .output()
        .expect("run helm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helm {args:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `http://<ClusterIP>:<port>` of a workspace's Service: this host reaches
/// it through kube-proxy's rules on the real node, as a pod would.
pub async fn service_url(client: &kube::Client, ns: &str, port: u16) -> String {
    use k8s_openapi::api::core::v1::Service;
    let svc = kube::Api::<Service>::namespaced(client.clone(), ns)
        .get("workspace")
        .await
        .expect("the workspace Service");
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");
    format!("http://{ip}:{port}")
}

/// GET `url` with the token; the JSON answer.
pub async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> serde_json::Value {
    let r = http.get(url).bearer_auth(token).send().await.unwrap();
    r.json().await.unwrap()
}

/// Runs `script` as a shell task; returns its output as the stream gave it.
pub async fn run_task(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    script: &str,
) -> (String, serde_json::Value) {
    run_task_within(http, api, token, script, 60).await
}

/// `run_task`, for a script that may take up to `seconds`.
pub async fn run_task_within(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    script: &str,
    seconds: u64,
) -> (String, serde_json::Value) {
    let task: serde_json::Value = http
        .post(format!("{api}/api/tasks"))
        .bearer_auth(token)
        .json(
            &serde_json::json!({"assistant": "shell", "prompt": script, "name": "real-node-check"}),
        )
        .send()
        .await
        .expect("create a task")
        .error_for_status()
        .expect("the task is accepted")
        .json()
        .await
        .unwrap();
    let id = task["id"].as_str().expect("task id").to_string();
    // The output, pushed as it comes, until the stream's `end`.
    let mut stream = http
        .get(format!("{api}/api/tasks/{id}/stream"))
        .bearer_auth(token)
        .send()
        .await
        .expect("open the task stream")
        .error_for_status()
        .unwrap();
    let mut events = String::new();
    let mut output = String::new();
    let read = async {
        while let Some(chunk) = stream.chunk().await.expect("read the stream") {
            events.push_str(&String::from_utf8_lossy(&chunk));
            if events.contains("event: end") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(seconds), read)
        .await
        .unwrap_or_else(|_| {
            panic!("the task did not end within {seconds} s; stream so far:\n{events}")
        });
    for block in events.split("\n\n") {
        if block.lines().any(|l| l == "event: output") {
            for data in block.lines().filter_map(|l| l.strip_prefix("data: ")) {
                let v: serde_json::Value = serde_json::from_str(data).unwrap();
                output.push_str(v["data"].as_str().unwrap_or_default());
            }
        }
    }
    let task = get_json(http, &format!("{api}/api/tasks/{id}"), token).await;
    (output, task)
}

/// Namespace `name`, made if missing (server-side apply, so a test may
/// ask for one another test made).
pub async fn apply_namespace(client: &kube::Client, name: &str) {
    let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": name}});
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(
            name,
            &kube::api::PatchParams::apply("kube-coder-tests"),
            &kube::api::Patch::Apply(namespace),
        )
        .await
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
}

/// A tar of `files` (name, content), as a build's context is sent.
pub fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, content.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap()
}

/// The lines `answer-NAME: …` of a task's output, by name (a script
/// prints each finding it reports so).
pub fn answers(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            let k = k.strip_prefix("answer-")?;
            Some((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// A CA and a server certificate it signed for `ip`, made with openssl:
/// `ca.crt`, `tls.crt` and `tls.key` in the directory returned.
pub fn private_ca(ip: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let script = format!(
        "set -e; cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-sso-ca -keyout ca.key -out ca.crt
openssl req -newkey rsa:2048 -nodes -subj /CN={ip} -keyout tls.key -out tls.csr
printf 'basicConstraints=CA:FALSE\\nsubjectAltName=IP:{ip}\\nextendedKeyUsage=serverAuth\\n' > ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext -out tls.crt"
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// `git` as the test's own user would run it, in `dir`; panics with its
/// stderr when it fails.
pub fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bare repository at `bare` with one commit: a README holding `readme`.
pub fn bare_repository(bare: &std::path::Path, readme: &str) {
    let src = tempfile::tempdir().expect("a scratch directory");
    std::fs::write(src.path().join("README"), readme).expect("write the README");
    git(src.path(), &["init", "-q", "-b", "main"]);
    git(src.path(), &["add", "README"]);
    git(src.path(), &["commit", "-q", "-m", "first"]);
    let to = bare.to_str().expect("a UTF-8 path");
    git(src.path(), &["clone", "-q", "--bare", ".", to]);
}

/// Lines of a task script that look for `value` in every file (but
/// /proc, /sys and /dev) and every process environment of the workspace
/// container: `answer-NAME-files:` lists the files holding it (the first
/// three), `answer-NAME-environ:` counts the environment entries. The
/// value never appears in the script as itself (the task's prompt file
/// would hold it); the script writes it to a control file first, so a
/// search that works answers exactly that file (`SECRET_CONTROL`).
/// The value goes to grep after `-e`: a random secret may begin with `-`.
pub fn secret_search(name: &str, value: &str) -> String {
    let escaped: String = value.bytes().map(|b| format!("\\x{b:02x}")).collect();
    format!(
        "v=$(printf '{escaped}')\n\
         printf '%s' \"$v\" > {SECRET_CONTROL}\n\
         echo \"answer-{name}-files: $(grep -rlsF --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e \"$v\" / | head -3 | tr '\\n' ' ')\"\n\
         echo \"answer-{name}-environ: $(cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -cF -e \"$v\")\"\n\
         rm -f {SECRET_CONTROL}\n"
    )
}

/// Asserts what `secret_search(name, …)` answered: the value in the
/// control file only, in no process environment.
pub fn assert_secret_absent(answers: &BTreeMap<String, String>, name: &str, output: &str) {
    assert_eq!(
        answers.get(&format!("{name}-files")).map(String::as_str),
        Some(SECRET_CONTROL),
        "{name} is in a file of the workspace container (or the search failed):\n{output}"
    );
    assert_eq!(
        answers.get(&format!("{name}-environ")).map(String::as_str),
        Some("0"),
        "{name} is in a process environment of the workspace container:\n{output}"
    );
}

/// The answer `name` of a script's `answers`, or a panic showing the
/// whole output.
pub fn answer_of(answers: &BTreeMap<String, String>, name: &str, output: &str) -> String {
    answers
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no answer {name} in\n{output}"))
}

/// The control file of `secret_search`, the one place its value may be.
pub const SECRET_CONTROL: &str = "/tmp/kube-coder-secret-search-control";

/// Whether `user` (a ServiceAccount of namespace `ns`, with its groups)
/// may do what `attrs` says, as the API server's authorizer answers.
pub async fn review(
    client: &kube::Client,
    user: &str,
    ns: &str,
    attrs: authz::ResourceAttributes,
) -> bool {
    let sar = authz::SubjectAccessReview {
        spec: authz::SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(attrs),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: kube::Api<authz::SubjectAccessReview> = kube::Api::all(client.clone());
    api.create(&kube::api::PostParams::default(), &sar)
        .await
        .expect("a SubjectAccessReview")
        .status
        .expect("a review's answer")
        .allowed
}

/// Whether the workspace identity of namespace `ws_ns` may `verb` the
/// Secret `name` (None: every one) of namespace `ns`.
pub async fn workspace_may_secret(
    client: &kube::Client,
    ws_ns: &str,
    verb: &str,
    ns: &str,
    name: Option<&str>,
) -> bool {
    let sa = format!("system:serviceaccount:{ws_ns}:workspace");
    review(client, &sa, ws_ns, attrs(ns, verb, "secrets", name)).await
}

/// The attributes of `verb` on `resource` (`name`, or every one) in `ns`.
pub fn attrs(
    ns: &str,
    verb: &str,
    resource: &str,
    name: Option<&str>,
) -> authz::ResourceAttributes {
    authz::ResourceAttributes {
        namespace: Some(ns.into()),
        verb: Some(verb.into()),
        resource: Some(resource.into()),
        name: name.map(str::to_string),
        ..Default::default()
    }
}

/// A bash script (the workspace image's) making one TCP connection attempt
/// per target, all at once, each given 3 s; it prints `probe NAME
/// open|closed`. A dropped SYN and a refused one both read as closed, so a
/// test that expects a refusal also shows the target open without the
/// policy (network_policy.rs).
pub fn probe_script(targets: &[(String, String, u16)]) -> String {
    let mut s = String::from(
        "probe() { if timeout 3 bash -c 'exec 3<>\"/dev/tcp/$0/$1\"' \"$2\" \"$3\" 2>/dev/null; \
         then echo \"probe $1 open\"; else echo \"probe $1 closed\"; fi; }\n",
    );
    for (name, host, port) in targets {
        s.push_str(&format!("probe {name} {host} {port} &\n"));
    }
    s.push_str("wait\n");
    s
}

/// `probe NAME open|closed` lines → NAME → open.
pub fn probe_results(output: &str) -> BTreeMap<String, bool> {
    output
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.as_slice() {
                ["probe", name, "open"] => Some((name.to_string(), true)),
                ["probe", name, "closed"] => Some((name.to_string(), false)),
                _ => None,
            }
        })
        .collect()
}

/// A probe target: its name in the answers, host, port.
pub fn target(name: &str, host: impl ToString, port: u16) -> (String, String, u16) {
    (name.to_string(), host.to_string(), port)
}

/// A Workspace on the real node (small resources, a 1Gi home, and
/// `extra` merged into its spec), Ready and answering through its
/// Service; its API URL and token.
pub async fn real_node_workspace(
    client: &kube::Client,
    name: &str,
    extra: serde_json::Value,
) -> (String, String) {
    let mut spec = serde_json::json!({
        "owner": {"name": name},
        "storage": {"size": "1Gi"},
        // The node has two cores; other tests' workspaces share them.
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    });
    if let (Some(spec), serde_json::Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    let spec: operator::crd::WorkspaceSpec =
        serde_json::from_value(spec).expect("a valid Workspace spec");
    let workspaces: kube::Api<operator::crd::Workspace> = kube::Api::all(client.clone());
    workspaces
        .create(
            &kube::api::PostParams::default(),
            &operator::crd::Workspace::new(name, spec),
        )
        .await
        .unwrap();
    eventually(&format!("workspace {name} to be Ready"), 180, || async {
        let ws = workspaces.get(name).await.ok()?;
        (ws.status?.phase == Some(operator::crd::Phase::Ready)).then_some(())
    })
    .await;
    let (code, token, err) = kube_coder(&["token", name], "").await;
    assert_eq!(code, 0, "{err}");
    let api = service_url(client, &format!("ws-{name}"), 6081).await;
    // kube-proxy writes a new Service's rules within moments of its endpoints.
    eventually(
        &format!("{name}'s API to answer through its Service"),
        30,
        || async {
            let r = reqwest::get(format!("{api}/readyz")).await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    (api, token.trim().to_string())
}
