//! Model keys on the real node: a Workspace with `models` gets base URLs
//! pointing at its egress gateway and a placeholder key; the gateway's pod
//! alone mounts the keys (copied from the operator's namespace) and adds
//! them on the way to a provider over TLS (the stand-in provider of
//! tests/fixtures/model_provider.py at a public-range test host, its
//! certificate from a test CA the cluster's settings trust). From inside
//! the workspace pod (tasks over its API): curl and the real Claude Code
//! CLI of the workspace image get answers through the gateway, while the
//! same call straight to the provider with what the workspace holds is
//! refused; the month's usage shows on the workspace API, survives the
//! gateway's pod being replaced (it is kept in a ConfigMap only the
//! gateway may write), and once over the budget the answer is 429 naming
//! it. The key is nowhere in the workspace pod's files, mounts or
//! processes' environments, and SubjectAccessReviews show neither the
//! workspace's identity nor the gateway's may read it.
//! Starts: the control plane with its real node, an operator of this
//! binary's own (its settings name the test provider), a test host.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube_coder_cluster_tests::test_host::TestHost;
use kube_coder_cluster_tests::{
    answer_of, answers, assert_secret_absent, attrs, client, eventually, get_json, install_crd,
    launch_operator, real_node_settings, real_node_workspace, require_real_node, review, run_task,
    secret_search, ws_name, OperatorHandle,
};
use operator::settings::ModelProvider;
use serde_json::{json, Value};

const KEY: &str = "sk-ant-cluster-real-key-1f4e";
const PROVIDER: &str = "public.egress.test";

/// A CA and a certificate for the provider's name it signed.
fn test_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![PROVIDER.to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

fn operator(ca: String) -> &'static OperatorHandle {
    static OP: std::sync::OnceLock<OperatorHandle> = std::sync::OnceLock::new();
    OP.get_or_init(|| {
        launch_operator(move |_| operator::settings::Settings {
            model_providers: vec![
                ModelProvider::parse(&format!("anthropic:anthropic:https://{PROVIDER}")).unwrap(),
                ModelProvider::parse(&format!("openai:openai:https://{PROVIDER}/v1")).unwrap(),
            ],
            model_ca_bundle: Some(ca),
            ..real_node_settings()
        })
    })
}

