//! The Ingresses the operator writes, routed for real by the test cluster's
//! ingress controller (Traefik in a pod on the real node, hack/node.sh):
//! each workspace's dashboard and api hosts lead to its own ports and
//! nowhere else, another workspace's host never reaches it, and the class
//! and namespace the operator is given are the controller's own (its
//! traffic is the traffic the workspace's NetworkPolicy lets in).

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, PostParams};
use kube_coder_cluster_tests::*;
use serde_json::{json, Value};

fn hosts(name: &str) -> (String, String) {
    (format!("{name}.ws.test"), format!("{name}-api.ws.test"))
}

#[tokio::test]
async fn each_host_reaches_its_own_workspace_port_through_the_real_ingress() {
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    operator_for_real_node();
    let (a, b) = (ws_name("ing-a"), ws_name("ing-b"));
    let ((_, token_a), (_, token_b)) = tokio::join!(
        real_node_workspace(&client, &a, json!({"ingress": {"host": hosts(&a).0}})),
        real_node_workspace(&client, &b, json!({"ingress": {"host": hosts(&b).0}})),
    );
    let ((dash_a, api_a), (dash_b, api_b)) = (hosts(&a), hosts(&b));

    // The operator gave both Ingresses the controller's class.
    let ingresses = Api::<Ingress>::namespaced(client.clone(), &format!("ws-{a}"))
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(ingresses.items.len(), 2);
    for i in &ingresses.items {
        let class = i
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref());
        assert_eq!(class, Some(INGRESS_CLASS), "{:?}", i.metadata.name);
    }

    let http = via_ingress(&[&dash_a, &api_a, &dash_b, &api_b, "nobody.ws.test"]);
    let whoami = |host: &str, token: &str| {
        http.get(format!("http://{host}/api/whoami"))
            .bearer_auth(token)
            .send()
    };
    // The controller picks a new Ingress up within moments.
    eventually("the api host to answer through the ingress", 60, || async {
        let r = whoami(&api_a, &token_a).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    eventually("the second api host to answer", 60, || async {
        let r = whoami(&api_b, &token_b).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // Each api host answers as its own workspace: a server knows its own
    // token only (each workspace's is its own random one).
    for (host, token) in [(&api_a, &token_a), (&api_b, &token_b)] {
        let me: Value = whoami(host, token).await.unwrap().json().await.unwrap();
        assert_eq!(me["via"], "bearer", "{host}: {me}");
    }
    // Another workspace's host never reaches this one: B's host with A's
    // token is B's server refusing a token it does not know.
    let r = whoami(&api_b, &token_a).await.unwrap();
    assert_eq!(r.status(), 401, "A's token on B's host");
    let r = whoami(&api_a, &token_b).await.unwrap();
    assert_eq!(r.status(), 401, "B's token on A's host");

    // The dashboard host leads to the dashboard port (its own password
    // login); the api host to the api port, which has no dashboard and
    // takes no password.
    let (user_a, password_a) = basic_login(&a).await;
    let page = |host: &str| http.get(format!("http://{host}/"));
    let r = page(&dash_a).send().await.unwrap();
    assert_eq!(r.status(), 401, "the dashboard asks for its login");
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let r = page(&dash_a)
        .basic_auth(&user_a, Some(&password_a))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text().await.unwrap().contains("<html"),
        "the dashboard page"
    );
    let r = page(&api_a)
        .basic_auth(&user_a, Some(&password_a))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(
        !status.is_success() && !body.contains("<html"),
        "the api host served the dashboard: {status} {body}"
    );
    let r = http
        .get(format!("http://{api_a}/api/whoami"))
        .basic_auth(&user_a, Some(&password_a))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the api host took a password");
    // A's password on B's dashboard host: B's server turns it away.
    let r = page(&dash_b)
        .basic_auth(&user_a, Some(&password_a))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "A's password on B's dashboard host");

    // A host no Workspace has: the controller's own not-found.
    let r = page("nobody.ws.test").send().await.unwrap();
    assert_eq!(r.status(), 404);

    // A stopped workspace's hosts reach nothing of it.
    let workspaces: Api<operator::crd::Workspace> = Api::all(client.clone());
    let (code, _, err) = kube_coder(&["user", "stop", &a], "").await;
    assert_eq!(code, 0, "{err}");
    eventually("A's api host to stop answering", 120, || async {
        let r = whoami(&api_a, &token_a).await.ok()?;
        (r.status() != 200).then_some(())
    })
    .await;
    let r = whoami(&api_b, &token_b).await.unwrap();
    assert_eq!(r.status(), 200, "B still answers");

    for name in [&a, &b] {
        workspaces.delete(name, &Default::default()).await.unwrap();
    }
}

#[tokio::test]
async fn a_workspace_naming_another_ingress_class_is_refused_with_the_clusters() {
    let client = client().await;
    install_crd(&client).await;
    operator_for_real_node();
    let name = ws_name("ing-class");
    let spec: operator::crd::WorkspaceSpec = serde_json::from_value(json!({
        "owner": {"name": name},
        "ingress": {"host": hosts(&name).0, "className": "nginx"},
    }))
    .unwrap();
    let workspaces: Api<operator::crd::Workspace> = Api::all(client.clone());
    workspaces
        .create(
            &PostParams::default(),
            &operator::crd::Workspace::new(&name, spec),
        )
        .await
        .unwrap();
    let message = eventually("the Workspace to be refused", 60, || async {
        let status = workspaces.get(&name).await.ok()?.status?;
        (status.phase == Some(operator::crd::Phase::Failed)).then_some(status.message)
    })
    .await
    .unwrap_or_default();
    assert!(
        message.contains("\"nginx\"") && message.contains(&format!("\"{INGRESS_CLASS}\"")),
        "{message}"
    );
    assert!(message.contains(INGRESS_NAMESPACE), "{message}");
    // Nothing routes it: no Ingress was written.
    let ingresses = Api::<Ingress>::namespaced(client.clone(), &format!("ws-{name}"))
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    assert_eq!(ingresses, 0);
    workspaces.delete(&name, &Default::default()).await.unwrap();
}
