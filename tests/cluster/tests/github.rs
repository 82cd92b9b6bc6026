//! The GitHub token broker on the real node: git inside a workspace pod
//! clones and pushes over HTTPS with installation tokens the operator's
//! broker mints (its credential helper shows the pod's projected token of
//! audience `kube-coder-broker`), for the repositories `spec.github` lists
//! and no other; tokens are reused while fresh; a token of the wrong
//! audience, another identity, or a stopped workspace gets nothing; the
//! App's key is in no file or environment of the pod, and the workspace's
//! identity may not read it. A flood of refused tokens from one address
//! is cut off before the API server is asked.
//! Starts: a stand-in GitHub over TLS at a public-range test address (the
//! App API, checking the App JWT against the App's public key, and git's
//! smart HTTP, checking the tokens it issued), the operator in-process with
//! its broker on the node's address.

use std::net::Ipv4Addr;
use std::process::Command;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_coder_cluster_tests::test_host::TestHost;
use kube_coder_cluster_tests::{
    answer_of, answers, apply_namespace, assert_secret_absent, bare_repository, client, eventually,
    git, install_crd, launch_operator, private_ca, real_node_settings, real_node_workspace,
    require_real_node, run_task, secret_search, workspace_may_secret, ws_name, OperatorHandle,
};
use serde_json::{json, Value};

/// A test host address pods have a route to (hack/node.sh NODE_TEST_HOSTS).
const GITHUB: &str = "11.22.33.44";
const APP_ID: &str = "4242";

/// The node's address, where the test process (and so the broker) is.
const NODE: &str = "192.0.2.2";

fn openssl(args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl runs (apt-get install openssl)");
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
}

/// Bare repositories `acme/allowed.git` and `acme/other.git` under
/// `root`, each with one commit, open to pushes over smart HTTP.
fn repositories(root: &std::path::Path) {
    for name in ["allowed", "other"] {
        let bare = root.join(format!("acme/{name}.git"));
        bare_repository(&bare, &format!("{name}\n"));
        git(&bare, &["config", "http.receivepack", "true"]);
    }
}

fn operator(ca: String, broker_port: u16) -> &'static OperatorHandle {
    static OP: std::sync::OnceLock<OperatorHandle> = std::sync::OnceLock::new();
    OP.get_or_init(|| {
        launch_operator(move |_| {
            let mut s = real_node_settings();
            s.github = operator::settings::GithubSettings {
                app_id: Some(APP_ID.into()),
                api_url: format!("https://{GITHUB}/api/v3"),
                git_host: GITHUB.into(),
                ca_bundle: Some(ca),
                ..Default::default()
            };
            s.broker_url = format!("http://{NODE}:{broker_port}");
            s.broker_endpoints = vec![format!("{NODE}:{broker_port}")];
            s
        })
    })
}

/// A token of the workspace ServiceAccount of `ns` for `audience`, as the
/// API server issues one (not bound to a pod).
async fn service_account_token(client: &kube::Client, ns: &str, audience: &str) -> String {
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [audience], "expirationSeconds": 600},
    }))
    .unwrap();
    let answer: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_subresource("token", "workspace", &PostParams::default(), &request)
        .await
        .expect("a TokenRequest");
    answer.status.and_then(|s| s.token).expect("a token")
}

async fn ask_broker(url: &str, token: Option<&str>) -> (u16, Value) {
    post(format!("{url}/github/token"), token, None).await
}

