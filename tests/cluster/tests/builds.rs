//! The builder of brokered image builds on the real node: a build pod as
//! the operator makes it (`manifests::build_pod`: its own user namespace,
//! never privileged, the RuntimeDefault seccomp profile) takes a context
//! through the API server's exec, as the operator gives it one, and
//! BuildKit builds a Containerfile with `COPY` and `RUN` steps in it; each
//! `RUN` step sees none of the pod's processes (the build client holding
//! push credentials among them), and a second build reuses the first's
//! layers. With push credentials only it holds (a Secret mounted into the
//! build pod), it pushes to a registry that requires a password, and the
//! image it pushed runs as a pod.
//! Starts: build pods from the builder image the node imported; a
//! registry (distribution/v3) on the node's address.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use kube_coder_cluster_tests::registry::{
    apply_docker_secret, built_image, run_image, start_registry,
};
use kube_coder_cluster_tests::test_host::TestHost;
use kube_coder_cluster_tests::{
    apply_namespace, client, eventually, eventually_empty, real_node_address, real_node_settings,
    require_real_node, tar_of, unique,
};
use kube_coder_cluster_tests::{probe_results, INGRESS_ADDR, INGRESS_NAMESPACE};
use operator::manifests::build_pod::{self, BuildLimits, BUILDKIT_SOCKET, CONTEXT_DIR};
use std::net::Ipv4Addr;

/// The builder image the node imported (`make test` builds it).
fn builder_image() -> String {
    built_image("buildkit")
}

