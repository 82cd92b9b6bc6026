//! The operator against the real control plane: a Workspace becomes a
//! Ready workspace on fake nodes; updates converge; stop/start; a quiet
//! workspace causes no writes; restarts lose nothing; delete cleans up and
//! keeps or removes the home volume as asked; fifty at once.
//! Starts: the test control plane (hack/cluster), the operator in-process.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::Resource;
use kube_coder_cluster_tests::{
    client, create_workspace, eventually, install_crd, operator_running, wait_namespace_gone,
    wait_phase, ws_name,
};
use operator::crd::{Phase, Workspace};
use serde_json::json;

async fn setup() -> (kube::Client, Api<Workspace>) {
    let client = client().await;
    install_crd(&client).await;
    operator_running();
    (client.clone(), Api::all(client))
}

async fn deployment(client: &kube::Client, name: &str) -> Option<Deployment> {
    Api::<Deployment>::namespaced(client.clone(), &format!("ws-{name}"))
        .get_opt("workspace")
        .await
        .unwrap()
}

/// name → resourceVersion of every object the operator made for `name`.
async fn versions(client: &kube::Client, name: &str) -> BTreeMap<String, String> {
    let ns = format!("ws-{name}");
    let lp = ListParams::default().labels(&format!("kube-coder.dev/workspace={name}"));
    let mut out = BTreeMap::new();
    macro_rules! collect {
        ($t:ty) => {
            for o in Api::<$t>::namespaced(client.clone(), &ns)
                .list(&lp)
                .await
                .unwrap()
            {
                out.insert(
                    format!(
                        "{}/{}",
                        <$t as k8s_openapi::Resource>::KIND,
                        o.meta().name.clone().unwrap()
                    ),
                    o.meta().resource_version.clone().unwrap(),
                );
            }
        };
    }
    collect!(ServiceAccount);
    collect!(Secret);
    collect!(PersistentVolumeClaim);
    collect!(ResourceQuota);
    collect!(LimitRange);
    collect!(NetworkPolicy);
    collect!(Deployment);
    collect!(Service);
    collect!(Ingress);
    let ns_obj = Api::<Namespace>::all(client.clone())
        .get(&ns)
        .await
        .unwrap();
    out.insert(
        "Namespace".into(),
        ns_obj.metadata.resource_version.unwrap(),
    );
    out
}

async fn token(client: &kube::Client, name: &str) -> String {
    let s = Api::<Secret>::namespaced(client.clone(), &format!("ws-{name}"))
        .get("workspace-credentials")
        .await
        .unwrap();
    String::from_utf8(s.data.unwrap()["api-token"].0.clone()).unwrap()
}

/// Wake a reconcile without changing the spec, and wait until it ran.
async fn nudge(api: &Api<Workspace>, name: &str) -> String {
    let stats = &operator_running().stats;
    let before = stats.reconciles.load(Ordering::Relaxed);
    let ws = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"test/nudge": format!("{before}")}}}),
            ),
        )
        .await
        .unwrap();
    eventually("a reconcile after the nudge", 30, || async {
        (stats.reconciles.load(Ordering::Relaxed) > before).then_some(())
    })
    .await;
    // Let any write it would make land.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    ws.metadata.resource_version.unwrap()
}

