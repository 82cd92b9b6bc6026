//! Builds from inside a real workspace pod on the real node, as a user
//! or an agent runs them: `kube-coder build` in the workspace's shell and
//! `POST /api/builds` of its server reach the operator's builds endpoint
//! (on the node's address here, where the chart's Service would be) with
//! the pod's projected build token. The Containerfile starts `FROM` the
//! workspace image itself, pulled from a registry that wants a password;
//! only the context reaches the builder; the pushed image runs as a pod;
//! the second build reuses the first's layers; the server's history keeps
//! both (the CLI's goes through the server) with their sizes.
//! Starts: a registry (distribution/v3) on the node's address, the
//! operator in-process with its builds endpoint on the node's address.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use kube_coder_cluster_tests::builds::{operator_with_builds, post_build};
use kube_coder_cluster_tests::registry::{
    apply_docker_secret, built_image, run_image, start_registry,
};
use kube_coder_cluster_tests::{
    answer_of, answers, apply_namespace, client, eventually, get_json, install_crd,
    real_node_address, real_node_workspace, require_real_node, run_task_within, tar_of, unique,
    ws_name,
};
use serde_json::json;

/// A Containerfile on the workspace image: a COPY of the whole context
/// and a RUN (as the image's user) that records what it saw.
fn containerfile(base: &str) -> String {
    format!(
        "FROM {base}\n\
         COPY . /ctx/\n\
         RUN ls -A /ctx > /tmp/context.txt && cat /ctx/hello.txt > /tmp/made.txt && id -u >> /tmp/made.txt\n"
    )
}

const HELLO: &str = "made in a workspace\n";

