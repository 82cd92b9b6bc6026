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

#[tokio::test]
async fn a_stopped_workspace_wakes_on_a_request_with_its_own_credential_only() {
    use k8s_openapi::api::core::v1::Event;
    use std::time::{Duration, Instant};
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    let operator = operator_for_real_node();
    expose_waker(&client, operator).await;
    let name = ws_name("wake");
    let (dash, api) = hosts(&name);
    let (_, token) = real_node_workspace(&client, &name, json!({"ingress": {"host": dash}})).await;
    let http = via_ingress(&[&dash, &api]);
    let whoami = || http.get(format!("http://{api}/api/whoami"));
    eventually("the api host to answer through the ingress", 60, || async {
        let r = whoami().bearer_auth(&token).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // Stopped (as an idle stop does: spec.running false), its hosts lead
    // to the waker, which says so and how to start it.
    let workspaces: Api<operator::crd::Workspace> = Api::all(client.clone());
    let (code, _, err) = kube_coder(&["user", "stop", &name], "").await;
    assert_eq!(code, 0, "{err}");
    let refusal = eventually("the api host to lead to the waker", 60, || async {
        let r = whoami().send().await.ok()?;
        (r.headers().contains_key("x-kube-coder-waker") && r.status() == 401).then_some(r)
    })
    .await;
    let body: Value = refusal.json().await.unwrap();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("stopped") && error.contains("API token"),
        "{body}"
    );

    // Nobody without the workspace's credential starts anything: no
    // credential, another token, a wrong login, on either host.
    let (user, password) = basic_login(&name).await;
    let page = |host: &str| {
        http.get(format!("http://{host}/"))
            .header("accept", "text/html")
    };
    // Both hosts, each its own Ingress, which the controller may take up
    // one reload apart.
    eventually("the dashboard host to lead to the waker", 30, || async {
        let r = page(&dash).send().await.ok()?;
        r.headers().contains_key("x-kube-coder-waker").then_some(())
    })
    .await;
    let tries = [
        whoami().send().await.unwrap().status(),
        whoami()
            .bearer_auth("0".repeat(64))
            .send()
            .await
            .unwrap()
            .status(),
        whoami()
            .basic_auth(&user, Some(&password))
            .send()
            .await
            .unwrap()
            .status(),
        page(&dash).send().await.unwrap().status(),
        page(&dash)
            .basic_auth(&user, Some("wrong"))
            .send()
            .await
            .unwrap()
            .status(),
    ];
    assert!(tries.iter().all(|s| *s == 401), "{tries:?}");
    let r = page(&dash).send().await.unwrap();
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ws = workspaces.get(&name).await.unwrap();
    assert!(
        !ws.spec.running,
        "a request without the credential started it"
    );

    // A browser with the dashboard's login: a page saying it is starting,
    // which follows its progress; the workspace starts.
    let woken = Instant::now();
    let r = page(&dash)
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let html = r.text().await.unwrap();
    assert!(html.contains(&format!("Starting {name}")), "{html}");
    assert!(html.contains("/.kube-coder/wake"), "{html}");
    assert!(
        workspaces.get(&name).await.unwrap().spec.running,
        "not started"
    );
    // What the page asks while it waits: the waker's view of the progress.
    let status = http
        .get(format!("http://{dash}/.kube-coder/wake"))
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    if status.headers().contains_key("x-kube-coder-waker") {
        let s: Value = status.json().await.unwrap();
        assert_eq!(s["workspace"], name.as_str(), "{s}");
    }
    // Ready, and the same request as before succeeds through the same host.
    eventually("the woken workspace's api host to answer", 180, || async {
        let r = whoami().bearer_auth(&token).send().await.ok()?;
        (r.status() == 200 && !r.headers().contains_key("x-kube-coder-waker")).then_some(())
    })
    .await;
    println!(
        "woken by a browser: answering through the ingress {:.1} s after the request",
        woken.elapsed().as_secs_f64()
    );
    // The two hosts are two Ingresses, which the controller may take up
    // one reload apart (Traefik's is 2 s): until then the dashboard host
    // still leads to the waker, whose page reloads once it no longer does.
    eventually("the dashboard itself once Ready", 30, || async {
        let r = page(&dash)
            .basic_auth(&user, Some(&password))
            .send()
            .await
            .ok()?;
        (r.status() == 200 && !r.headers().contains_key("x-kube-coder-waker")).then_some(())
    })
    .await;
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Woken")
                && e.message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("dashboard login")),
        "no Woken event: {:?}",
        events
            .items
            .iter()
            .map(|e| (&e.reason, &e.message))
            .collect::<Vec<_>>()
    );

    // Stopped again; an API client with the token: 503 and Retry-After,
    // then the same request succeeds.
    let (code, _, err) = kube_coder(&["user", "stop", &name], "").await;
    assert_eq!(code, 0, "{err}");
    eventually("the api host to lead to the waker again", 60, || async {
        let r = whoami().send().await.ok()?;
        r.headers().contains_key("x-kube-coder-waker").then_some(())
    })
    .await;
    let woken = Instant::now();
    let r = whoami().bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["workspace"], name.as_str(), "{body}");
    eventually("the api host to answer after a token wake", 180, || async {
        let r = whoami().bearer_auth(&token).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    println!(
        "woken by an API client: answering {:.1} s after the request",
        woken.elapsed().as_secs_f64()
    );

    workspaces.delete(&name, &Default::default()).await.unwrap();
}