/// A POST to `url` with `token`, from the local address `from` if given:
/// the status and the JSON answer.
async fn post(url: String, token: Option<&str>, from: Option<[u8; 4]>) -> (u16, Value) {
    let mut client = reqwest::Client::builder();
    if let Some(from) = from {
        client = client.local_address(std::net::IpAddr::from(from));
    }
    let mut r = client.build().unwrap().post(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.expect("reach the broker");
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn git_in_a_workspace_pushes_with_brokered_tokens_for_listed_repositories_only() {
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;

    // The App: its key pair; the key where the operator reads it.
    let private_key = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        b"",
    );
    let public_key = openssl(&["pkey", "-pubout"], private_key.as_bytes());
    let pki = private_ca(GITHUB);
    let public_path = pki.path().join("app.pub");
    std::fs::write(&public_path, &public_key).unwrap();
    let repos = tempfile::tempdir().unwrap();
    repositories(repos.path());
    let fixture = format!("{}/../fixtures/github.py", env!("CARGO_MANIFEST_DIR"));
    let path = |f: &str| pki.path().join(f).display().to_string();
    let program: Vec<String> = [
        "python3",
        &fixture,
        "--wait",
        GITHUB,
        "443",
        &path("tls.crt"),
        &path("tls.key"),
        APP_ID,
        &public_path.display().to_string(),
        "acme",
        &repos.path().display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let _github =
        TestHost::start_program("github", GITHUB.parse::<Ipv4Addr>().unwrap(), 443, &program);
    let ca = std::fs::read_to_string(pki.path().join("ca.crt")).unwrap();

    // The broker, on the node's address (where pods reach this process).
    let listener = tokio::net::TcpListener::bind((NODE, 0)).await.unwrap();
    let broker_port = listener.local_addr().unwrap().port();
    let settings = operator(ca.clone(), broker_port).settings();
    let broker =
        operator::broker::Broker::new(client.clone(), settings.clone(), Default::default());
    tokio::spawn(broker.serve(listener, std::future::pending()));
    let broker_url = format!("http://{NODE}:{broker_port}");

    let pp = PatchParams::apply("kube-coder-tests");
    apply_namespace(&client, &settings.operator_namespace).await;
    Api::<Secret>::namespaced(client.clone(), &settings.operator_namespace)
        .patch(
            &settings.github.app_key_secret,
            &pp,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": settings.github.app_key_secret},
                "stringData": {"private-key.pem": private_key}})),
        )
        .await
        .unwrap();

    let name = ws_name("gh");
    let ns = format!("ws-{name}");
    let (api, token) = real_node_workspace(
        &client,
        &name,
        json!({"github": {"repositories": ["acme/allowed"]}}),
    )
    .await;
    let http = reqwest::Client::new();

    // Straight to the broker: nothing without a token, with one of another
    // audience, or while the workspace is stopped.
    let (status, body) = ask_broker(&broker_url, None).await;
    assert_eq!(status, 401, "{body}");
    let wrong = service_account_token(&client, &ns, "https://kubernetes.default.svc").await;
    let (status, body) = ask_broker(&broker_url, Some(&wrong)).await;
    assert_eq!(status, 401, "{body}");
    let right = service_account_token(&client, &ns, "kube-coder-broker").await;
    let (status, body) = ask_broker(&broker_url, Some(&right)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["repositories"], json!(["acme/allowed"]));
    assert!(
        body["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("ghs_")),
        "{body}"
    );

    // Inside the pod: git asks the helper, the helper the broker.
    let script = format!(
        "cat > /tmp/github-ca.pem <<'EOF'\n{ca}EOF\n\
         export GIT_SSL_CAINFO=/tmp/github-ca.pem\n\
         cd /tmp && rm -rf allowed other\n\
         echo \"answer-helper: $(printf 'protocol=https\\nhost={GITHUB}\\n\\n' | kube-coder git-credential get | head -1)\"\n\
         echo \"answer-clone: $(git clone -q https://{GITHUB}/acme/allowed.git 2>&1 && cat allowed/README)\"\n\
         cd allowed && echo pushed > PUSHED && git add PUSHED && git -c user.name=t -c user.email=t@example.com commit -qm push\n\
         echo \"answer-push: $(git push -q origin main 2>&1 && echo ok)\"\n\
         cd /tmp\n\
         echo \"answer-other: $(GIT_TERMINAL_PROMPT=0 git clone -q https://{GITHUB}/acme/other.git 2>&1 | tr '\\n' ' ')\"\n\
         echo \"answer-gh: $(SSL_CERT_FILE=/tmp/github-ca.pem GH_NO_UPDATE_NOTIFIER=1 gh api repos/acme/allowed --jq .full_name 2>&1 | tr '\\n' ' ')\"\n"
    );
    let (output, task) = run_task(&http, &api, &token, &script).await;
    assert_eq!(task["state"], "succeeded", "{task}\n{output}");
    let got = answers(&output);
    let answer = |k: &str| answer_of(&got, k, &output);
    assert_eq!(answer("helper"), "username=x-access-token", "{output}");
    assert_eq!(answer("clone"), "allowed", "{output}");
    assert_eq!(answer("push"), "ok", "{output}");
    let pushed = Command::new("git")
        .args(["--git-dir", "acme/allowed.git", "show", "main:PUSHED"])
        .current_dir(repos.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&pushed.stdout), "pushed\n");
    assert!(
        answer("other").contains("403") || answer("other").contains("Authentication failed"),
        "a repository off the list: {output}"
    );
    // gh (the image's wrapper) gets the same token.
    assert_eq!(answer("gh"), "acme/allowed", "{output}");
    // One token served the helper, the clone, the push, the refusal and gh.
    let stats: Value = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap()
        .get(format!("https://{GITHUB}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["minted"], 1, "{stats}");
    assert_eq!(
        stats["refused"],
        json!([]),
        "every App JWT was good: {stats}"
    );

    // The App's key is in no file or environment of the pod.
    let key_line = private_key.lines().nth(1).unwrap().to_string();
    let (output, _) = run_task(&http, &api, &token, &secret_search("key", &key_line)).await;
    let got = answers(&output);
    assert_secret_absent(&got, "key", &output);
    assert!(
        !workspace_may_secret(
            &client,
            &ns,
            "get",
            &settings.operator_namespace,
            Some(&settings.github.app_key_secret)
        )
        .await,
        "the workspace may read the App's key"
    );

    let workspaces: Api<operator::crd::Workspace> = Api::all(client.clone());
    workspaces
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"running": false}})),
        )
        .await
        .unwrap();
    let (status, body) = ask_broker(&broker_url, Some(&right)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("stopped"),
        "{body}"
    );

    // Deleted (its namespace and identity kept, as retainOnDelete does):
    // still nothing.
    workspaces
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    let body = eventually("the broker to refuse a deleted workspace", 30, || async {
        let (status, body) = ask_broker(&broker_url, Some(&right)).await;
        let error = body["error"].as_str().unwrap_or_default().to_string();
        (status == 403 && error.contains("does not exist")).then_some(body)
    })
    .await;
    assert!(body["token"].is_null(), "{body}");
}