#[tokio::test]
async fn model_keys_stay_in_the_gateway_on_the_real_node() {
    let client = client().await;
    require_real_node(&client).await;
    install_crd(&client).await;
    let (ca, cert, key) = test_ca();
    let settings = operator(ca).settings();

    // The cluster's keys, in the operator's namespace.
    let ns_api: Api<Namespace> = Api::all(client.clone());
    ns_api
        .patch(
            &settings.operator_namespace,
            &PatchParams::apply("kube-coder-tests"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": settings.operator_namespace}})),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.operator_namespace);
    // The cluster's keys, with this OpenAI key.
    let set_keys = |openai: &'static str| {
        let (secrets, name) = (secrets.clone(), settings.model_keys_secret.clone());
        async move {
            secrets
                .patch(
                    &name,
                    &PatchParams::apply("kube-coder-tests").force(),
                    &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
                                         "metadata": {"name": name},
                                         "stringData": {"anthropic": KEY, "openai": openai}})),
                )
                .await
                .unwrap();
        }
    };
    set_keys("sk-openai-cluster").await;

    // The provider, over TLS, at a public-range test host.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/model_provider.py")
        .display()
        .to_string();
    let accepted = json!({"anthropic": KEY, "openai": "sk-openai-cluster", "gemini": "-"});
    let program: Vec<String> = [
        "python3",
        &fixture,
        "--wait",
        "11.22.33.44",
        "443",
        &dir.path().join("cert.pem").display().to_string(),
        &dir.path().join("key.pem").display().to_string(),
        &accepted.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let _provider =
        TestHost::start_program("provider", Ipv4Addr::new(11, 22, 33, 44), 443, &program);

    let name = ws_name("models");
    let ns = format!("ws-{name}");
    let (api, token) = real_node_workspace(
        &client,
        &name,
        json!({"models": {"monthlyTokenBudget": 150}}),
    )
    .await;
    let http = reqwest::Client::new();

    // From inside: through the gateway with the placeholder, and straight
    // to the provider with the same (egress by address lets it try).
    let message =
        r#"{"model":"claude-test","max_tokens":32,"messages":[{"role":"user","content":"hi"}]}"#;
    let script = format!(
        "echo \"answer-env: $ANTHROPIC_BASE_URL $ANTHROPIC_API_KEY\"\n\
         echo \"answer-gateway: $(curl -sS -m 20 \"$ANTHROPIC_BASE_URL/v1/messages\" -H \"x-api-key: $ANTHROPIC_API_KEY\" -H 'content-type: application/json' -d '{message}' 2>&1 | tr '\\n' ' ')\"\n\
         echo \"answer-direct: $(curl -sS -m 20 -k https://{PROVIDER}/v1/messages -H \"x-api-key: $ANTHROPIC_API_KEY\" -H 'content-type: application/json' -d '{message}' 2>&1 | tr '\\n' ' ')\"\n\
         echo \"answer-claude: $(CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 timeout 40 claude -p 'Say hello' 2>&1 | tr '\\n' ' ')\"\n"
    );
    let (output, task) = run_task(&http, &api, &token, &script).await;
    assert_eq!(task["state"], "succeeded", "{task}\n{output}");
    let got = answers(&output);
    let answer = |k: &str| answer_of(&got, k, &output);
    assert_eq!(
        answer("env"),
        "http://egress-gateway:3130/anthropic kube-coder-egress-gateway",
        "{output}"
    );
    assert!(
        answer("gateway").contains("Hello from the test provider."),
        "{output}"
    );
    assert!(answer("direct").contains("invalid x-api-key"), "{output}");
    assert!(
        answer("claude").contains("Hello from the test provider."),
        "the real Claude Code CLI through the gateway:\n{output}"
    );

    // The month's usage, as the workspace API shows it.
    let usage = get_json(&http, &format!("{api}/api/usage"), &token).await;
    let used = usage["used"].as_u64().unwrap_or_default();
    assert!(used >= 42, "{usage}");
    assert_eq!(usage["budget"], 150, "{usage}");

    // The key is nowhere in the workspace pod: files, mounts, environments.
    let search = format!(
        "{}echo \"answer-mounts: $(grep -c 'model-keys\\|serviceaccount' /proc/mounts)\"\n\
         echo \"answer-token: $(ls /var/run/secrets/kubernetes.io/serviceaccount 2>&1 | head -1)\"\n",
        secret_search("key", KEY)
    );
    let (output, _) = run_task(&http, &api, &token, &search).await;
    let got = answers(&output);
    assert_secret_absent(&got, "key", &output);
    assert_eq!(got.get("mounts").map(String::as_str), Some("0"), "{output}");
    assert!(
        got.get("token").is_some_and(|t| t.contains("No such file")),
        "{output}"
    );

    // Neither identity in the namespace may read the key Secret; the
    // gateway's may change its usage ConfigMap and nothing else.
    let workspace_sa = format!("system:serviceaccount:{ns}:workspace");
    let gateway_sa = format!("system:serviceaccount:{ns}:egress-gateway");
    for user in [&workspace_sa, &gateway_sa] {
        for (verb, name) in [("get", Some("model-keys")), ("list", None), ("watch", None)] {
            assert!(
                !review(&client, user, &ns, attrs(&ns, verb, "secrets", name)).await,
                "{user} may {verb} secrets in {ns}"
            );
        }
        assert!(
            !review(
                &client,
                user,
                &settings.operator_namespace,
                attrs(
                    &settings.operator_namespace,
                    "get",
                    "secrets",
                    Some(&settings.model_keys_secret)
                )
            )
            .await,
            "{user} may read the cluster's keys"
        );
    }
    assert!(
        review(
            &client,
            &gateway_sa,
            &ns,
            attrs(&ns, "patch", "configmaps", Some("model-usage"))
        )
        .await
    );
    assert!(
        !review(
            &client,
            &gateway_sa,
            &ns,
            attrs(&ns, "patch", "configmaps", Some("egress-allow-list"))
        )
        .await
    );
    assert!(
        !review(
            &client,
            &workspace_sa,
            &ns,
            attrs(&ns, "patch", "configmaps", Some("model-usage"))
        )
        .await
    );

    // The usage is kept in the ConfigMap, and a new gateway pod starts
    // from it.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    eventually("the gateway to save its usage", 30, || async {
        let cm = configmaps.get("model-usage").await.ok()?;
        let text = cm.data?.remove("usage.json")?;
        let saved: Value = serde_json::from_str(&text).ok()?;
        (saved["input_tokens"].as_u64()? + saved["output_tokens"].as_u64()? == used).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let gateway_pods = ListParams::default().labels("app.kubernetes.io/name=egress-gateway");
    let old: Vec<String> = pods
        .list(&gateway_pods)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    for pod in &old {
        pods.delete(pod, &DeleteParams::default()).await.unwrap();
    }
    eventually("a new gateway pod to be Ready", 120, || async {
        let list = pods.list(&gateway_pods).await.ok()?;
        list.items.into_iter().find(|p| {
            !old.contains(p.metadata.name.as_ref().unwrap())
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await;
    let again = eventually(
        "the new gateway to answer with the kept usage",
        60,
        || async {
            let r = http
                .get(format!("{api}/api/usage"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            (v["used"].as_u64()? == used).then_some(v)
        },
    )
    .await;
    assert_eq!(again["month"], usage["month"]);

    // Spend the rest of the budget; then the gateway says which budget.
    let spend = format!(
        "for i in 1 2 3 4; do curl -sS -m 20 -o /dev/null \"$ANTHROPIC_BASE_URL/v1/messages\" -H \"x-api-key: $ANTHROPIC_API_KEY\" -H 'content-type: application/json' -d '{message}'; done\n\
         echo \"answer-over: $(curl -sS -m 20 -w ' status=%{{http_code}}' \"$ANTHROPIC_BASE_URL/v1/messages\" -H \"x-api-key: $ANTHROPIC_API_KEY\" -H 'content-type: application/json' -d '{message}' 2>&1 | tr '\\n' ' ')\"\n"
    );
    let (output, _) = run_task(&http, &api, &token, &spend).await;
    let over = answers(&output).remove("over").unwrap_or_default();
    assert!(
        over.contains("monthly model token budget is used up")
            && over.contains("spec.models.monthlyTokenBudget")
            && over.ends_with("status=429"),
        "{output}"
    );

    // A provider taken away takes its key out of the namespace; models
    // taken away leave no key there and no gateway running (the operator
    // deletes nothing: it empties and scales down).
    let workspaces: Api<operator::crd::Workspace> = Api::all(client.clone());
    let keys: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let key_names = || async {
        let s = keys.get("model-keys").await.ok()?;
        Some(s.data.unwrap_or_default().into_keys().collect::<Vec<_>>())
    };
    assert_eq!(
        key_names().await,
        Some(vec!["anthropic".to_string(), "openai".to_string()])
    );
    // A key rotated in the operator's namespace is copied at once: the
    // operator watches that Secret and reconciles whoever uses it.
    set_keys("sk-openai-rotated").await;
    eventually("the rotated key to be copied", 15, || async {
        let s = keys.get("model-keys").await.ok()?;
        let openai = s.data?.get("openai")?.0.clone();
        (openai == b"sk-openai-rotated").then_some(())
    })
    .await;
    let merge = |spec: Value| {
        let workspaces = workspaces.clone();
        let name = name.clone();
        async move {
            workspaces
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": spec})),
                )
                .await
                .unwrap();
        }
    };
    merge(json!({"models": {"providers": ["anthropic"], "monthlyTokenBudget": 150}})).await;
    eventually("the openai key to leave the namespace", 30, || async {
        (key_names().await? == ["anthropic"]).then_some(())
    })
    .await;
    merge(json!({"models": null})).await;
    eventually("no key left in the namespace", 30, || async {
        key_names().await?.is_empty().then_some(())
    })
    .await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    eventually("the gateway scaled to zero", 30, || async {
        let d = deployments.get("egress-gateway").await.ok()?;
        (d.spec.replicas == Some(0)).then_some(())
    })
    .await;

    let _ = workspaces.delete(&name, &DeleteParams::default()).await;
}
