//! Smoke test of the test control plane itself: the parts later tests rely
//! on behave as in a real cluster. Needs `hack/cluster up` (make test).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_coder_cluster_tests::{client, eventually, unique};
use serde_json::json;

const MANAGER: &str = "kube-coder-smoke";

/// Create a namespace and wait for its `default` ServiceAccount, as any
/// client creating pods must (the controller-manager makes it).
async fn namespace(c: &kube::Client, name: &str, labels: serde_json::Value) -> Api<Namespace> {
    let nss: Api<Namespace> = Api::all(c.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    nss.patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&ns))
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), name);
    eventually("the default ServiceAccount", 60, || async {
        sas.get_opt("default").await.ok().flatten().map(|_| ())
    })
    .await;
    nss
}

#[tokio::test]
async fn apply_deploy_ready_and_namespace_delete_cleans_up() {
    let c = client().await;
    let ns = unique("smoke");
    let nss = namespace(&c, &ns, json!({})).await;

    // Server-side apply, twice: the second is a no-op for the same manager.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), &ns);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}});
    let first = cms
        .patch("cfg", &PatchParams::apply(MANAGER), &Patch::Apply(&cm))
        .await
        .unwrap();
    let again = cms
        .patch("cfg", &PatchParams::apply(MANAGER), &Patch::Apply(&cm))
        .await
        .unwrap();
    assert_eq!(
        first.metadata.resource_version,
        again.metadata.resource_version
    );
    assert_eq!(again.data.unwrap()["a"], "1");

    // A Deployment becomes Ready on the fake nodes (scheduler + kwok).
    let deploys: Api<Deployment> = Api::namespaced(c.clone(), &ns);
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}
            }
        }
    });
    deploys
        .patch("web", &PatchParams::apply(MANAGER), &Patch::Apply(&d))
        .await
        .unwrap();
    eventually("the deployment to have 2 ready replicas", 90, || async {
        let d = deploys.get("web").await.ok()?;
        (d.status?.ready_replicas? == 2).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
    let list = pods.list(&Default::default()).await.unwrap();
    for p in &list.items {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(node.starts_with("fake-node-"), "scheduled to {node}");
    }

    // Deleting the namespace removes what is in it (namespace controller).
    nss.delete(&ns, &DeleteParams::default()).await.unwrap();
    eventually("the namespace to be gone", 120, || async {
        match nss.get_opt(&ns).await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(cms.get_opt("cfg").await.unwrap().is_none());
}

#[tokio::test]
async fn subject_access_review_answers() {
    let c = client().await;
    let sars: Api<SubjectAccessReview> = Api::all(c.clone());
    let review = |user: &str, groups: Vec<&str>| {
        serde_json::from_value::<SubjectAccessReview>(json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {
                "user": user, "groups": groups,
                "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "secrets"}
            }
        }))
        .unwrap()
    };
    let nobody = sars
        .create(&PostParams::default(), &review("nobody", vec![]))
        .await
        .unwrap();
    assert!(!nobody.status.unwrap().allowed);
    let admin = sars
        .create(
            &PostParams::default(),
            &review("root", vec!["system:masters"]),
        )
        .await
        .unwrap();
    assert!(admin.status.unwrap().allowed);
}

#[tokio::test]
async fn pod_security_admission_refuses_a_privileged_pod() {
    let c = client().await;
    let ns = unique("psa");
    let nss = namespace(
        &c,
        &ns,
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evil"},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/x:1",
                                 "securityContext": {"privileged": true}}]}
    }))
    .unwrap();
    let err = pods.create(&PostParams::default(), &pod).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("violates PodSecurity"), "{msg}");
    nss.delete(&ns, &DeleteParams::default()).await.unwrap();
}
