//! A registry (distribution/v3, built from the Go module proxy by
//! hack/build.sh) that lets in one user by password, on a chosen address
//! of this machine: 127.0.0.1 for the node's containerd alone, the node's
//! address for pods too.

use std::process::{Child, Command};

use crate::eventually;

/// The registry, stopped when dropped.
pub struct Registry {
    /// `host:port`.
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registry on `host` letting in the user of `htpasswd` (a bcrypt line)
/// only.
pub async fn start_registry(host: &str, htpasswd: &str) -> Registry {
    let binary = std::env::var("KUBE_CODER_REGISTRY").unwrap_or_else(|_| {
        panic!("KUBE_CODER_REGISTRY is not set: run `make test`, or `eval \"$(hack/cluster env)\"`")
    });
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let addr = format!("{host}:{port}");
    std::fs::write(dir.path().join("htpasswd"), format!("{htpasswd}\n")).unwrap();
    let config = format!(
        "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\n\
         storage: {{filesystem: {{rootdirectory: {root}}}}}\n\
         http: {{addr: \"{addr}\"}}\n\
         auth: {{htpasswd: {{realm: kube-coder-tests, path: {root}/htpasswd}}}}\n",
        root = dir.path().display()
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let child = Command::new(binary)
        .args([
            "serve",
            &dir.path().join("config.yml").display().to_string(),
        ])
        // It would send traces to a collector on localhost otherwise.
        .env("OTEL_TRACES_EXPORTER", "none")
        // Its log (a 404 for each blob a push checks is logged as an
        // error) is in the test's directory, not in the test's output.
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
        .spawn()
        .expect("start the registry");
    let registry = Registry {
        addr,
        child,
        _dir: dir,
    };
    let url = format!("http://{}/v2/", registry.addr);
    eventually("the registry to answer", 30, || async {
        let r = reqwest::get(&url).await.ok()?;
        // Without a password: 401, asking for one.
        (r.status() == 401).then_some(())
    })
    .await;
    registry
}

/// `ctr` on the real node's containerd, in the kubelet's namespace: its
/// output. Panics with ctr's message when it fails.
pub fn node_ctr(args: &[&str]) -> String {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run `make test`, or `eval \"$(hack/cluster env)\"`")
        })
    };
    let kubeconfig = std::path::PathBuf::from(var("KUBECONFIG"));
    let socket = kubeconfig
        .parent()
        .expect("the cluster directory")
        .join("node/containerd.sock");
    let out = Command::new(var("KUBE_CODER_CTR"))
        .arg("--address")
        .arg(&socket)
        .args(["-n", "k8s.io"])
        .args(args)
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// While held, the real node's containerd (so the kubelet) pulls from
/// `registry` over plain HTTP (its `registry-hosts` directory).
pub struct NodePulls(std::path::PathBuf);

impl Drop for NodePulls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Registry {
    pub fn node_pulls(&self) -> NodePulls {
        let kubeconfig = std::path::PathBuf::from(std::env::var("KUBECONFIG").expect("KUBECONFIG"));
        let hosts = kubeconfig
            .parent()
            .expect("the cluster directory")
            .join("node/registry-hosts")
            .join(&self.addr);
        std::fs::create_dir_all(&hosts).unwrap();
        std::fs::write(
            hosts.join("hosts.toml"),
            format!(
                "server = \"http://{0}\"\n[host.\"http://{0}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                self.addr
            ),
        )
        .unwrap();
        NodePulls(hosts)
    }

    /// The digest the registry holds `repository:tag` under, asked as
    /// `user` (None: no such manifest, or refused).
    pub async fn digest_of(
        &self,
        repository: &str,
        tag: &str,
        user: &str,
        password: &str,
    ) -> Option<String> {
        let r = reqwest::Client::new()
            .head(format!("http://{}/v2/{repository}/manifests/{tag}", self.addr))
            .basic_auth(user, Some(password))
            .header(
                "accept",
                "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
            )
            .send()
            .await
            .ok()?;
        r.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// A `.dockerconfigjson` that logs `user` in with `password` here.
    pub fn docker_config(&self, user: &str, password: &str) -> String {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        serde_json::json!({"auths": {self.addr.clone(): {"auth": auth}}}).to_string()
    }

    /// Copies the node's image `image` here as `reference` (pushed by the
    /// node's containerd with `user`'s password), and forgets the copy's
    /// name on the node so that a pull of it must come from here.
    pub fn push_from_node(&self, image: &str, reference: &str, user: &str, password: &str) {
        node_ctr(&["images", "tag", "--force", image, reference]);
        node_ctr(&[
            "images",
            "push",
            "--plain-http",
            "--user",
            &format!("{user}:{password}"),
            reference,
        ]);
        node_ctr(&["images", "rm", reference]);
    }
}

/// A `kubernetes.io/dockerconfigjson` Secret `name` in `ns` holding
/// `config` (as `Registry::docker_config` makes it), applied.
pub async fn apply_docker_secret(client: &kube::Client, ns: &str, name: &str, config: &str) {
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config}});
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &kube::api::PatchParams::apply("kube-coder-tests"),
            &kube::api::Patch::Apply(secret),
        )
        .await
        .unwrap_or_else(|e| panic!("secret {ns}/{name}: {e}"));
}

/// Runs `image` to its end as pod `app` of `ns` on the real node (as user
/// 1000, restricted), pulled with the Secret `pull_secret`: its phase and
/// log.
pub async fn run_image(
    client: &kube::Client,
    ns: &str,
    image: &str,
    command: &[&str],
    pull_secret: &str,
) -> (String, String) {
    use k8s_openapi::api::core::v1::Pod;
    let settings = crate::real_node_settings();
    let run: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "app"},
        "spec": {
            "restartPolicy": "Never",
            "imagePullSecrets": [{"name": pull_secret}],
            "nodeSelector": settings.node_selector,
            "tolerations": settings.tolerations,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app", "image": image, "command": command,
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }))
    .unwrap();
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
    pods.create(&Default::default(), &run).await.unwrap();
    let phase = eventually(&format!("{image} to run"), 180, || async {
        let phase = pods.get("app").await.ok()?.status?.phase?;
        (phase == "Succeeded" || phase == "Failed").then_some(phase)
    })
    .await;
    let logs = pods.logs("app", &Default::default()).await.unwrap();
    (phase, logs)
}

/// The reference of an image `images/build.sh` built (`target/images/NAME.ref`),
/// as the node imported it.
pub fn built_image(name: &str) -> String {
    let refs = format!(
        "{}/../../target/images/{name}.ref",
        env!("CARGO_MANIFEST_DIR")
    );
    let line = std::fs::read_to_string(&refs)
        .unwrap_or_else(|e| panic!("{refs}: {e}: run `PROFILE=debug images/build.sh {name}`"));
    line.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
