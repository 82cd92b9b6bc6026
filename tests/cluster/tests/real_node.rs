//! A workspace on the test cluster's real node (kubelet, containerd, runc):
//! `kube-coder user add` yields a pod that passes its real probes, answers
//! through its Service, runs tasks in its tmux, keeps files, is hardened as
//! seen from inside, is reached without an ingress by `kube-coder connect`,
//! and keeps its home across stop and start until a purge; an oauth2
//! workspace's login goes through the real ingress controller and its
//! sidecar, run from the test image.
//! Starts: the control plane with its real node, the operator in-process
//! (placing workspaces on the real node), the `kube-coder` binary; the
//! workspace itself is the image `make test` built, running in a pod.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube_coder_cluster_tests::{
    answers, assert_secret_absent, basic_login, client, eventually, eventually_empty, expose_waker,
    get_json, install_crd, kube_coder, kube_coder_bin, operator_for_real_node, private_ca,
    real_node_address, require_real_node, run_task, secret_search, service_url, via_ingress,
    wait_namespace_gone, ws_name, INGRESS_ADDR,
};
use operator::crd::Workspace;
use serde_json::{json, Value};

/// A running `kube-coder connect` and the URLs it printed.
struct Connect {
    child: tokio::process::Child,
    dashboard: String,
    api: String,
}

impl Connect {
    async fn start(name: &str) -> Connect {
        use tokio::io::AsyncBufReadExt;
        let port = free_port_pair();
        let mut child = tokio::process::Command::new(kube_coder_bin())
            .args(["connect", name, "--port", &port.to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run kube-coder connect");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut dashboard, mut api) = (String::new(), String::new());
        while api.is_empty() {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("connect printed its URLs in time")
                .unwrap()
                .expect("connect exited before printing its URLs");
            let url = |l: &str| l.trim().trim_end_matches('/').to_string();
            if let Some(u) = line.trim().strip_prefix("dashboard:") {
                dashboard = url(u);
            } else if let Some(u) = line.trim().strip_prefix("api:") {
                api = url(u);
            }
        }
        assert_eq!(dashboard, format!("http://127.0.0.1:{port}"));
        assert_eq!(api, format!("http://127.0.0.1:{}", port + 1));
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Connect {
            child,
            dashboard,
            api,
        }
    }

    /// Ctrl-C: it ends, successfully.
    async fn interrupt(&mut self) {
        let pid = self.child.id().expect("connect is running").to_string();
        let sent = tokio::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("connect ended on Ctrl-C")
            .unwrap();
        assert!(status.success(), "connect ended with {status}");
    }
}

/// Two consecutive free local ports; returns the first.
fn free_port_pair() -> u16 {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65535 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// A kubeconfig for a fresh ServiceAccount that may do nothing, and its name.
async fn kubeconfig_without_rights(client: &kube::Client) -> (tempfile::NamedTempFile, String) {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa = ws_name("nobody");
    accounts
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": sa}})).unwrap(),
        )
        .await
        .unwrap();
    let request: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap();
    let token: TokenRequest = accounts
        .create_subresource("token", &sa, &kube::api::PostParams::default(), &request)
        .await
        .unwrap();
    let token = token.status.and_then(|s| s.token).expect("a token");
    let admin: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(std::env::var("KUBECONFIG").unwrap()).unwrap(),
    )
    .unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: nobody\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: nobody}}\ncurrent-context: test\n",
        cluster["server"].as_str().unwrap(),
        cluster["certificate-authority"].as_str().unwrap()
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    (file, sa)
}