#[tokio::test]
async fn a_workspace_becomes_ready_converges_stops_starts_and_is_deleted_keeping_its_home() {
    let (client, api) = setup().await;
    let name = ws_name("life");
    create_workspace(
        &client,
        &api,
        &name,
        json!({"ingress": {"host": format!("{name}.dev.example.com")}}),
    )
    .await;
    let ws = wait_phase(&api, &name, Phase::Ready, 90).await;
    let status = ws.status.unwrap();
    assert_eq!(
        status.url.as_deref(),
        Some(format!("https://{name}.dev.example.com/").as_str())
    );
    assert_eq!(
        status.api_url.as_deref(),
        Some(format!("https://{name}-api.dev.example.com/").as_str())
    );
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"));

    // Everything docs/operator.md lists is there.
    let ns = format!("ws-{name}");
    let v = versions(&client, &name).await;
    for key in [
        "ServiceAccount/workspace",
        "Secret/workspace-credentials",
        "PersistentVolumeClaim/home",
        "ResourceQuota/workspace-quota",
        "LimitRange/workspace-limits",
        "NetworkPolicy/default-deny",
        "NetworkPolicy/workspace-ingress",
        "NetworkPolicy/workspace-egress",
        "Deployment/workspace",
        "Service/workspace",
        "Ingress/dashboard",
        "Ingress/api",
        "Namespace",
    ] {
        assert!(v.contains_key(key), "{key} missing: {v:?}");
    }
    let namespace = Api::<Namespace>::all(client.clone())
        .get(&ns)
        .await
        .unwrap();
    assert_eq!(
        namespace.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let first_token = token(&client, &name).await;

    // A reconcile of an unchanged Workspace writes nothing: not its
    // objects, not its status (counted at the operator, and checked by
    // resourceVersions).
    let stats = &operator_running().stats;
    let writes = stats.writes_for(&name);
    let ws_version = nudge(&api, &name).await;
    assert_eq!(
        stats.writes_for(&name),
        writes,
        "a quiet reconcile made API writes"
    );
    assert_eq!(
        versions(&client, &name).await,
        v,
        "a quiet reconcile changed objects"
    );
    let now = api.get(&name).await.unwrap();
    assert_eq!(
        now.metadata.resource_version.unwrap(),
        ws_version,
        "a quiet reconcile wrote the status"
    );

    // Drift is put back.
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .patch(
            "workspace",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    eventually("the drifted replica count to be put back", 30, || async {
        (deployment(&client, &name).await?.spec.replicas == Some(1)).then_some(())
    })
    .await;

    // Updates converge: resources and auth mode.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            "auth": {"type": "none", "readOnly": true}}})),
    )
    .await
    .unwrap();
    wait_phase(&api, &name, Phase::Ready, 60).await;
    let d = deployment(&client, &name).await.unwrap();
    let c = &d.spec.template.spec.unwrap().containers[0];
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "1Gi"
    );
    let args = c.args.clone().unwrap();
    assert!(
        args.contains(&"--auth=none".to_string()) && args.contains(&"--read-only".to_string()),
        "{args:?}"
    );
    assert_eq!(
        token(&client, &name).await,
        first_token,
        "the API token changed on update"
    );

    // Stop and start.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"running": false}})),
    )
    .await
    .unwrap();
    wait_phase(&api, &name, Phase::Stopped, 60).await;
    assert_eq!(
        deployment(&client, &name).await.unwrap().spec.replicas,
        Some(0)
    );
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"running": true}})),
    )
    .await
    .unwrap();
    wait_phase(&api, &name, Phase::Ready, 60).await;

    // Delete: the workload goes, the namespace and home volume stay.
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("the Deployment to be garbage collected", 60, || async {
        deployment(&client, &name).await.is_none().then_some(())
    })
    .await;
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get_opt("home")
        .await
        .unwrap();
    assert!(pvc.is_some(), "the retained home volume was deleted");
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    eventually("the credentials to be garbage collected", 60, || async {
        secrets
            .get_opt("workspace-credentials")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn without_retain_delete_removes_the_namespace_and_home() {
    let (client, api) = setup().await;
    let name = ws_name("gone");
    create_workspace(&client, &api, &name, json!({"storage": {"storageClassName": "kube-coder-test", "size": "1Gi", "retainOnDelete": false}})).await;
    wait_phase(&api, &name, Phase::Ready, 90).await;
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_namespace_gone(&client, &name, 120).await;
}

#[tokio::test]
async fn an_operator_restart_changes_nothing() {
    let (client, api) = setup().await;
    let name = ws_name("restart");
    create_workspace(&client, &api, &name, json!({})).await;
    wait_phase(&api, &name, Phase::Ready, 90).await;
    let before = versions(&client, &name).await;
    let token_before = token(&client, &name).await;
    let op = operator_running();
    op.stop();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    op.start();
    let writes = op.stats.writes_for(&name);
    nudge(&api, &name).await;
    assert_eq!(
        op.stats.writes_for(&name),
        writes,
        "a restarted operator made API writes"
    );
    assert_eq!(
        versions(&client, &name).await,
        before,
        "a restarted operator rewrote objects"
    );
    assert_eq!(token(&client, &name).await, token_before);
    api.delete(&name, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn fifty_workspaces_at_once() {
    let (client, api) = setup().await;
    let names: Vec<String> = (0..50).map(|i| ws_name(&format!("many{i}"))).collect();
    for name in &names {
        create_workspace(&client, &api, name, json!({"storage": {"storageClassName": "kube-coder-test", "size": "1Gi", "retainOnDelete": false}})).await;
    }
    for name in &names {
        wait_phase(&api, name, Phase::Ready, 240).await;
    }
    for name in &names {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
}
