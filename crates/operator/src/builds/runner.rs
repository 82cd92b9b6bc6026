//! One brokered build from start to end, in a build pod the operator
//! creates for it alone (`manifests::build_pod`) in the build namespace:
//! the push credentials copied there for that pod (never into the
//! workspace's namespace), the context streamed into the pod through the
//! API server's exec (`busybox tar -x`, counted against the size cap as it
//! comes), `buildctl build` run there with its log streamed back line by
//! line, the digest read from its metadata; then the pod and its Secret
//! are deleted, whatever happened.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, AttachParams, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::request::{registry_of, BuildRequest};
use crate::crd::Workspace;
use crate::manifests::build_pod::{self, BuildLimits, Egress, BUILDKIT_SOCKET, CONTEXT_DIR};
use crate::manifests::{egress_gateway, network_policy};
use crate::names;
use crate::settings::Settings;

const FIELD_MANAGER: &str = "kube-coder-builds";
const METADATA: &str = "/work/metadata.json";

/// What a finished build made.
#[derive(Debug)]
pub struct Outcome {
    pub digest: String,
    /// The image as pushed: manifest, config and compressed layers, in
    /// bytes (what a pull transfers); unknown if BuildKit's store did not
    /// show it.
    pub size: Option<u64>,
    /// From the request to BuildKit answering in the running build pod:
    /// the broker's overhead before the build proper.
    pub ready_seconds: f64,
    pub seconds: f64,
}

/// Where the build's log goes: one line of NDJSON each. A send that fails
/// means the caller went away, and the build stops.
pub struct Log(pub mpsc::Sender<Bytes>);

impl Log {
    pub async fn line(&self, value: serde_json::Value) -> Result<(), String> {
        let mut line = value.to_string();
        line.push('\n');
        self.0
            .send(Bytes::from(line))
            .await
            .map_err(|_| "the caller went away; build stopped".to_string())
    }

    async fn say(&self, message: &str) -> Result<(), String> {
        self.line(json!({"status": message})).await
    }
}

/// Deletes the build pod and its Secret when dropped, whatever happened.
struct Cleanup {
    client: kube::Client,
    namespace: String,
    pod: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (client, ns, pod) = (
            self.client.clone(),
            self.namespace.clone(),
            self.pod.clone(),
        );
        tokio::spawn(async move {
            let now = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            // The Secret is the pod's (owner reference) and goes with it;
            // deleting it too covers a pod that was never made.
            let _ = Api::<Pod>::namespaced(client.clone(), &ns)
                .delete(&pod, &now)
                .await;
            let _ = Api::<Secret>::namespaced(client, &ns)
                .delete(&format!("{pod}-push"), &now)
                .await;
        });
    }
}

pub struct Build<'a> {
    pub client: &'a kube::Client,
    pub settings: &'a Settings,
    pub limits: &'a BuildLimits,
    /// The pod's name, unique per build.
    pub id: String,
    pub workspace: &'a Workspace,
    pub request: &'a BuildRequest,
    pub max_context: u64,
}