/// A flood of refused tokens from one address costs the API server at most
/// thirty TokenReviews a minute, even sent all at once: the rest get 429
/// without asking it, at the broker and the builds endpoint alike, and
/// only that address does. Needs the API server alone (no node).
#[tokio::test]
async fn refused_tokens_from_one_address_are_cut_off_after_thirty_a_minute() {
    let client = client().await;
    // The broker and builds on one port with one memory of identities,
    // as the operator serves them.
    let identities = std::sync::Arc::new(operator::workspace_identity::Identities::default());
    let settings = operator::settings::Settings::default();
    let broker =
        operator::broker::Broker::new(client.clone(), settings.clone(), identities.clone());
    let builds = operator::builds::Builds::new(client, settings, identities);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes = broker.router().merge(builds.router());
    tokio::spawn(operator::serve::until(
        routes,
        listener,
        std::future::pending(),
    ));
    let url = format!("{base}/github/token");
    let ask = |from: [u8; 4]| post(url.clone(), Some("not-a-projected-token"), Some(from));
    // Forty at once: thirty are asked about (and refused), ten are not.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..40 {
        burst.spawn(ask([127, 0, 0, 1]));
    }
    let answers = burst.join_all().await;
    let count = |code: u16| answers.iter().filter(|(s, _)| *s == code).count();
    assert_eq!((count(401), count(429)), (30, 10), "{answers:?}");
    for (status, body) in &answers {
        let expected = if *status == 401 {
            "not a valid"
        } else {
            "refused tokens"
        };
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains(expected),
            "{body}"
        );
    }
    let (status, body) = ask([127, 0, 0, 1]).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1 sent more than 30 refused tokens"),
        "{body}"
    );
    // The builds endpoint counts the same refusals.
    let (status, body) = post(
        format!("{base}/builds?tag=registry.test/a:1"),
        Some("not-a-projected-token"),
        Some([127, 0, 0, 1]),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    // Another address is still asked about its token.
    let (status, body) = ask([127, 0, 0, 2]).await;
    assert_eq!(status, 401, "{body}");
}
