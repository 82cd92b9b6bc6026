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
