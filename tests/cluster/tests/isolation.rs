//! Tenant isolation of operator-made workspaces, proven by the API server:
//! SubjectAccessReviews and impersonated requests as a workspace's
//! ServiceAccount, and Pod Security admission in a workspace namespace.
//! (NetworkPolicy enforcement needs a CNI, which the test cluster has
//! not; the policies' content is unit-tested in the operator crate.)
//! Starts: the test control plane, the operator in-process.

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube_coder_cluster_tests::{
    client, create_workspace, install_crd, operator_running, wait_phase, ws_name,
};
use operator::crd::{Phase, Workspace};
use serde_json::json;

async fn ready_workspace(client: &kube::Client, api: &Api<Workspace>, name: &str) {
    create_workspace(client, api, name, json!({})).await;
    wait_phase(api, name, Phase::Ready, 90).await;
}

/// Whether the workspace ServiceAccount of `ws_ns` may do `verb` on
/// `resource` (in `group`) in `namespace` (None: cluster-wide).
async fn allowed(
    client: &kube::Client,
    ws_ns: &str,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    let sars: Api<SubjectAccessReview> = Api::all(client.clone());
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": format!("system:serviceaccount:{ws_ns}:workspace"),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ws_ns}"), "system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": namespace},
        }
    }))
    .unwrap();
    let answer = sars.create(&PostParams::default(), &review).await.unwrap();
    answer.status.map(|s| s.allowed).unwrap_or(false)
}

#[tokio::test]
async fn a_workspace_identity_reaches_nothing_and_privileged_pods_are_refused() {
    let client = client().await;
    install_crd(&client).await;
    operator_running();
    let api: Api<Workspace> = Api::all(client.clone());
    let (a, b) = (ws_name("iso-a"), ws_name("iso-b"));
    ready_workspace(&client, &api, &a).await;
    ready_workspace(&client, &api, &b).await;
    let (ns_a, ns_b) = (format!("ws-{a}"), format!("ws-{b}"));

    // The other tenant's namespace: nothing at all.
    for (verb, group, resource) in [
        ("get", "", "secrets"),
        ("list", "", "secrets"),
        ("list", "", "pods"),
        ("get", "", "configmaps"),
        ("create", "", "pods"),
        ("get", "", "persistentvolumeclaims"),
        ("list", "apps", "deployments"),
        ("create", "batch", "jobs"),
    ] {
        assert!(
            !allowed(&client, &ns_a, verb, group, resource, Some(&ns_b)).await,
            "{a} may {verb} {resource} in {ns_b}"
        );
    }
    // Its own namespace: no Secrets, no Pods, no Jobs, no RBAC.
    for (verb, group, resource) in [
        ("get", "", "secrets"),
        ("list", "", "secrets"),
        ("watch", "", "secrets"),
        ("create", "", "pods"),
        ("create", "batch", "jobs"),
        ("create", "batch", "cronjobs"),
        ("create", "apps", "deployments"),
        ("create", "rbac.authorization.k8s.io", "rolebindings"),
        ("update", "", "serviceaccounts"),
    ] {
        assert!(
            !allowed(&client, &ns_a, verb, group, resource, Some(&ns_a)).await,
            "{a} may {verb} {resource} in its own namespace"
        );
    }
    // Cluster-wide: not even the list of namespaces or workspaces.
    for (verb, group, resource) in [
        ("list", "", "namespaces"),
        ("list", "kube-coder.dev", "workspaces"),
        ("list", "", "secrets"),
    ] {
        assert!(
            !allowed(&client, &ns_a, verb, group, resource, None).await,
            "{a} may {verb} {resource} cluster-wide"
        );
    }
    // The review is not vacuous: the admin may.
    let sars: Api<SubjectAccessReview> = Api::all(client.clone());
    let admin: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "kube-coder-admin", "groups": ["system:masters"],
                 "resourceAttributes": {"verb": "get", "resource": "secrets", "namespace": ns_b}}
    }))
    .unwrap();
    assert!(
        sars.create(&PostParams::default(), &admin)
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );

    // A real request as the ServiceAccount (impersonated) is refused.
    let mut config = kube::Config::infer().await.unwrap();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns_a}:workspace"));
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{ns_a}"),
    ]);
    let as_workspace = kube::Client::try_from(config).unwrap();
    for ns in [&ns_a, &ns_b] {
        match Api::<Secret>::namespaced(as_workspace.clone(), ns)
            .list(&ListParams::default())
            .await
        {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
            other => panic!("listing Secrets in {ns} as the workspace: {other:?}"),
        }
    }

    // The workspace pod itself passes `restricted`: it was admitted.
    let pods = Api::<Pod>::namespaced(client.clone(), &ns_a)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(!pods.items.is_empty(), "no workspace pod was admitted");

    // A privileged pod in a workspace namespace is refused by admission.
    let privileged: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "escape"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                                 "securityContext": {"privileged": true}}]}
    }))
    .unwrap();
    match Api::<Pod>::namespaced(client.clone(), &ns_a)
        .create(&PostParams::default(), &privileged)
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(e.message.contains("PodSecurity"), "{}", e.message);
        }
        other => panic!("a privileged pod was not refused: {other:?}"),
    }

    for name in [&a, &b] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
}