#[tokio::test]
async fn a_workspace_pod_builds_from_its_own_image_and_pushes_what_then_runs() {
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    let node = real_node_address(&client).await;
    let (creds, _) =
        operator::manifests::credentials::Credentials::keep_or_generate("pusher", None);
    let registry = start_registry(&node, &creds.htpasswd).await;
    let _pulls = registry.node_pulls();

    // The operator, its builds endpoint where pods reach this process.
    let operator = operator_with_builds(&client, &node, &registry).await;
    let settings = operator.settings();

    // The push credentials, in the operator's namespace only.
    apply_namespace(&client, &settings.operator_namespace).await;
    let name = ws_name("inpod");
    let push = format!("push-{name}");
    let config = registry.docker_config("pusher", &creds.password);
    apply_docker_secret(&client, &settings.operator_namespace, &push, &config).await;

    // The workspace image, in the registry the builds pull from.
    let base = format!("{}/team/workspace:1", registry.addr);
    let pushed = std::time::Instant::now();
    registry.push_from_node(&built_image("workspace"), &base, "pusher", &creds.password);
    println!(
        "the workspace image pushed to the registry in {:.1} s",
        pushed.elapsed().as_secs_f64()
    );

    let (api, token) = real_node_workspace(
        &client,
        &name,
        json!({"build": {"registries": [format!("{}/team/", registry.addr)], "pushSecret": push}}),
    )
    .await;
    let http = reqwest::Client::new();

    // In the workspace's shell: a context with a file .dockerignore leaves
    // out, and one in the home outside the context.
    let tag = format!("{}/team/app:1", registry.addr);
    let script = format!(
        "mkdir -p ~/app && cd ~/app\n\
         cat > Containerfile <<'EOF'\n{file}EOF\n\
         echo '{hello}' > hello.txt\n\
         echo 'TOKEN=do-not-send' > secret.env\n\
         echo '*.env' > .dockerignore\n\
         echo 'not in the context' > ~/outside.txt\n\
         start=$(date +%s%N)\n\
         kube-coder build -t {tag} . > /tmp/build.out 2> /tmp/build.err\n\
         echo \"answer-code: $?\"\n\
         echo \"answer-took: $(( ($(date +%s%N) - start) / 1000000 ))\"\n\
         echo \"answer-image: $(cat /tmp/build.out)\"\n\
         echo \"answer-summary: $(grep 'kube-coder build: pushed' /tmp/build.err)\"\n\
         echo \"answer-ready: $(grep -c 'build pod running after' /tmp/build.err)\"\n\
         echo \"answer-via: $(grep -o 'to the workspace server' /tmp/build.err)\"\n\
         tail -5 /tmp/build.err\n",
        file = containerfile(&base),
        hello = HELLO.trim_end(),
    );
    let (output, task) = run_task_within(&http, &api, &token, &script, 600).await;
    assert_eq!(task["state"], "succeeded", "{task}\n{output}");
    let got = answers(&output);
    let answer = |k: &str| answer_of(&got, k, &output);
    assert_eq!(answer("code"), "0", "{output}");
    let image = answer("image");
    let digest = image
        .strip_prefix(&format!("{}/team/app@", registry.addr))
        .unwrap_or_else(|| panic!("kube-coder build printed {image:?}\n{output}"))
        .to_string();
    assert!(digest.starts_with("sha256:"), "{output}");
    assert_eq!(answer("ready"), "1", "the build's progress: {output}");
    assert_eq!(answer("via"), "to the workspace server", "{output}");
    println!(
        "kube-coder build in a workspace pod, FROM the workspace image (cold: the base pulled into the builder): {} ms; {}",
        answer("took"),
        answer("summary")
    );

    // The same context again, through the workspace server's API: the
    // layers made before come back from the registry cache.
    let dockerfile = containerfile(&base);
    let context = tar_of(&[
        ("Containerfile", &dockerfile),
        ("hello.txt", HELLO),
        (".dockerignore", "*.env\n"),
    ]);
    let tag2 = format!("{}/team/app:2", registry.addr);
    let started = std::time::Instant::now();
    let url = format!("{api}/api/builds?tag={tag2}&file=Containerfile");
    let (status, lines) = post_build(&url, &token, context).await;
    assert_eq!(status, 200, "{lines:?}");
    let warm = started.elapsed().as_secs_f64();
    let done = lines
        .iter()
        .find_map(|l| l.get("done"))
        .unwrap_or_else(|| panic!("no result: {lines:#?}"))
        .clone();
    let log: String = lines
        .iter()
        .filter_map(|l| l["log"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    // BuildKit's plain progress: `#7 [2/3] COPY . /ctx/`, then `#7 CACHED`.
    let cached = |step: &str| {
        log.lines()
            .filter(|l| l.contains(step))
            .filter_map(|l| l.split_whitespace().next())
            .any(|n| log.lines().any(|l| l == format!("{n} CACHED")))
    };
    for step in ["COPY . /ctx/", "RUN ls -A /ctx"] {
        assert!(cached(step), "{step} was built again:\n{log}");
    }
    let cached = log.lines().filter(|l| l.ends_with(" CACHED")).count();
    assert_eq!(
        done["digest"].as_str(),
        Some(digest.as_str()),
        "the same context made the same image"
    );
    let size = done["size"].as_u64().expect("the image's size");
    assert!(
        size > 900 << 20,
        "the image has the workspace's layers: {done}"
    );
    println!(
        "POST /api/builds in the workspace server, same context (warm): {warm:.1} s, {cached} steps CACHED; build pod ready after {:.1} s; {:.0} MiB as pushed",
        done["ready_seconds"].as_f64().unwrap_or_default(),
        size as f64 / 1048576.0
    );

    // The server's history: the build, its digest and size.
    let history = get_json(&http, &format!("{api}/api/builds"), &token).await;
    let last = &history["builds"][0];
    assert_eq!(last["state"], "succeeded", "{history}");
    assert_eq!(last["images"], json!([tag2]), "{history}");
    assert_eq!(last["digest"].as_str(), Some(digest.as_str()));
    assert_eq!(last["size"].as_u64(), Some(size));
    // The one kube-coder build made in the shell went through the server too.
    let first = &history["builds"][1];
    assert_eq!(first["images"], json!([tag]), "{history}");
    assert_eq!(first["state"], "succeeded", "{history}");
    assert_eq!(first["digest"].as_str(), Some(digest.as_str()));
    // Each keeps its log, for the dashboard.
    let id = first["id"].as_str().unwrap();
    let kept = http
        .get(format!("{api}/api/builds/{id}/log"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(kept.contains("RUN ls -A /ctx"), "{kept}");
    assert!(
        kept.trim_end().lines().last().unwrap().contains("\"done\""),
        "{kept}"
    );

    // A build's log can be followed while it runs, by another caller.
    let small = format!("{}/team/busybox:1", registry.addr);
    registry.push_from_node(
        "ghcr.io/kube-coder/busybox:1",
        &small,
        "pusher",
        &creds.password,
    );
    let slow = format!(
        "FROM {small}\nARG NONCE\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo step-live=1; /bin/busybox sleep 4; echo step-live=2\"]\n"
    );
    let nonce = std::process::id();
    let url = format!(
        "{api}/api/builds?tag={}/team/live:1&file=Containerfile&build-arg=NONCE={nonce}",
        registry.addr
    );
    let starter = {
        let token = token.clone();
        tokio::spawn(
            async move { post_build(&url, &token, tar_of(&[("Containerfile", &slow)])).await },
        )
    };
    let running = eventually("the build to be listed as running", 60, || async {
        let history = get_json(&http, &format!("{api}/api/builds"), &token).await;
        let b = &history["builds"][0];
        (b["state"] == "running").then(|| b["id"].as_str().unwrap().to_string())
    })
    .await;
    let mut log = http
        .get(format!("{api}/api/builds/{running}/log"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    let mut live_while_running = false;
    while let Some(chunk) = log.chunk().await.unwrap() {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        // The step's output lines (its command line names both too).
        if seen.contains("step-live=1\"}")
            && !seen.contains("step-live=2\"}")
            && !live_while_running
        {
            let history = get_json(&http, &format!("{api}/api/builds"), &token).await;
            live_while_running = history["builds"][0]["state"] == "running";
        }
    }
    assert!(
        live_while_running,
        "the first line came while it ran: {seen}"
    );
    assert!(seen.contains("step-live=2\"}"), "{seen}");
    assert!(
        seen.trim_end().lines().last().unwrap().contains("\"done\""),
        "{seen}"
    );
    let (status, _) = starter.await.unwrap();
    assert_eq!(status, 200);

    // The pushed image runs, pulled by the kubelet with the credentials.
    let ns = unique("runs");
    apply_namespace(&client, &ns).await;
    apply_docker_secret(&client, &ns, "pull", &config).await;
    let image = format!("{}/team/app@{digest}", registry.addr);
    let show = "cat /tmp/made.txt; tr '\\n' ' ' < /tmp/context.txt";
    let (phase, logs) = run_image(&client, &ns, &image, &["/bin/sh", "-c", show], "pull").await;
    // The RUN step ran as the image's user; the builder saw the context
    // alone: not the ignored file, not the rest of the home.
    assert_eq!(
        (phase.as_str(), logs.as_str()),
        (
            "Succeeded",
            "made in a workspace\n1000\n.dockerignore Containerfile hello.txt "
        )
    );

    for ns in [&ns, &settings.build_namespace] {
        Api::<Namespace>::all(client.clone())
            .delete(ns, &DeleteParams::default())
            .await
            .unwrap();
    }
    let workspaces: Api<operator::crd::Workspace> = Api::all(client.clone());
    let _ = workspaces.delete(&name, &DeleteParams::default()).await;
}
