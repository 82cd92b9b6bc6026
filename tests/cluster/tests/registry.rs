//! Image pull secrets on the real node: the workspace image, pushed to a
//! local registry (distribution/v3, built from the Go module proxy) that
//! requires a password, is pulled by the kubelet with the Workspace's
//! `image.pullSecret` and refused without it, and the Workspace's status
//! says why. The copied Secret is the kubelet's alone: the workspace's
//! identity cannot read it.
//! Starts: the registry on 127.0.0.1 (containerd pulls from localhost over
//! plain HTTP), the operator in-process; uses the node's containerd
//! (`ctr`) to push the layers of the image it already holds.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use kube_coder_cluster_tests::registry::{node_ctr, start_registry, Registry};
use kube_coder_cluster_tests::{
    client, eventually, install_crd, operator_for_real_node, require_real_node,
    workspace_may_secret, ws_name,
};
use operator::crd::{Phase, Workspace};
use serde_json::json;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Pushes, as `to`, the image `from` of the registry's workspace
/// repository with a label naming `to` added to its config: the same
/// layers, a new image ID.
async fn relabel(registry: &Registry, password: &str, from: &str, to: &str) {
    use sha2::Digest;
    let http = reqwest::Client::new();
    let base = format!("http://{}/v2/kube-coder/workspace", registry.addr);
    let get = |url: String| async {
        http.get(url)
            .basic_auth("puller", Some(password))
            .header("accept", MANIFEST_TYPES)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let mut manifest = get(format!("{base}/manifests/{from}")).await;
    // An index: the image for this machine's platform (the only one built).
    if let Some(first) = manifest["manifests"].as_array().and_then(|m| m.first()) {
        let digest = first["digest"].as_str().unwrap().to_string();
        manifest = get(format!("{base}/manifests/{digest}")).await;
    }
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config = get(format!("{base}/blobs/{config_digest}")).await;
    config["config"]["Labels"]["dev.kube-coder.test.image"] = json!(to);
    let config = serde_json::to_vec(&config).unwrap();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&config)));
    // A monolithic upload: POST for a location, PUT the bytes there.
    let started = http
        .post(format!("{base}/blobs/uploads/"))
        .basic_auth("puller", Some(password))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with('/') {
        format!("http://{}{location}", registry.addr)
    } else {
        location
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    http.put(format!("{location}{separator}digest={digest}"))
        .basic_auth("puller", Some(password))
        .header("content-type", "application/octet-stream")
        .body(config.clone())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    manifest["config"]["digest"] = json!(digest);
    manifest["config"]["size"] = json!(config.len());
    let media_type = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    http.put(format!("{base}/manifests/{to}"))
        .basic_auth("puller", Some(password))
        .header("content-type", media_type)
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

fn workspace(name: &str, repository: &str, tag: &str, pull_secret: Option<&str>) -> Workspace {
    let mut image = json!({"repository": repository, "tag": tag});
    if let Some(s) = pull_secret {
        image["pullSecret"] = json!(s);
    }
    let spec = serde_json::from_value(json!({
        "owner": {"name": name},
        "storage": {"size": "1Gi"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "image": image,
    }))
    .expect("a valid spec");
    Workspace::new(name, spec)
}

#[tokio::test]
async fn a_password_protected_image_is_pulled_with_the_pull_secret_and_refused_without() {
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    let settings = operator_for_real_node().settings();

    let (creds, _) =
        operator::manifests::credentials::Credentials::keep_or_generate("puller", None);
    let registry = start_registry("127.0.0.1", &creds.htpasswd).await;

    // An image of this run's own, only in the registry: the workspace
    // image's layers (pushed from the node's containerd) under a config
    // with a label of this run's, so its image ID is new to the node. (A
    // kubelet that pulled an image ID with a secret then refuses that ID
    // to pods without one, whatever it is called, so the node's own
    // workspace image must stay out of this.)
    let source = settings.image_repository.clone() + ":" + &settings.image_tag;
    let repository = format!("{}/kube-coder/workspace", registry.addr);
    let tag = ws_name("pull");
    let password = creds.password.clone();
    node_ctr(&[
        "images",
        "push",
        "--plain-http",
        "--user",
        &format!("puller:{password}"),
        &format!("{repository}:base-{tag}"),
        &source,
    ]);
    relabel(&registry, &password, &format!("base-{tag}"), &tag).await;

    // The pull secret, where the operator copies it from.
    kube_coder_cluster_tests::apply_namespace(&client, &settings.operator_namespace).await;
    let secret_name = format!("{tag}-pull");
    let dockerconfig = registry.docker_config("puller", &creds.password);
    kube_coder_cluster_tests::registry::apply_docker_secret(
        &client,
        &settings.operator_namespace,
        &secret_name,
        &dockerconfig,
    )
    .await;

    let workspaces: Api<Workspace> = Api::all(client.clone());
    // Without the secret first, while the node holds no such image: the
    // registry refuses, and the status says so.
    let refused = ws_name("nopull");
    workspaces
        .create(
            &PostParams::default(),
            &workspace(&refused, &repository, &tag, None),
        )
        .await
        .unwrap();
    let message = eventually("the status to name the pull failure", 120, || async {
        let status = workspaces.get(&refused).await.ok()?.status?;
        let message = status.message.unwrap_or_default();
        message.contains("cannot start").then_some(message)
    })
    .await;
    assert!(
        message.contains("ErrImagePull") || message.contains("ImagePullBackOff"),
        "{message}"
    );
    assert!(
        message.contains(&tag),
        "the message names the image: {message}"
    );
    let phase = workspaces
        .get(&refused)
        .await
        .unwrap()
        .status
        .and_then(|s| s.phase);
    assert_eq!(phase, Some(Phase::Provisioning));

    // With the secret: pulled, Ready.
    let pulled = ws_name("pull");
    workspaces
        .create(
            &PostParams::default(),
            &workspace(&pulled, &repository, &tag, Some(&secret_name)),
        )
        .await
        .unwrap();
    eventually(
        "the workspace with the pull secret to be Ready",
        180,
        || async {
            let ws = workspaces.get(&pulled).await.ok()?;
            (ws.status?.phase == Some(Phase::Ready)).then_some(())
        },
    )
    .await;

    // The copy is an image pull secret of the namespace and nothing else:
    // neither the workspace's identity nor anything in the pod reads it.
    let ns = format!("ws-{pulled}");
    let copy = Api::<Secret>::namespaced(client.clone(), &ns)
        .get(operator::names::PULL_SECRET)
        .await
        .unwrap();
    assert_eq!(
        copy.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    for (verb, name) in [
        ("get", Some(operator::names::PULL_SECRET)),
        ("list", None),
        ("watch", None),
    ] {
        assert!(
            !workspace_may_secret(&client, &ns, verb, &ns, name).await,
            "the workspace may {verb} secrets in {ns}"
        );
    }
    assert!(
        !workspace_may_secret(
            &client,
            &ns,
            "get",
            &settings.operator_namespace,
            Some(&secret_name)
        )
        .await,
        "the workspace may read the operator's pull secret"
    );
    for name in [&refused, &pulled] {
        workspaces
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    drop(registry);
}