#[tokio::test]
async fn a_user_added_with_the_cli_gets_a_working_hardened_workspace_whose_home_survives() {
    let client = client().await;
    let node = require_real_node(&client).await;
    install_crd(&client).await;
    operator_for_real_node();
    let name = ws_name("real");
    let ns = format!("ws-{name}");
    let http = reqwest::Client::new();

    // Default storage class: local-path provisions the home for real.
    let (code, out, err) = kube_coder(
        &["user", "add", &name, "--storage", "1Gi", "--timeout", "180"],
        "",
    )
    .await;
    assert_eq!(code, 0, "user add failed:\n{out}\n{err}");
    assert!(out.contains("Ready"), "{out}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(
        pod.spec.as_ref().unwrap().node_name.as_deref(),
        Some(node.as_str())
    );
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get("home")
        .await
        .unwrap();
    let volume = claim
        .spec
        .as_ref()
        .unwrap()
        .volume_name
        .clone()
        .expect("the home is bound");
    assert_eq!(
        claim.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("local-path")
    );

    // The dashboard through the Service: a login, then the app.
    let dashboard = service_url(&client, &ns, 6080).await;
    // kube-proxy writes a new Service's rules within moments of its endpoints.
    let r = eventually(
        "the dashboard to answer through its Service",
        30,
        || async { http.get(format!("{dashboard}/")).send().await.ok() },
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let (user, password) = basic_login(&name).await;
    let r = http
        .get(format!("{dashboard}/"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text().await.unwrap().contains("<html"),
        "the dashboard page"
    );

    // A task in the pod's tmux, its output streamed back; it looks at the
    // container it runs in.
    let (code, token, _) = kube_coder(&["token", &name], "").await;
    assert_eq!(code, 0);
    let token = token.trim();
    let api = service_url(&client, &ns, 6081).await;
    let script = "echo uid=$(id -u); grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/self/status; \
        if [ -e /var/run/secrets/kubernetes.io/serviceaccount/token ]; then echo sa-token=present; else echo sa-token=absent; fi; \
        if touch /usr/probe 2>/dev/null; then echo root=writable; else echo root=read-only; fi; \
        touch /tmp/probe && echo tmp=writable; touch ~/probe && echo home=writable; rm -f /tmp/probe ~/probe";
    let (output, task) = run_task(&http, &api, token, script).await;
    assert_eq!(task["state"], "succeeded", "{task}\n{output}");
    assert_eq!(task["workdir"], "/home/dev", "the home is the image user's");
    for want in [
        "uid=1000",
        "sa-token=absent",
        "root=read-only",
        "tmp=writable",
        "home=writable",
    ] {
        assert!(
            output.contains(want),
            "{want} not in the task's output:\n{output}"
        );
    }
    let status = |k: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {k} in\n{output}"))
    };
    assert_eq!(status("NoNewPrivs:"), "1");
    assert_eq!(status("CapEff:"), "0000000000000000");
    assert_eq!(status("Seccomp:"), "2", "a seccomp filter is on");
    let task_id = task["id"].as_str().unwrap().to_string();

    // A file, byte for byte.
    let body: Vec<u8> = (0..1_048_576u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let r = http
        .put(format!("{api}/api/files/content?path=kept.bin"))
        .bearer_auth(token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let download = |api: String| {
        let http = http.clone();
        let token = token.to_string();
        async move {
            http.get(format!("{api}/api/files/content?path=kept.bin"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    assert!(
        download(api.clone()).await[..] == body[..],
        "the file came back changed"
    );

    // Without an ingress: `kube-coder connect` through the API server.
    let mut connect = Connect::start(&name).await;
    let r = http
        .get(format!("{}/readyz", connect.api))
        .send()
        .await
        .expect("the api through connect");
    assert_eq!(r.status(), 200);
    assert!(
        download(connect.api.clone()).await[..] == body[..],
        "a download through connect came back changed"
    );
    let r = http
        .get(format!("{}/", connect.dashboard))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the dashboard through connect asks for the login"
    );
    // Refused, with the right named, to whoever may not read the workspace
    // or may not port-forward to it.
    let (nobody, account) = kubeconfig_without_rights(&client).await;
    let refused = || async {
        let out = tokio::process::Command::new(kube_coder_bin())
            .args(["connect", &name, "--port", "0"])
            .env("KUBECONFIG", nobody.path())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused().await;
    assert!(
        err.contains("may not read workspace") && err.contains("get workspaces.kube-coder.dev"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let pp = kube::api::PatchParams::apply("kube-coder-tests");
    let grant = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": account},
        "rules": [{"apiGroups": ["kube-coder.dev"], "resources": ["workspaces"], "verbs": ["get"]}],
    });
    Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client.clone())
        .patch(&account, &pp, &kube::api::Patch::Apply(grant))
        .await
        .unwrap();
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "default"}],
    });
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
        .patch(&account, &pp, &kube::api::Patch::Apply(binding))
        .await
        .unwrap();
    let err = eventually("the grant to take effect", 30, || async {
        let err = refused().await;
        (!err.contains("may not read")).then_some(err)
    })
    .await;
    assert!(err.contains("pods/portforward"), "{err}");
    connect.interrupt().await;

    // Stop: the pod goes, the home stays. Start: both are back.
    let (code, out, err) = kube_coder(&["user", "stop", &name], "").await;
    assert_eq!(code, 0, "{out}{err}");
    eventually_empty(&pods, "the pod to be gone", 90).await;
    assert!(Api::<PersistentVolume>::all(client.clone())
        .get_opt(&volume)
        .await
        .unwrap()
        .is_some());
    let (code, _, err) = kube_coder(&["connect", &name], "").await;
    assert_eq!(code, 1);
    assert!(
        err.contains("is stopped") && err.contains(&format!("kube-coder user start {name}")),
        "{err}"
    );
    let (code, out, err) = kube_coder(&["user", "start", &name, "--timeout", "180"], "").await;
    assert_eq!(code, 0, "{out}{err}");
    let api = service_url(&client, &ns, 6081).await;
    eventually("the api to answer after the start", 30, || async {
        let r = http.get(format!("{api}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    assert!(
        download(api.clone()).await[..] == body[..],
        "the file did not survive a restart"
    );
    let tasks = get_json(&http, &format!("{api}/api/tasks"), token).await;
    assert!(
        tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == task_id.as_str()),
        "the task history did not survive a restart: {tasks}"
    );

    // Purge: the workspace, its namespace and its volume are gone.
    let (code, out, err) =
        kube_coder(&["user", "delete", &name, "--purge"], &format!("{name}\n")).await;
    assert_eq!(code, 0, "{out}{err}");
    wait_namespace_gone(&client, &name, 120).await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    eventually("the home volume to be removed", 120, || async {
        volumes.get_opt(&volume).await.ok()?.is_none().then_some(())
    })
    .await;
    let workspaces: Api<Workspace> = Api::all(client.clone());
    assert!(workspaces.get_opt(&name).await.unwrap().is_none());
}

/// The local OpenID Connect provider, listening where the real node's
/// pods reach it (the node's address), over HTTPS with a certificate of a
/// private CA of its own.
struct Oidc {
    _child: tokio::process::Child,
    _pki: tempfile::TempDir,
    issuer: String,
    client_id: String,
    client_secret: String,
    control: String,
    ca_pem: String,
}

impl Oidc {
    /// Makes `user`@example.com the next to log in at the provider.
    async fn queue_login(&self, user: &str) {
        let r = reqwest::Client::new()
            .post(format!(
                "{}/queue?email={user}@example.com&username={user}",
                self.control
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}

async fn start_oidc(node_ip: &str) -> Oidc {
    use tokio::io::AsyncBufReadExt;
    let tool = std::env::var_os("KUBE_CODER_MOCKOIDC")
        .expect("KUBE_CODER_MOCKOIDC is not set: run `make test`, or `eval \"$(hack/tools-env)\"`");
    let pki = private_ca(node_ip);
    let mut child = tokio::process::Command::new(tool)
        .env("MOCKOIDC_ADDR", format!("{node_ip}:0"))
        .env("MOCKOIDC_CERT", pki.path().join("tls.crt"))
        .env("MOCKOIDC_KEY", pki.path().join("tls.key"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start mockoidc");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("mockoidc did not start")
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    Oidc {
        issuer: s("issuer"),
        client_id: s("client_id"),
        client_secret: s("client_secret"),
        control: s("control"),
        ca_pem: std::fs::read_to_string(pki.path().join("ca.crt")).unwrap(),
        _child: child,
        _pki: pki,
    }
}

/// A browser reaching the workspace's host through the real ingress
/// controller (its name resolved to the controller's Service, as DNS
/// would), behind the TLS a production ingress would terminate: follows
/// the login redirects, keeps the proxy's cookies (they are `Secure`, this
/// is plain HTTP) and tells the proxy the scheme was https.
/// `jar` holds the proxy's cookies, kept across calls.
async fn browse(
    proxy: &str,
    path: &str,
    provider_ca: &str,
    cookies: &mut std::collections::BTreeMap<String, String>,
) -> reqwest::Response {
    let proxy_host = reqwest::Url::parse(proxy).unwrap().authority().to_string();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&proxy_host, INGRESS_ADDR.parse().unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(provider_ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let mut url = format!("{proxy}{path}");
    for _ in 0..10 {
        let mut req = http.get(&url);
        let to_proxy = url.starts_with(proxy);
        if to_proxy {
            req = req.header("x-forwarded-proto", "https");
            if !cookies.is_empty() {
                let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
                req = req.header("cookie", jar.join("; "));
            }
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        if to_proxy {
            for c in r.headers().get_all("set-cookie") {
                let pair = c.to_str().unwrap().split(';').next().unwrap_or_default();
                if let Some((k, v)) = pair.split_once('=') {
                    cookies.insert(k.trim().to_string(), v.to_string());
                }
            }
        }
        if !r.status().is_redirection() {
            return r;
        }
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let next = reqwest::Url::parse(&url).unwrap().join(&location).unwrap();
        // The ingress's TLS is not here: what it would decrypt goes in plain.
        url = if next.authority() == proxy_host {
            next.as_str().replacen("https://", "http://", 1)
        } else {
            next.to_string()
        };
    }
    panic!("more than 10 redirects from {proxy}{path}");
}

#[tokio::test]
async fn oauth2_workspaces_log_in_through_the_sidecar_from_its_image() {
    use k8s_openapi::api::core::v1::Secret;
    let client = client().await;
    let node_ip = real_node_address(&client).await;
    install_crd(&client).await;
    let operator = operator_for_real_node();
    let oidc = start_oidc(&node_ip).await;

    // The OAuth client, where the operator copies it from.
    let settings = operator.settings();
    let pp = kube::api::PatchParams::apply("kube-coder-tests");
    kube_coder_cluster_tests::apply_namespace(&client, &settings.operator_namespace).await;
    let name = ws_name("sso");
    let client_secret = format!("{name}-oidc");
    Api::<Secret>::namespaced(client.clone(), &settings.operator_namespace)
        .patch(
            &client_secret,
            &pp,
            &kube::api::Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": client_secret},
                "stringData": {"client-id": oidc.client_id, "client-secret": oidc.client_secret},
            })),
        )
        .await
        .unwrap();
    // The provider's certificate comes from a private CA, which the proxy
    // is told to trust.
    let ca_secret = format!("{name}-oidc-ca");
    Api::<Secret>::namespaced(client.clone(), &settings.operator_namespace)
        .patch(
            &ca_secret,
            &pp,
            &kube::api::Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": ca_secret},
                "stringData": {"ca.crt": oidc.ca_pem},
            })),
        )
        .await
        .unwrap();
    let spec: operator::crd::WorkspaceSpec = serde_json::from_value(json!({
        "owner": {"name": name, "email": "alice@example.com"},
        "ingress": {"host": format!("{name}.ws.test")},
        "storage": {"size": "1Gi"},
        // The node has two cores; other tests' workspaces share them.
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "auth": {"type": "oauth2", "oauth2": {
            "provider": "oidc", "issuerUrl": oidc.issuer, "clientSecretRef": client_secret,
            "providerCASecretRef": ca_secret,
        }},
        // The provider listens on the node's own (private) address, which
        // the egress policy refuses unless it is allowed by name: as an
        // in-house identity provider on a private network would be.
        "network": {"egress": {"allowCIDRs": [format!("{node_ip}/32")]}},
    }))
    .unwrap();
    let workspaces: Api<Workspace> = Api::all(client.clone());
    workspaces
        .create(
            &kube::api::PostParams::default(),
            &Workspace::new(&name, spec),
        )
        .await
        .unwrap();
    let ns = format!("ws-{name}");
    eventually("the oauth2 workspace to be Ready", 180, || async {
        let ws = workspaces.get(&name).await.ok()?;
        (ws.status?.phase == Some(operator::crd::Phase::Ready)).then_some(())
    })
    .await;

    // The sidecar runs from the test image, Ready beside the server.
    let pod = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let sidecar = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == "oauth2-proxy").cloned())
        .expect("an oauth2-proxy container");
    assert!(sidecar.ready, "the sidecar is not ready");
    assert_eq!(sidecar.image, settings.oauth2_proxy_image);

    // Alice logs in through the ingress and the proxy and reaches the
    // server as herself: the dashboard host leads to the proxy in oauth2
    // mode, and the provider sends her back to that host.
    let proxy = format!("http://{name}.ws.test");
    let host = format!("{name}.ws.test");
    oidc.queue_login("alice").await;
    eventually("the proxy to answer through the ingress", 60, || async {
        via_ingress(&[&host])
            .get(format!("{proxy}/ping"))
            .send()
            .await
            .ok()?
            .status()
            .is_success()
            .then_some(())
    })
    .await;
    let mut alice = std::collections::BTreeMap::new();
    let r = browse(&proxy, "/api/whoami", &oidc.ca_pem, &mut alice).await;
    assert_eq!(
        r.status(),
        200,
        "the login did not end at the server: {}",
        r.url()
    );
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["via"], "oauth2", "{me}");
    assert!(
        me["user"].as_str().unwrap_or_default().contains("alice"),
        "{me}"
    );
    // Someone else the provider knows (its default user) is turned away.
    let mut stranger = std::collections::BTreeMap::new();
    let r = browse(&proxy, "/api/whoami", &oidc.ca_pem, &mut stranger).await;
    assert_eq!(r.status(), 403, "a login not on the allow list got in");
    // Alice again, for the dashboard page: her session is still good.
    let r = browse(&proxy, "/", &oidc.ca_pem, &mut alice).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<html"));

    // The OAuth client secret and the cookie secret are the sidecar's
    // alone: the workspace container neither mounts nor is given them,
    // and no file or process environment in it holds either.
    let oauth2 = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("oauth2-proxy")
        .await
        .unwrap();
    let cookie = oauth2
        .data
        .as_ref()
        .and_then(|d| d.get("cookie-secret"))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .expect("a cookie secret");
    let server = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name != "oauth2-proxy"))
        .expect("the workspace container");
    let secret_volumes: Vec<&str> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter(|v| {
            v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("oauth2-proxy")
        })
        .map(|v| v.name.as_str())
        .collect();
    assert!(
        !server
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| secret_volumes.contains(&m.name.as_str())),
        "the workspace container mounts the oauth2 Secret"
    );
    assert!(
        !server.env.iter().flatten().any(|e| e
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref())
            .is_some_and(|r| r.name == "oauth2-proxy")),
        "the workspace container's environment reads the oauth2 Secret"
    );
    let (code, token, err) = kube_coder(&["token", &name], "").await;
    assert_eq!(code, 0, "{err}");
    // The API through its own host on the ingress: the token, no login.
    let api_host = format!("{name}-api.ws.test");
    let api = format!("http://{api_host}");
    // The hosts lead to the workspace once the controller has seen it Ready.
    eventually("the api host to reach the workspace", 60, || async {
        let r = via_ingress(&[&api_host])
            .get(format!("{api}/readyz"))
            .send()
            .await
            .ok()?;
        (r.status() == 200 && !r.headers().contains_key("x-kube-coder-waker")).then_some(())
    })
    .await;
    let search = format!(
        "{}{}echo \"answer-mounts: $(grep -c oauth2 /proc/mounts)\"\n",
        secret_search("client", &oidc.client_secret),
        secret_search("cookie", &cookie)
    );
    let (output, task) = run_task(&via_ingress(&[&api_host]), &api, token.trim(), &search).await;
    assert_eq!(task["state"], "succeeded", "{task}\n{output}");
    let got = answers(&output);
    assert_secret_absent(&got, "client", &output);
    assert_secret_absent(&got, "cookie", &output);
    assert_eq!(
        got.get("mounts").map(String::as_str),
        Some("0"),
        "an oauth2 mount in the workspace container:\n{output}"
    );

    // Stopped, its hosts lead to the waker. The stranger's session (the
    // proxy signed it too) starts nothing; Alice's does, and then her
    // browser reaches the server as herself again.
    expose_waker(&client, operator).await;
    let (code, _, err) = kube_coder(&["user", "stop", &name], "").await;
    assert_eq!(code, 0, "{err}");
    let http = via_ingress(&[&host, &api_host]);
    let page = |jar: &std::collections::BTreeMap<String, String>, path: &str| {
        let cookie: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        http.get(format!("{proxy}{path}"))
            .header("accept", "text/html")
            .header("cookie", cookie.join("; "))
    };
    let r = eventually("the dashboard host to lead to the waker", 60, || async {
        let r = page(&stranger, "/").send().await.ok()?;
        r.headers().contains_key("x-kube-coder-waker").then_some(r)
    })
    .await;
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("kube-coder user start"), "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !workspaces.get(&name).await.unwrap().spec.running,
        "a stranger's session started an oauth2 workspace"
    );
    let r = page(&alice, "/").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("x-kube-coder-waker"));
    let body = r.text().await.unwrap();
    assert!(body.contains(&format!("Starting {name}")), "{body}");
    assert!(
        workspaces.get(&name).await.unwrap().spec.running,
        "Alice's session did not start it"
    );
    let me: Value = eventually("the woken workspace to know Alice again", 180, || async {
        let r = page(&alice, "/api/whoami").send().await.ok()?;
        if r.status() != 200 || r.headers().contains_key("x-kube-coder-waker") {
            return None;
        }
        r.json().await.ok()
    })
    .await;
    let woken = Api::<k8s_openapi::api::core::v1::Event>::all(client.clone())
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Woken"))
        .filter_map(|e| e.message)
        .collect::<Vec<_>>();
    assert!(
        woken
            .iter()
            .any(|m| m.contains("login-proxy session of alice@example.com")),
        "{woken:?}"
    );
    assert_eq!(me["via"], "oauth2", "{me}");

    workspaces
        .delete(&name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
}