/// Run `command` in the build pod, as the operator does: its exit code
/// and output.
async fn exec(pods: &Api<Pod>, pod: &str, command: &[&str], stdin: Option<&[u8]>) -> (i32, String) {
    operator::builds::runner::exec(pods, pod, command, stdin)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

const CONTAINERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
COPY hello.txt /hello.txt\n\
RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo step-uid=$(/bin/busybox id -u); echo step-sees-buildkitd=$(/bin/busybox ps -o comm | /bin/busybox grep -c buildkitd); /bin/busybox cat /hello.txt > /made.txt; /bin/busybox nc -w 4 10.96.0.1 443 </dev/null >/dev/null 2>&1 && echo step-api=open || echo step-api=closed\"]\n";

/// A build namespace as the operator will make it (Pod Security
/// `privileged`: the build container's SYS_ADMIN is outside `baseline`).
async fn build_namespace(client: &kube::Client) -> String {
    let ns = unique("builds");
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    ns
}

/// The build pod `name` in `ns` (with `push_secret` mounted), running,
/// BuildKit answering, and the test's context unpacked into it.
async fn builder(
    client: &kube::Client,
    ns: &str,
    name: &str,
    push_secret: Option<&str>,
) -> Api<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let settings = operator::settings::Settings {
        builder_image: builder_image(),
        ..real_node_settings()
    };
    let pod = build_pod::build_pod(
        &settings,
        ns,
        name,
        "alice",
        push_secret,
        &build_pod::Egress::Public,
        &BuildLimits::default(),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the build pod to run", 90, || async {
        let p = pods.get(name).await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    // The context, as the operator sends it: a tar on stdin.
    let (code, out) = exec(&pods, name, &["busybox", "mkdir", "-p", CONTEXT_DIR], None).await;
    assert_eq!(code, 0, "{out}");
    let tar = tar_of(&[
        ("Containerfile", CONTAINERFILE),
        ("hello.txt", "hello from the context\n"),
    ]);
    let (code, out) = exec(
        &pods,
        name,
        &["busybox", "tar", "-x", "-C", CONTEXT_DIR],
        Some(&tar),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    // The image is FROM scratch, with the builder's static busybox to run.
    let busybox = format!("{CONTEXT_DIR}/busybox");
    let (code, out) = exec(
        &pods,
        name,
        &["busybox", "cp", "/bin/busybox", &busybox],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}");
    eventually("BuildKit to answer", 60, || async {
        let (code, _) = exec(
            &pods,
            name,
            &[
                "buildctl",
                &format!("--addr={BUILDKIT_SOCKET}"),
                "debug",
                "workers",
            ],
            None,
        )
        .await;
        (code == 0).then_some(())
    })
    .await;
    pods
}

/// `buildctl build` of the context with `output`: its log and duration.
async fn build(pods: &Api<Pod>, name: &str, output: &str) -> (String, std::time::Duration) {
    let local = format!("context={CONTEXT_DIR}");
    let dockerfile = format!("dockerfile={CONTEXT_DIR}");
    let started = std::time::Instant::now();
    let (code, log) = exec(
        pods,
        name,
        &[
            "buildctl",
            &format!("--addr={BUILDKIT_SOCKET}"),
            "build",
            "--frontend=dockerfile.v0",
            "--local",
            &local,
            "--local",
            &dockerfile,
            "--opt",
            "filename=Containerfile",
            "--output",
            output,
            "--progress=plain",
            "--metadata-file=/work/metadata.json",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "the build failed:\n{log}");
    (log, started.elapsed())
}

#[tokio::test]
async fn a_build_pod_builds_copy_and_run_steps_in_its_own_user_namespace() {
    let client = client().await;
    require_real_node(&client).await;
    let ns = build_namespace(&client).await;
    let pods = builder(&client, &ns, "b-1", None).await;

    // Root of its own user namespace: ID 0 inside is another ID outside.
    let (code, map) = exec(
        &pods,
        "b-1",
        &["busybox", "cat", "/proc/self/uid_map"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{map}");
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"0"), "{map}");
    assert_ne!(
        fields.get(1),
        Some(&"0"),
        "the pod's root is the host's: {map}"
    );
    // Its CPU and memory limits are the kernel's (cgroup v1, as this
    // machine's), not only the spec's.
    let (_, cgroup) = exec(
        &pods,
        "b-1",
        &[
            "busybox",
            "cat",
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ],
        None,
    )
    .await;
    let values: Vec<u64> = cgroup
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(values.len(), 3, "{cgroup}");
    assert_eq!(values[0] / values[1], 2, "two CPUs: {cgroup}");
    assert_eq!(values[2], 4 << 30, "4Gi of memory: {cgroup}");
    let (_, seen) = exec(
        &pods,
        "b-1",
        &[
            "busybox",
            "sh",
            "-c",
            "busybox ps -o comm | busybox grep -c buildkitd",
        ],
        None,
    )
    .await;
    assert_eq!(
        seen.trim(),
        "1",
        "the pod's own view shows buildkitd: {seen}"
    );

    let (log, cold) = build(&pods, "b-1", "type=oci,dest=/work/one.tar").await;
    let steps: BTreeMap<&str, &str> = log
        .lines()
        .filter_map(|l| l.split_whitespace().last()?.split_once('='))
        .filter(|(k, _)| k.starts_with("step-"))
        .collect();
    assert_eq!(steps.get("step-uid"), Some(&"0"), "{log}");
    assert_eq!(
        steps.get("step-sees-buildkitd"),
        Some(&"0"),
        "a RUN step sees the pod's processes:\n{log}"
    );
    // No policy in this namespace: the API server a RUN step reaches here
    // is what the operator's build namespace refuses (the test below).
    assert_eq!(steps.get("step-api"), Some(&"open"), "{log}");
    let (code, listing) = exec(
        &pods,
        "b-1",
        &["busybox", "tar", "-tf", "/work/one.tar"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{listing}");
    assert!(
        listing.contains("index.json"),
        "not an OCI image: {listing}"
    );

    // The same build again: every step from the cache.
    let (log, warm) = build(&pods, "b-1", "type=oci,dest=/work/two.tar").await;
    assert!(
        log.lines().filter(|l| l.contains("CACHED")).count() >= 3,
        "the second build did not reuse the first's layers:\n{log}"
    );
    println!(
        "build of a 3-step Containerfile: cold {:.2} s, warm {:.2} s (buildctl, in the pod)",
        cold.as_secs_f64(),
        warm.as_secs_f64()
    );

    Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_operator_starting_deletes_the_build_pods_an_earlier_run_left() {
    let client = client().await;
    require_real_node(&client).await;
    let ns = build_namespace(&client).await;
    let settings = operator::settings::Settings {
        builder_image: builder_image(),
        build_namespace: ns.clone(),
        ..real_node_settings()
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // A build pod whose operator died, and a pod that is no build's.
    let left = build_pod::build_pod(
        &settings,
        &ns,
        "build-left",
        "alice",
        None,
        &build_pod::Egress::Public,
        &BuildLimits::default(),
    );
    pods.create(&PostParams::default(), &left).await.unwrap();
    let mut other = left.clone();
    other.metadata.name = Some("not-a-build".into());
    other.metadata.labels = None;
    pods.create(&PostParams::default(), &other).await.unwrap();

    let builds = operator::builds::Builds::new(client.clone(), settings, Default::default());
    assert_eq!(builds.sweep_leftovers().await.unwrap(), 1);
    eventually("the left build pod to go", 60, || async {
        pods.get_opt("build-left")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(pods.get_opt("not-a-build").await.unwrap().is_some());
    // Nothing left: nothing to do.
    assert_eq!(builds.sweep_leftovers().await.unwrap(), 0);
    Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_build_pod_pushes_with_credentials_only_it_holds_and_the_image_runs() {
    let client = client().await;
    require_real_node(&client).await;
    let node = real_node_address(&client).await;
    let (creds, _) =
        operator::manifests::credentials::Credentials::keep_or_generate("pusher", None);
    let registry = start_registry(&node, &creds.htpasswd).await;
    // The node's containerd pulls from it over plain HTTP.
    let _pulls = registry.node_pulls();

    let ns = build_namespace(&client).await;
    let config = registry.docker_config("pusher", &creds.password);
    apply_docker_secret(&client, &ns, "push", &config).await;
    let pods = builder(&client, &ns, "b-push", Some("push")).await;

    let image = format!("{}/team/app:1", registry.addr);
    let (log, took) = build(
        &pods,
        "b-push",
        &format!("type=image,name={image},push=true,registry.insecure=true"),
    )
    .await;
    let (code, metadata) = exec(
        &pods,
        "b-push",
        &["busybox", "cat", "/work/metadata.json"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{metadata}");
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    let digest = metadata["containerimage.digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(digest.starts_with("sha256:"), "{metadata}\n{log}");
    println!(
        "built and pushed {image}@{digest} in {:.2} s",
        took.as_secs_f64()
    );

    // In the registry, under that digest, for the one with the password.
    let manifest = format!("http://{}/v2/team/app/manifests/1", registry.addr);
    let http = reqwest::Client::new();
    let r = http.head(&manifest).send().await.unwrap();
    assert_eq!(r.status(), 401, "the registry lets anyone in");
    assert_eq!(
        registry
            .digest_of("team/app", "1", "pusher", &creds.password)
            .await,
        Some(digest.clone())
    );

    // The image runs, pulled by the kubelet with the same credentials.
    let (phase, logs) = run_image(
        &client,
        &ns,
        &image,
        &["/bin/busybox", "cat", "/made.txt"],
        "push",
    )
    .await;
    assert_eq!(
        (phase.as_str(), logs.as_str()),
        ("Succeeded", "hello from the context\n")
    );

    Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

/// `POST /builds` of `context` with `query`, as a workspace sends it: the
/// status, and the lines of the answer (one JSON object each).
async fn post_build(
    base: &str,
    token: &str,
    query: &str,
    context: Vec<u8>,
) -> (u16, Vec<serde_json::Value>) {
    kube_coder_cluster_tests::builds::post_build(&format!("{base}/builds?{query}"), token, context)
        .await
}

fn last_error(lines: &[serde_json::Value]) -> String {
    lines
        .iter()
        .find_map(|l| l["error"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_workspace_builds_through_the_operator_and_is_held_to_its_registries_and_limits() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{Patch, PatchParams};
    use kube_coder_cluster_tests::{
        apiserver_port, attrs, create_workspace, install_crd, kube_coder_bin, operator_running,
        real_node_kubelet_port, review, wait_phase, workspace_may_secret, ws_name,
    };
    use operator::crd::{Phase, Workspace};
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    let operator = operator_running().settings();
    let node = real_node_address(&client).await;
    let (creds, _) =
        operator::manifests::credentials::Credentials::keep_or_generate("pusher", None);
    let registry = start_registry(&node, &creds.htpasswd).await;

    // The push credentials, in the operator's namespace only.
    apply_namespace(&client, &operator.operator_namespace).await;
    let name = ws_name("build");
    let config = registry.docker_config("pusher", &creds.password);
    let push = format!("push-{name}");
    apply_docker_secret(&client, &operator.operator_namespace, &push, &config).await;
    let workspaces: Api<Workspace> = Api::all(client.clone());
    create_workspace(
        &client,
        &workspaces,
        &name,
        serde_json::json!({"build": {"registries": [format!("{}/team/", registry.addr)], "pushSecret": push}}),
    )
    .await;
    wait_phase(&workspaces, &name, Phase::Ready, 90).await;

    // The operator's builds, in a build namespace of their own, with a
    // small context cap and time limit to try them.
    let build_ns = unique("builds");
    let settings = operator::settings::Settings {
        builder_image: builder_image(),
        build_namespace: build_ns.clone(),
        insecure_registries: vec![registry.addr.clone()],
        ..real_node_settings()
    };
    let settings = operator::settings::Settings {
        operator_namespace: operator.operator_namespace.clone(),
        ..settings
    };
    let limits = BuildLimits {
        seconds: 25,
        ..BuildLimits::default()
    };
    let settings_small = settings.clone();
    let builds = operator::builds::Builds::with_limits(
        client.clone(),
        settings,
        Default::default(),
        limits,
        64 << 10,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(operator::serve::until(
        builds.router(),
        listener,
        std::future::pending(),
    ));

    // A base image in the registry: the node's busybox image, pushed by
    // its containerd.
    let base_image = format!("{}/team/base:1", registry.addr);
    registry.push_from_node(
        "ghcr.io/kube-coder/busybox:1",
        &base_image,
        "pusher",
        &creds.password,
    );

    // The workspace's own token for builds (as its pod's projected token).
    let token_of = |audience: &'static str| {
        let client = client.clone();
        let ns = format!("ws-{name}");
        async move {
            let request = TokenRequest {
                spec: Some(TokenRequestSpec {
                    audiences: Some(vec![audience.into()]),
                    expiration_seconds: Some(600),
                    ..Default::default()
                }),
                ..Default::default()
            };
            Api::<ServiceAccount>::namespaced(client, &ns)
                .create_token_request("workspace", &PostParams::default(), &request)
                .await
                .unwrap()
                .status
                .and_then(|s| s.token)
                .expect("a token")
        }
    };
    let token = token_of("kube-coder-build").await;
    // The context: FROM the base in the registry, a COPY and a RUN.
    let containerfile = format!(
        "FROM {base_image}\nCOPY hello.txt /hello.txt\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox cat /hello.txt > /tmp/made.txt\"]\n"
    );
    let ctx = || {
        tar_of(&[
            ("Dockerfile", &containerfile),
            ("hello.txt", "built through the operator\n"),
        ])
    };
    let tag = format!("{}/team/app:2", registry.addr);

    // The workspace's own identity can read neither the push credentials
    // (in the operator's namespace, nor their copies in the build
    // namespace) nor make or enter a build pod.
    let ws_ns = format!("ws-{name}");
    for (verb, ns, secret) in [
        (
            "get",
            operator.operator_namespace.as_str(),
            Some(push.as_str()),
        ),
        ("list", build_ns.as_str(), None),
        ("get", build_ns.as_str(), None),
    ] {
        assert!(
            !workspace_may_secret(&client, &ws_ns, verb, ns, secret).await,
            "the workspace may {verb} secrets in {ns}"
        );
    }
    let me = format!("system:serviceaccount:{ws_ns}:workspace");
    assert!(
        !review(
            &client,
            &me,
            &ws_ns,
            attrs(&build_ns, "create", "pods", None)
        )
        .await
    );
    let exec = k8s_openapi::api::authorization::v1::ResourceAttributes {
        subresource: Some("exec".into()),
        ..attrs(&build_ns, "create", "pods", None)
    };
    assert!(!review(&client, &me, &ws_ns, exec).await);

    // Not a build token, or none: 401.
    let broker_token = token_of("kube-coder-broker").await;
    let (status, lines) = post_build(&base, &broker_token, &format!("tag={tag}"), ctx()).await;
    assert_eq!(status, 401, "{lines:?}");
    let (status, _) = post_build(&base, "not-a-token", &format!("tag={tag}"), ctx()).await;
    assert_eq!(status, 401);
    // Outside its registries: 403, naming the repository.
    let (status, lines) = post_build(
        &base,
        &token,
        &format!("tag={}/elsewhere/app:1", registry.addr),
        ctx(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        last_error(&lines).contains("elsewhere/app is not a repository this workspace may push to"),
        "{lines:?}"
    );
    // Over the context cap: 413.
    let big = tar_of(&[
        ("Dockerfile", &containerfile),
        ("big", &"x".repeat(100 << 10)),
    ]);
    let (status, lines) = post_build(&base, &token, &format!("tag={tag}"), big).await;
    assert_eq!(status, 413);
    assert!(last_error(&lines).contains("larger than"), "{lines:?}");

    // A build: its log as it goes, then the digest it pushed.
    let started = std::time::Instant::now();
    let (status, lines) = post_build(&base, &token, &format!("tag={tag}"), ctx()).await;
    assert_eq!(status, 200);
    let done = lines
        .iter()
        .find_map(|l| l.get("done"))
        .unwrap_or_else(|| panic!("no result: {lines:#?}"));
    let digest = done["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{done}");
    assert!(
        lines.iter().any(|l| l["log"]
            .as_str()
            .is_some_and(|s| s.contains("COPY hello.txt"))),
        "{lines:#?}"
    );
    println!(
        "brokered build: pushed {tag}@{digest}, {:.1} s from the request",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        registry
            .digest_of("team/app", "2", "pusher", &creds.password)
            .await,
        Some(digest.clone())
    );
    // The build pod and its copy of the credentials are gone.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &build_ns);
    eventually_empty(&pods, "the build pod to be deleted", 60).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &build_ns);
    eventually("the copied credentials to be deleted", 60, || async {
        let left = secrets.list(&Default::default()).await.ok()?;
        (!left.items.iter().any(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with("-push"))
        }))
        .then_some(())
    })
    .await;

    // The CLI a workspace runs, against the same endpoint with the same
    // token: the directory without what .dockerignore leaves out, the log
    // as it comes (stderr), the image and digest (stdout).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Containerfile"),
        format!("FROM {base_image}\nCOPY . /ctx/\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox ls -a /ctx | /bin/busybox sed 's/^/in-context: /'\"]\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("keep.txt"), "kept\n").unwrap();
    std::fs::write(dir.path().join("secret.env"), "TOKEN=do-not-send\n").unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "*.env\n").unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let cli_tag = format!("{}/team/cli:1", registry.addr);
    let out = tokio::process::Command::new(kube_coder_bin())
        .args(["build", "-t", &cli_tag, &dir.path().display().to_string()])
        .env("KUBE_CODER_BUILD_URL", format!("{base}/builds"))
        .env("KUBE_CODER_BUILD_TOKEN_FILE", &token_file)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout
            .trim()
            .starts_with(&format!("{}/team/cli@sha256:", registry.addr)),
        "{stdout}"
    );
    assert!(stderr.contains("in-context: keep.txt"), "{stderr}");
    assert!(stderr.contains("in-context: Containerfile"), "{stderr}");
    assert!(
        !stderr.contains("secret.env"),
        "an ignored file was sent:\n{stderr}"
    );
    // Outside its registries, the CLI says why and fails.
    let out = tokio::process::Command::new(kube_coder_bin())
        .args([
            "build",
            "-t",
            &format!("{}/elsewhere/x", registry.addr),
            &dir.path().display().to_string(),
        ])
        .env("KUBE_CODER_BUILD_URL", format!("{base}/builds"))
        .env("KUBE_CODER_BUILD_TOKEN_FILE", &token_file)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a repository this workspace may push to"),
        "{stderr}"
    );

    // The workspace server, wired to the builds as the operator wires a
    // workspace: POST /api/builds goes to the operator and is recorded,
    // GET /api/builds lists it.
    let (_server, api, api_token) =
        serve_with_builds(dir.path(), &format!("{base}/builds"), &token_file).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{api}/api/builds?tag={}/team/api:1", registry.addr))
        .bearer_auth(&api_token)
        .body(tar_of(&[
            ("Dockerfile", &containerfile),
            ("hello.txt", "through the api\n"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = r.text().await.unwrap();
    let done: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|l| l.get("done").cloned())
        .unwrap_or_else(|| panic!("no result:\n{log}"));
    let r = http
        .post(format!(
            "{api}/api/builds?tag={}/elsewhere/x:1",
            registry.addr
        ))
        .bearer_auth(&api_token)
        .body(tar_of(&[("Dockerfile", &containerfile)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let refusal: serde_json::Value = r.json().await.unwrap();
    assert!(
        refusal["error"].as_str().unwrap().contains("may push to"),
        "{refusal}"
    );
    let history: serde_json::Value = eventually("the build to be recorded", 30, || async {
        let h: serde_json::Value = http
            .get(format!("{api}/api/builds"))
            .bearer_auth(&api_token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (h["builds"][0]["state"] == "succeeded").then_some(h)
    })
    .await;
    assert_eq!(history["enabled"], true);
    assert_eq!(history["builds"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history["builds"][0]["digest"], done["digest"], "{history}");
    assert_eq!(
        history["builds"][0]["images"][0],
        format!("{}/team/api:1", registry.addr)
    );

    // The same build again, in a new pod: its layers come back from the
    // cache the first one pushed beside the image.
    let started = std::time::Instant::now();
    let (status, lines) = post_build(&base, &token, &format!("tag={tag}"), ctx()).await;
    assert_eq!(status, 200);
    assert!(lines.iter().any(|l| l.get("done").is_some()), "{lines:#?}");
    let cached = lines
        .iter()
        .filter(|l| l["log"].as_str().is_some_and(|s| s.contains("CACHED")))
        .count();
    assert!(
        cached >= 2,
        "the second build made its layers again:\n{lines:#?}"
    );
    println!(
        "the same build again: {:.1} s, {cached} steps from the registry cache",
        started.elapsed().as_secs_f64()
    );

    // What a RUN step reaches (the build namespace's policy): DNS, a
    // public address and the registry; not the API server (Service or
    // real address), the kubelet, the metadata address, a private
    // address, or other namespaces' pods and Services.
    let metadata = TestHost::start("metadata", Ipv4Addr::new(169, 254, 169, 254), 80);
    let private = TestHost::start("private", Ipv4Addr::new(192, 168, 255, 10), 80);
    let public = TestHost::start("public", Ipv4Addr::new(11, 22, 33, 44), 80);
    let apiserver_port = apiserver_port().await;
    let kubelet_port = real_node_kubelet_port(&client).await;
    let ingress_pod = Api::<Pod>::namespaced(client.clone(), INGRESS_NAMESPACE)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find_map(|p| p.status?.pod_ip)
        .expect("the ingress controller's pod");
    let (registry_host, registry_port) = registry.addr.split_once(':').unwrap();
    let targets = [
        ("api-service", "10.96.0.1".to_string(), 443),
        ("api-endpoint", node.clone(), apiserver_port),
        ("kubelet", node.clone(), kubelet_port),
        ("metadata", metadata.addr.to_string(), metadata.port),
        ("private", private.addr.to_string(), private.port),
        ("other-namespace-pod", ingress_pod, 8000),
        (
            "other-namespace-service",
            INGRESS_ADDR.split(':').next().unwrap().to_string(),
            80,
        ),
        ("dns", "10.96.0.10".to_string(), 53),
        ("public", public.addr.to_string(), public.port),
        (
            "registry",
            registry_host.to_string(),
            registry_port.parse().unwrap(),
        ),
    ];
    let script: String = targets
        .iter()
        .map(|(name, host, port)| {
            format!(
                "if /bin/busybox timeout 6 /bin/busybox nc -w 4 {host} {port} </dev/null >/dev/null 2>&1; \
                 then echo probe {name} open; else echo probe {name} closed; fi & "
            )
        })
        .collect::<String>()
        + "wait";
    // NONCE differs each time, so the step is never taken from the cache.
    let containerfile_probes = format!(
        "FROM {base_image}\nARG NONCE\nRUN [\"/bin/busybox\", \"sh\", \"-c\", {}]\n",
        serde_json::to_string(&format!("echo $NONCE; {script}")).unwrap()
    );
    let (status, lines) = post_build(
        &base,
        &token,
        &format!("tag={tag}&build-arg=NONCE%3D{}", unique("n")),
        tar_of(&[("Dockerfile", &containerfile_probes)]),
    )
    .await;
    assert_eq!(status, 200);
    let log: String = lines
        .iter()
        .filter_map(|l| l["log"].as_str())
        .map(|l| {
            l.split_whitespace()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        })
        .collect();
    let seen = probe_results(&log);
    for (name, _, _) in &targets {
        let open = ["dns", "public", "registry"].contains(name);
        assert_eq!(
            seen.get(*name),
            Some(&open),
            "{name} from a RUN step: {seen:?}\n{lines:#?}"
        );
    }
    drop((metadata, private, public));

    // Three slow builds at once: a fourth is refused while they run, and
    // each is stopped at its time limit, saying so.
    let slow = format!("FROM {base_image}\nRUN [\"/bin/busybox\", \"sleep\", \"120\"]\n");
    let slow = tar_of(&[("Dockerfile", &slow)]);
    let running: Vec<_> = (0..3)
        .map(|_| {
            let (base, token, tag, slow) = (base.clone(), token.clone(), tag.clone(), slow.clone());
            tokio::spawn(
                async move { post_build(&base, &token, &format!("tag={tag}"), slow).await },
            )
        })
        .collect();
    eventually("three builds to run", 60, || async {
        let pods = pods.list(&Default::default()).await.ok()?.items;
        // Not the pod of the build before, if it is still going.
        let running = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        (running == 3).then_some(())
    })
    .await;
    let (status, lines) = post_build(&base, &token, &format!("tag={tag}"), ctx()).await;
    assert_eq!(status, 429, "{lines:?}");
    assert!(
        last_error(&lines).contains("3 builds of workspace"),
        "{lines:?}"
    );
    for build in running {
        let (status, lines) = build.await.unwrap();
        assert_eq!(status, 200);
        assert!(
            last_error(&lines).contains("stopped after its time limit of 25 s"),
            "{lines:#?}"
        );
    }
    eventually_empty(&pods, "the stopped builds' pods to be deleted", 60).await;

    // Builds held to small memory and disk limits: a step over either is
    // stopped, and the build says which limit it was.
    let small = operator::builds::Builds::with_limits(
        client.clone(),
        settings_small,
        Default::default(),
        BuildLimits {
            memory: "256Mi".into(),
            disk: "64Mi".into(),
            seconds: 120,
            ..BuildLimits::default()
        },
        64 << 10,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let small_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(operator::serve::until(
        small.router(),
        listener,
        std::future::pending(),
    ));
    for (step, limit, says) in [
        // `tail -c` holds what it keeps in memory.
        (
            "/bin/busybox head -c 400000000 /dev/zero | /bin/busybox tail -c 390000000 > /dev/null",
            "memory",
            "a step ran out of memory and was killed (a build may use 256Mi)",
        ),
        // The kubelet checks a pod's disk every few seconds: the step stays.
        (
            "/bin/busybox dd if=/dev/zero of=/tmp/big bs=1M count=200 && /bin/busybox sleep 90",
            "disk",
            "(a build may use 64Mi of disk)",
        ),
    ] {
        let file = format!(
            "FROM {base_image}\nRUN [\"/bin/busybox\", \"sh\", \"-c\", {}]\n",
            serde_json::to_string(step).unwrap()
        );
        let started = std::time::Instant::now();
        let (status, lines) = post_build(
            &small_base,
            &token,
            &format!("tag={tag}"),
            tar_of(&[("Dockerfile", &file)]),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            last_error(&lines).contains(says),
            "over its {limit} limit: {lines:#?}"
        );
        println!(
            "a step over the build's {limit} limit stopped after {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            last_error(&lines)
        );
    }
    eventually_empty(&pods, "the stopped builds' pods to be deleted", 60).await;

    // Builds turned off on the Workspace: refused, saying so.
    workspaces
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"build": {"mode": "none"}}})),
        )
        .await
        .unwrap();
    let (status, lines) = post_build(&base, &token, &format!("tag={tag}"), ctx()).await;
    assert_eq!(status, 403, "{lines:?}");
    assert!(
        last_error(&lines).contains("spec.build.mode: none"),
        "{lines:?}"
    );

    Api::<Namespace>::all(client.clone())
        .delete(&build_ns, &DeleteParams::default())
        .await
        .unwrap();
    workspaces
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
}

/// `kube-coder serve` in `dir`, wired to the operator's builds at `url`
/// with `token_file`, as the operator wires a workspace: the process, its
/// api URL and API token.
async fn serve_with_builds(
    dir: &std::path::Path,
    url: &str,
    token_file: &std::path::Path,
) -> (tokio::process::Child, String, String) {
    use tokio::io::AsyncBufReadExt;
    for d in ["data", "home"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let mut child = tokio::process::Command::new(kube_coder_cluster_tests::kube_coder_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--home")
        .arg(dir.join("home"))
        .env("KUBE_CODER_BUILD_URL", url)
        .env("KUBE_CODER_BUILD_TOKEN_FILE", token_file)
        .env("HOME", dir.join("home"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut api = None;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line()).await
    {
        if let Some(rest) = line.strip_prefix("api:       http://") {
            api = rest
                .split_whitespace()
                .next()
                .map(|s| format!("http://{s}"));
        }
        if line.starts_with("api token:") && api.is_some() {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let api = api.expect("the server's api address");
    let token = std::fs::read_to_string(dir.join("data/api-token"))
        .unwrap()
        .trim()
        .to_string();
    (child, api, token)
}