impl Build<'_> {
    pub async fn run(&self, body: Body, log: &Log) -> Result<Outcome, String> {
        let started = Instant::now();
        let ns = &self.settings.build_namespace;
        let egress = self.egress().await?;
        self.ensure_namespace(&egress).await?;
        let _cleanup = Cleanup {
            client: self.client.clone(),
            namespace: ns.clone(),
            pod: self.id.clone(),
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let push = self.copy_push_secret().await?;
        let workspace = names::workspace_name(self.workspace);
        let pod = build_pod::build_pod(
            self.settings,
            ns,
            &self.id,
            workspace,
            push.as_deref(),
            &egress,
            self.limits,
        );
        let pod = pods
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| format!("cannot create the build pod: {e}"))?;
        if let Some(name) = &push {
            self.own_secret(name, &pod).await?;
        }
        log.say(&format!(
            "build pod {ns}/{} created; waiting for it to run",
            self.id
        ))
        .await?;
        self.wait_running(&pods).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(why) = self.builder_answers(&pods).await {
            if Instant::now() > deadline {
                return Err(format!(
                    "BuildKit did not start in the build pod within 60 s: {why}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ready_seconds = started.elapsed().as_secs_f64();
        log.say(&format!(
            "build pod running after {ready_seconds:.1} s; sending the context"
        ))
        .await?;
        let sent = self.send_context(&pods, body).await?;
        log.say(&format!(
            "context sent ({} KiB); building",
            sent.div_ceil(1024)
        ))
        .await?;
        let code = match self.build(&pods, &egress, log).await {
            Ok(code) => code,
            // The pod went away under the build: say why, if a limit did it.
            Err(e) => return Err(self.over_limit(&pods, true).await.unwrap_or(e)),
        };
        if code != 0 {
            // 137: buildctl was killed, as the node does to a pod it stops.
            // A node evicting the pod may instead stop BuildKit first, and
            // buildctl exits 1 with the connection lost: a builder that no
            // longer answers means the pod is going down, so wait for why.
            let stopping = code == 137 || self.builder_answers(&pods).await.is_err();
            return Err(self.over_limit(&pods, stopping).await.unwrap_or_else(|| {
                format!("the build failed (buildctl exited with {code}); its log is above")
            }));
        }
        let (_, metadata) = exec(&pods, &self.id, &["busybox", "cat", METADATA], None).await?;
        let metadata = serde_json::from_str::<serde_json::Value>(&metadata).unwrap_or_default();
        let digest = metadata["containerimage.digest"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("the build left no image digest: {metadata}"))?;
        let size = self.image_size(&pods, &metadata).await;
        Ok(Outcome {
            digest,
            size,
            ready_seconds,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Whether BuildKit in the build pod answers a request; if not, why.
    async fn builder_answers(&self, pods: &Api<Pod>) -> Result<(), String> {
        let addr = format!("--addr={BUILDKIT_SOCKET}");
        let ask = ["buildctl", addr.as_str(), "debug", "workers"];
        match exec(pods, &self.id, &ask, None).await? {
            (0, _) => Ok(()),
            (code, output) => Err(format!("buildctl exited with {code}: {}", output.trim())),
        }
    }

    /// Why a build that failed was stopped, when one of its limits did it:
    /// the pod evicted (its disk), the builder or a step killed for memory.
    /// `stopping`: the build's client was killed or cut off, or BuildKit
    /// no longer answers, so the pod may be on its way down, its status not
    /// yet written: wait for it a while.
    async fn over_limit(&self, pods: &Api<Pod>, stopping: bool) -> Option<String> {
        let limits = self.limits;
        let deadline = Instant::now() + Duration::from_secs(if stopping { 15 } else { 0 });
        loop {
            let pod = pods.get(&self.id).await.ok()?;
            let status = pod.status.unwrap_or_default();
            if status.reason.as_deref() == Some("Evicted") {
                return Some(format!(
                    "the build pod was stopped by the node: {} (a build may use {} of disk)",
                    status.message.unwrap_or_default().trim(),
                    limits.disk
                ));
            }
            let oom_killed = status.container_statuses.iter().flatten().any(|c| {
                let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
                let now = c.state.as_ref().and_then(|s| s.terminated.as_ref());
                now.or(last).and_then(|t| t.reason.as_deref()) == Some("OOMKilled")
            });
            if oom_killed {
                return Some(format!(
                    "the builder ran out of memory (a build may use {})",
                    limits.memory
                ));
            }
            // Until the pod has ended (its containers' ends and its own are
            // written one after the other), or the wait is over.
            let ended = matches!(status.phase.as_deref(), Some("Failed" | "Succeeded"));
            if ended || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // A step killed for memory leaves the builder running: the cgroup
        // counts it (v1: memory.oom_control, v2: memory.events).
        let script = "busybox cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null";
        let (_, counters) = exec(pods, &self.id, &["busybox", "sh", "-c", script], None)
            .await
            .ok()?;
        let kills: u64 = counters
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .sum();
        (kills > 0).then(|| {
            format!(
                "a step ran out of memory and was killed (a build may use {}); its log is above",
                limits.memory
            )
        })
    }

    /// The pushed image's size, from its manifest (or index) in BuildKit's
    /// content store: the sum of what it refers to, and itself.
    async fn image_size(&self, pods: &Api<Pod>, metadata: &serde_json::Value) -> Option<u64> {
        let descriptor = &metadata["containerimage.descriptor"];
        let mut size = descriptor["size"].as_u64()?;
        let mut pending = vec![descriptor["digest"].as_str()?.to_string()];
        while let Some(digest) = pending.pop() {
            let manifest: serde_json::Value =
                serde_json::from_str(&self.blob(pods, &digest).await?).ok()?;
            let children = manifest["manifests"].as_array().into_iter().flatten();
            for child in children {
                size += child["size"].as_u64()?;
                pending.push(child["digest"].as_str()?.to_string());
            }
            let parts = manifest["layers"].as_array().into_iter().flatten();
            for part in parts.chain(std::iter::once(&manifest["config"])) {
                size += part["size"].as_u64().unwrap_or(0);
            }
        }
        Some(size)
    }

    /// A blob of BuildKit's content store (its worker directory is named
    /// after the snapshotter it chose, hence the glob).
    async fn blob(&self, pods: &Api<Pod>, digest: &str) -> Option<String> {
        let hex = digest.strip_prefix("sha256:")?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let script = format!("busybox cat /var/lib/buildkit/runc-*/content/blobs/sha256/{hex}");
        match exec(pods, &self.id, &["busybox", "sh", "-c", &script], None).await {
            Ok((0, text)) => Some(text),
            _ => None,
        }
    }

    /// Where the build may reach out: public addresses, or, for a
    /// workspace whose egress goes by name, its egress gateway (by the
    /// Service's address, so no step depends on cluster DNS search paths).
    async fn egress(&self) -> Result<Egress, String> {
        if !egress_gateway::by_name(self.workspace) {
            return Ok(Egress::Public);
        }
        let ns = names::namespace(names::workspace_name(self.workspace));
        let service = Api::<Service>::namespaced(self.client.clone(), &ns)
            .get_opt(names::EGRESS_GATEWAY)
            .await
            .map_err(|e| format!("cannot read the workspace's egress gateway: {e}"))?;
        let ip = service
            .and_then(|s| s.spec?.cluster_ip)
            .filter(|ip| ip != "None")
            .ok_or_else(|| {
                format!("the workspace's egress goes by name but its egress gateway ({ns}/{}) is not there yet; try again in a moment", names::EGRESS_GATEWAY)
            })?;
        Ok(Egress::Gateway {
            proxy: format!("http://{ip}:{}", names::EGRESS_PROXY_PORT),
        })
    }

    /// The build namespace (Pod Security `privileged`: the builder needs
    /// SYS_ADMIN in its user namespace), BuildKit's configuration, and the
    /// policies of what a build pod may reach.
    async fn ensure_namespace(&self, egress: &Egress) -> Result<(), String> {
        let ns = &self.settings.build_namespace;
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        let namespace = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {
                "pod-security.kubernetes.io/enforce": "privileged",
                "pod-security.kubernetes.io/warn": "baseline",
                "app.kubernetes.io/managed-by": "kube-coder",
            }},
        });
        Api::<Namespace>::all(self.client.clone())
            .patch(ns, &apply, &Patch::Apply(namespace))
            .await
            .map_err(|e| format!("cannot make the build namespace {ns}: {e}"))?;
        let toml = build_pod::buildkitd_toml(self.settings);
        let config = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": build_pod::CONFIG_MAP, "namespace": ns},
            "data": {"buildkitd.toml": toml},
        });
        Api::<ConfigMap>::namespaced(self.client.clone(), ns)
            .patch(build_pod::CONFIG_MAP, &apply, &Patch::Apply(config))
            .await
            .map_err(|e| format!("cannot write BuildKit's configuration in {ns}: {e}"))?;
        // What a RUN step may reach: the policies are there before any pod.
        let mut policies = vec![
            network_policy::build_pods(self.settings).map_err(|e| e.to_string())?,
            network_policy::build_pods_public(self.settings),
        ];
        if let Egress::Gateway { .. } = egress {
            let mut own = network_policy::build_pods_gateway(self.workspace, self.settings);
            // Goes with its Workspace.
            own.metadata.owner_references =
                kube::Resource::owner_ref(self.workspace, &()).map(|o| vec![o]);
            policies.push(own);
        }
        let api = Api::<NetworkPolicy>::namespaced(self.client.clone(), ns);
        for policy in policies {
            let name = policy.metadata.name.clone().unwrap_or_default();
            let mut policy = serde_json::to_value(policy).map_err(|e| e.to_string())?;
            policy["apiVersion"] = json!("networking.k8s.io/v1");
            policy["kind"] = json!("NetworkPolicy");
            api.patch(&name, &apply, &Patch::Apply(policy))
                .await
                .map_err(|e| {
                    format!("cannot write the build pods' network policy {name} in {ns}: {e}")
                })?;
        }
        Ok(())
    }

    /// The Workspace's push Secret, copied from the operator's namespace
    /// for this build's pod alone; its name there.
    async fn copy_push_secret(&self) -> Result<Option<String>, String> {
        let Some(source) = &self.workspace.spec.build.push_secret else {
            return Ok(None);
        };
        let from = &self.settings.operator_namespace;
        let secret = Api::<Secret>::namespaced(self.client.clone(), from)
            .get_opt(source)
            .await
            .map_err(|e| format!("cannot read the push Secret {from}/{source}: {e}"))?
            .ok_or_else(|| {
                format!("spec.build.pushSecret names {from}/{source}, which does not exist")
            })?;
        let config = secret
            .data
            .and_then(|mut d| d.remove(".dockerconfigjson"))
            .ok_or_else(|| format!("the push Secret {from}/{source} is not a docker-registry Secret (no .dockerconfigjson)"))?;
        let name = format!("{}-push", self.id);
        let copy: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": self.settings.build_namespace,
                         "labels": {build_pod::BUILD_LABEL: self.id}},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": config},
        }))
        .map_err(|e| e.to_string())?;
        Api::<Secret>::namespaced(self.client.clone(), &self.settings.build_namespace)
            .create(&PostParams::default(), &copy)
            .await
            .map_err(|e| format!("cannot copy the push Secret: {e}"))?;
        Ok(Some(name))
    }

    /// Makes the pod the Secret's owner, so it goes with the pod even if
    /// this process does not live to delete it.
    async fn own_secret(&self, name: &str, pod: &Pod) -> Result<(), String> {
        let owner = json!({"metadata": {"ownerReferences": [{
            "apiVersion": "v1", "kind": "Pod",
            "name": pod.metadata.name, "uid": pod.metadata.uid,
        }]}});
        Api::<Secret>::namespaced(self.client.clone(), &self.settings.build_namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(owner))
            .await
            .map_err(|e| format!("cannot tie the push Secret to the build pod: {e}"))?;
        Ok(())
    }

    async fn wait_running(&self, pods: &Api<Pod>) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let pod = pods
                .get(&self.id)
                .await
                .map_err(|e| format!("cannot read the build pod: {e}"))?;
            let status = pod.status.unwrap_or_default();
            match status.phase.as_deref() {
                Some("Running") => return Ok(()),
                Some("Failed") | Some("Succeeded") => {
                    return Err(format!(
                        "the build pod stopped before the build: {}",
                        status.message.unwrap_or_default()
                    ))
                }
                _ => {}
            }
            if Instant::now() > deadline {
                let waiting = status
                    .container_statuses
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| c.state?.waiting)
                    .map(|w| {
                        format!(
                            "{}: {}",
                            w.reason.unwrap_or_default(),
                            w.message.unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(format!(
                    "the build pod did not run within 180 s ({waiting})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Streams the tar of `body` into the pod's context directory; the
    /// bytes sent. More than the cap stops it.
    async fn send_context(&self, pods: &Api<Pod>, body: Body) -> Result<u64, String> {
        let (code, out) = exec(
            pods,
            &self.id,
            &["busybox", "mkdir", "-p", CONTEXT_DIR],
            None,
        )
        .await?;
        if code != 0 {
            return Err(format!("cannot make the context directory: {out}"));
        }
        let params = AttachParams::default()
            .container("buildkit")
            .stdin(true)
            .stdout(true)
            .stderr(true);
        let mut process = pods
            .exec(
                &self.id,
                ["busybox", "tar", "-x", "-C", CONTEXT_DIR],
                &params,
            )
            .await
            .map_err(|e| format!("cannot send the context: {e}"))?;
        let mut stdin = process.stdin().ok_or("no stdin to send the context to")?;
        let mut sent = 0u64;
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| format!("the context was cut off: {e}"))?;
            sent += chunk.len() as u64;
            if sent > self.max_context {
                return Err(format!(
                    "the context is larger than {} MiB, the limit of a build's context; leave files out with .dockerignore",
                    self.max_context >> 20
                ));
            }
            stdin
                .write_all(&chunk)
                .await
                .map_err(|e| format!("cannot send the context: {e}"))?;
        }
        stdin.shutdown().await.map_err(|e| e.to_string())?;
        drop(stdin);
        let out = read_all(process.stdout()).await + &read_all(process.stderr()).await;
        let code = exit_code(process.take_status()).await;
        if code != 0 {
            return Err(format!("the context is not a tar archive: {}", out.trim()));
        }
        Ok(sent)
    }

    /// Runs `buildctl build`, sending its log line by line: its exit code.
    async fn build(&self, pods: &Api<Pod>, egress: &Egress, log: &Log) -> Result<i32, String> {
        let r = self.request;
        let mut args: Vec<String> = [
            "buildctl",
            &format!("--addr={BUILDKIT_SOCKET}"),
            "build",
            "--frontend=dockerfile.v0",
            "--progress=plain",
        ]
        .map(String::from)
        .to_vec();
        for pair in [
            format!("context={CONTEXT_DIR}"),
            format!("dockerfile={CONTEXT_DIR}"),
        ] {
            args.extend(["--local".into(), pair]);
        }
        // The file may be in a subdirectory: the frontend takes the name
        // relative to the dockerfile directory.
        let mut opts = vec![format!("filename={}", r.file)];
        opts.extend(r.target.iter().map(|t| format!("target={t}")));
        opts.extend(r.platform.iter().map(|p| format!("platform={p}")));
        opts.extend(
            r.build_args
                .iter()
                .map(|(k, v)| format!("build-arg:{k}={v}")),
        );
        // A step's tools find the gateway as the workspace's do (BuildKit
        // keeps these predefined arguments out of the image).
        opts.extend(
            egress
                .proxy_vars(self.settings)
                .into_iter()
                .filter(|(k, _)| !r.build_args.iter().any(|(a, _)| a == k))
                .map(|(k, v)| format!("build-arg:{k}={v}")),
        );
        for opt in opts {
            args.extend(["--opt".into(), opt]);
        }
        let insecure = r.tags.iter().any(|t| {
            self.settings
                .insecure_registries
                .iter()
                .any(|i| i == registry_of(t))
        });
        let mut output = format!("type=image,\"name={}\",push=true", r.tags.join(","));
        // Layers made before come back from the registry: the cache lives
        // beside the first image, where the push credentials reach.
        let cache = format!("{}:buildcache", super::request::repository_of(&r.tags[0]));
        let mut cache_opts = String::new();
        if insecure {
            output.push_str(",registry.insecure=true");
            cache_opts.push_str(",registry.insecure=true");
        }
        args.extend([
            "--output".into(),
            output,
            "--export-cache".into(),
            format!("type=registry,ref={cache},mode=max{cache_opts}"),
            "--import-cache".into(),
            format!("type=registry,ref={cache}{cache_opts}"),
            format!("--metadata-file={METADATA}"),
        ]);
        let params = AttachParams::default()
            .container("buildkit")
            .stdout(true)
            .stderr(true);
        let mut process = pods
            .exec(&self.id, args.iter().map(String::as_str), &params)
            .await
            .map_err(|e| format!("cannot start the build: {e}"))?;
        let (stdout, stderr) = (process.stdout(), process.stderr());
        let (a, b) = tokio::join!(forward(stdout, log), forward(stderr, log));
        a?;
        b?;
        Ok(exit_code(process.take_status()).await)
    }
}

/// Sends each line of `reader` to the log.
async fn forward(reader: Option<impl AsyncRead + Unpin>, log: &Log) -> Result<(), String> {
    let Some(reader) = reader else { return Ok(()) };
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        log.line(json!({"log": line})).await?;
    }
    Ok(())
}

async fn read_all(reader: Option<impl AsyncRead + Unpin>) -> String {
    let mut out = String::new();
    if let Some(mut r) = reader {
        let _ = r.read_to_string(&mut out).await;
    }
    out
}

async fn exit_code(
    status: Option<
        impl std::future::Future<
            Output = Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>,
        >,
    >,
) -> i32 {
    let Some(status) = status else { return -1 };
    let Some(status) = status.await else {
        return -1;
    };
    if status.status.as_deref() == Some("Success") {
        return 0;
    }
    status
        .details
        .and_then(|d| d.causes)
        .and_then(|c| {
            c.into_iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
        })
        .and_then(|c| c.message)
        .and_then(|m| m.parse().ok())
        .unwrap_or(-1)
}

/// Runs `command` in the build pod: its exit code and output.
pub async fn exec(
    pods: &Api<Pod>,
    pod: &str,
    command: &[&str],
    stdin: Option<&[u8]>,
) -> Result<(i32, String), String> {
    let params = AttachParams::default()
        .container("buildkit")
        .stdin(stdin.is_some())
        .stdout(true)
        .stderr(true);
    let mut process = pods
        .exec(pod, command.iter().copied(), &params)
        .await
        .map_err(|e| format!("cannot run {} in the build pod: {e}", command[0]))?;
    if let (Some(data), Some(mut w)) = (stdin, process.stdin()) {
        w.write_all(data).await.map_err(|e| e.to_string())?;
        w.shutdown().await.map_err(|e| e.to_string())?;
    }
    let (out, err) = tokio::join!(read_all(process.stdout()), read_all(process.stderr()));
    Ok((exit_code(process.take_status()).await, out + &err))
}
