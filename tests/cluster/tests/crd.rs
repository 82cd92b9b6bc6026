//! The API server itself refuses unsafe Workspaces (CEL and OpenAPI rules
//! in the CRD), and fills in the safe defaults.

use kube::api::{Api, DeleteParams, PostParams};
use kube_coder_cluster_tests::{client, install_crd, unique};
use operator::crd::Workspace;
use serde_json::json;

fn workspace(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "kube-coder.dev/v1alpha1", "kind": "Workspace",
           "metadata": {"name": name}, "spec": spec})
}

async fn create(
    api: &Api<kube::api::DynamicObject>,
    body: serde_json::Value,
) -> Result<(), String> {
    let obj: kube::api::DynamicObject = serde_json::from_value(body).unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(format!("{} {}", s.code, s.message)),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn unsafe_workspaces_are_refused_by_the_api_server() {
    let client = client().await;
    install_crd(&client).await;
    let ar = kube::core::ApiResource::erase::<Workspace>(&());
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar);
    let n = || {
        unique("crd")
            .replace('-', "")
            .chars()
            .take(30)
            .collect::<String>()
    };
    let name = |s: String| format!("t{s}");

    let refused = [
        (
            json!({"owner": {"name": "a"}, "auth": {"type": "none"}}),
            "auth.type none requires auth.readOnly",
        ),
        (
            json!({"owner": {"name": "a"}, "auth": {"type": "oauth2"}}),
            "auth.type oauth2 requires auth.oauth2",
        ),
        (
            json!({"owner": {"name": "a"}, "auth": {"type": "oauth2", "oauth2": {"clientSecretRef": "gh"}}}),
            "needs the owner's identity at the provider",
        ),
        (
            json!({"owner": {"name": "a"}, "build": {"mode": "buildkit"}}),
            "acknowledgeBuildkitRisk",
        ),
        (
            json!({"owner": {"name": "a"}, "storage": {"size": "lots"}}),
            "spec.storage.size",
        ),
        (
            json!({"owner": {"name": "a"}, "resources": {"requests": {"cpu": "4", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}}),
            "limits must be at least",
        ),
        (
            json!({"owner": {"name": "a"}, "ingress": {"host": "*.example.com"}}),
            "spec.ingress.host",
        ),
        (
            json!({"owner": {"name": "a"}, "ingress": {"host": "a.example.com", "apiHost": "a.example.com"}}),
            "must differ",
        ),
        (
            json!({"owner": {"name": "a"}, "network": {"egress": {"denyCIDRs": ["10.0.0.0/33"]}}}),
            "must hold CIDRs",
        ),
        (
            json!({"owner": {"name": "a"}, "idle": {"stopAfter": "10s"}}),
            "at least 1m",
        ),
        (json!({"owner": {"name": "a b"}}), "spec.owner.name"),
        (
            json!({"owner": {"name": "a"}, "auth": {"type": "root"}}),
            "spec.auth.type",
        ),
    ];
    for (spec, why) in refused {
        let err = create(&api, workspace(&name(n()), spec.clone()))
            .await
            .expect_err(&format!("{spec} was accepted"));
        assert!(
            err.contains(why),
            "{spec}: refused for another reason: {err}"
        );
        assert!(err.starts_with("422"), "{err}");
    }
    let err = create(&api, workspace("Bad_Name", json!({"owner": {"name": "a"}})))
        .await
        .unwrap_err();
    assert!(err.contains("422") || err.contains("400"), "{err}");
    let err = create(
        &api,
        workspace(
            &format!("x{}", "a".repeat(41)),
            json!({"owner": {"name": "a"}}),
        ),
    )
    .await
    .unwrap_err();
    assert!(err.contains("at most 40 characters"), "{err}");

    // Accepted, with the safe defaults filled in by the API server.
    let ok = name(n());
    create(
        &api,
        workspace(
            &ok,
            json!({"owner": {"name": "a"}, "auth": {"type": "none", "readOnly": true}}),
        ),
    )
    .await
    .expect("a read-only public workspace is allowed");
    let typed: Api<Workspace> = Api::all(client.clone());
    let ws = typed.get(&ok).await.unwrap();
    assert!(ws.spec.running);
    assert!(ws.spec.storage.retain_on_delete);
    assert_eq!(ws.spec.resources.limits.memory, "4Gi");
    typed.delete(&ok, &DeleteParams::default()).await.unwrap();
}
