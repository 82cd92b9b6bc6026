//! The `Workspace` custom resource (`kube-coder.dev/v1alpha1`, cluster-scoped).
//!
//! These types are the single source of the CRD: `charts/kube-coder/crds/`
//! holds the YAML generated from them (`kube-coder crd`), and a test fails
//! when the two drift. Unsafe combinations are refused by the API server
//! itself through CEL rules (`x-kubernetes-validations`), not only by us.
//! Every default is the safe one (the example in docs/operator.md shows them).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest workspace name: `ws-` + name must fit a namespace name (63),
/// and `<name>-api.` must fit a DNS label; 40 leaves room for both.
pub const MAX_NAME_LEN: usize = 40;

/// One person's (or agent's) workspace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kube-coder.dev",
    version = "v1alpha1",
    kind = "Workspace",
    plural = "workspaces",
    shortname = "ws",
    status = "WorkspaceStatus",
    derive = "PartialEq",
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Auth", type_ = "string", json_path = ".spec.auth.type"),
    printcolumn(name = "Running", type_ = "boolean", json_path = ".spec.running"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$')")
        .message("the workspace name must be a DNS label of at most 40 characters: lower-case letters, digits and '-', starting with a letter"),
    validation = Rule::new("!has(self.spec.auth) || !has(self.spec.auth.type) || self.spec.auth.type != 'oauth2' || has(self.spec.owner.githubLogin) || has(self.spec.owner.email) || (has(self.spec.auth.oauth2) && ((has(self.spec.auth.oauth2.allowedUsers) && size(self.spec.auth.oauth2.allowedUsers) > 0) || (has(self.spec.auth.oauth2.allowedOrgs) && size(self.spec.auth.oauth2.allowedOrgs) > 0)))")
        .message("auth.type oauth2 needs the owner's identity at the provider: owner.githubLogin or owner.email (or auth.oauth2.allowedUsers or allowedOrgs); owner.name alone would let in whoever holds that name at the provider"),
)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSpec {
    /// Who the workspace is for.
    pub owner: Owner,
    /// false scales the workload to zero; the home volume is kept.
    #[serde(default = "yes")]
    pub running: bool,
    #[serde(default)]
    pub image: Image,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub auth: Auth,
    /// Public routes; without it the workspace is reachable only in-cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub build: Build,
    /// SSH into the workspace (`kube-coder ssh NAME`, through the API
    /// server's port-forward: no Service is ever opened for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<Ssh>,
    /// GitHub access through the operator's token broker: git in the
    /// workspace gets short-lived installation tokens for these
    /// repositories only; the App's key never leaves the operator's
    /// namespace. Unset: no broker token, no credential helper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<Github>,
    /// Model providers through the egress gateway, whose keys the workspace
    /// never holds. Unset: no model port, no keys, no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Models>,
    /// Stop the workload after this long without HTTP activity and without
    /// running tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Idle>,
}

fn yes() -> bool {
    true
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// The person's user name (also the basic-auth login).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9]([-._A-Za-z0-9]*[A-Za-z0-9])?$")
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 39),
        regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$")
    )]
    pub github_login: Option<String>,
}

/// The workspace image; the default is the project's own.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255), regex(pattern = r"^[a-z0-9]+([._/:-][a-z0-9]+)*$"))]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 128),
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(@sha256:[a-f0-9]{64})?$")
    )]
    pub tag: Option<String>,
    /// A docker-registry Secret in the operator's namespace, copied in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub pull_secret: Option<String>,
}

const QUANTITY: &str = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$";

/// CPU and memory of the workspace container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("quantity(self.limits.cpu).compareTo(quantity(self.requests.cpu)) >= 0 && quantity(self.limits.memory).compareTo(quantity(self.requests.memory)) >= 0")
        .message("resources.limits must be at least resources.requests"),
)]
pub struct Resources {
    #[serde(default = "default_requests")]
    pub requests: CpuMemory,
    #[serde(default = "default_limits")]
    pub limits: CpuMemory,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            requests: default_requests(),
            limits: default_limits(),
        }
    }
}

fn default_requests() -> CpuMemory {
    CpuMemory {
        cpu: "500m".into(),
        memory: "1Gi".into(),
    }
}

fn default_limits() -> CpuMemory {
    CpuMemory {
        cpu: "2".into(),
        memory: "4Gi".into(),
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuMemory {
    /// A Kubernetes quantity, e.g. `500m` or `2`.
    #[schemars(length(max = 32), regex(pattern = QUANTITY))]
    pub cpu: String,
    /// A Kubernetes quantity, e.g. `4Gi`.
    #[schemars(length(max = 32), regex(pattern = QUANTITY))]
    pub memory: String,
}

/// The home volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    #[serde(default = "default_size")]
    #[schemars(length(max = 32), regex(pattern = r"^[0-9]+(Mi|Gi|Ti)$"))]
    pub size: String,
    /// Unset: the cluster's default storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
    /// Keep the home volume (and its namespace) when the Workspace is deleted.
    #[serde(default = "yes")]
    pub retain_on_delete: bool,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            size: default_size(),
            storage_class_name: None,
            retain_on_delete: true,
        }
    }
}

fn default_size() -> String {
    "20Gi".into()
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    /// The workspace server checks an htpasswd file (generated password).
    #[default]
    Basic,
    /// oauth2-proxy in front of the dashboard, as a sidecar on loopback.
    Oauth2,
    /// No login: only allowed read-only (a public demo).
    None,
}

/// How people reach the dashboard. The API always takes the Bearer token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'none' || self.readOnly").message("auth.type none requires auth.readOnly: true (a public dashboard must not be writable)"),
    validation = Rule::new("self.type != 'oauth2' || has(self.oauth2)").message("auth.type oauth2 requires auth.oauth2 (provider, client id and client secret)"),
)]
pub struct Auth {
    #[serde(default, rename = "type")]
    pub kind: AuthType,
    /// Refuse every state-changing request.
    #[serde(default)]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
}

impl std::fmt::Display for AuthType {
    /// As written in the spec: `basic`, `oauth2`, `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthType::Basic => "basic",
            AuthType::Oauth2 => "oauth2",
            AuthType::None => "none",
        })
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OAuth2Provider {
    #[default]
    Github,
    Google,
    Oidc,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.provider != 'oidc' || has(self.issuerUrl)").message("auth.oauth2.provider oidc requires auth.oauth2.issuerUrl"),
)]
pub struct OAuth2 {
    #[serde(default)]
    pub provider: OAuth2Provider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https://"))]
    pub issuer_url: Option<String>,
    /// A Secret in the operator's namespace with keys `client-id` and
    /// `client-secret`; the operator copies it into the workspace namespace.
    #[schemars(length(min = 1, max = 253))]
    pub client_secret_ref: String,
    /// For a provider whose certificate a private CA signed: a Secret in
    /// the operator's namespace with key `ca.crt` (PEM). The login proxy
    /// then trusts that CA, and only it, for the provider.
    #[serde(
        rename = "providerCASecretRef",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 253))]
    pub provider_ca_secret_ref: Option<String>,
    /// Logins or e-mails let in; empty with no orgs: nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 254)))]
    pub allowed_users: Vec<String>,
    /// GitHub organisations whose members are let in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 39)))]
    pub allowed_orgs: Vec<String>,
    /// E-mail domains the login proxy accepts (`*` for any). Default: the
    /// domains of the e-mails let in (the owner's and allowedUsers').
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 253), regex(pattern = r"^(\*|[A-Za-z0-9.-]+)$"))
    )]
    pub email_domains: Vec<String>,
}

const HOST: &str = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.apiHost) || self.apiHost != self.host").message("ingress.apiHost must differ from ingress.host (the dashboard and the API are separate origins)"),
)]
pub struct IngressSpec {
    /// The dashboard's host name.
    #[schemars(length(max = 253), regex(pattern = HOST))]
    pub host: String,
    /// The API's host name. Default: `<first label>-api.<rest of host>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = HOST))]
    pub api_host: Option<String>,
    /// Optional: the operator gives the cluster's ingress class (the chart's
    /// `network.ingressClassName`); another one is refused, as its
    /// controller's traffic would not be let in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// Certificates go to `<secretName>-dashboard` and `<secretName>-api`
    /// (created by cert-manager when an issuer is named).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// A cert-manager ClusterIssuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub issuer: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    #[serde(default)]
    pub egress: Egress,
    /// Let completion hooks reach private, loopback and metadata addresses.
    #[serde(default)]
    pub allow_internal_hooks: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Egress {
    /// Ranges the workspace may not reach. Unset: every private, loopback,
    /// link-local (metadata), CGNAT and multicast range, IPv4 and IPv6.
    #[serde(default, rename = "denyCIDRs", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("network.egress.denyCIDRs must hold CIDRs such as 10.0.0.0/8"))]
    pub deny_cidrs: Option<Vec<String>>,
    /// Ranges allowed even though a deny range covers them (an internal git
    /// server, say).
    #[serde(default, rename = "allowCIDRs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("network.egress.allowCIDRs must hold CIDRs such as 10.20.0.0/16"))]
    pub allow_cidrs: Vec<String>,
    /// Egress by name: the workspace reaches the internet only through an
    /// egress gateway of its own, and only the host names listed here (plus
    /// the cluster's default list): `registry.npmjs.org`, `*.github.com` (the
    /// names below it), `name:port` (a port other than 80 and 443). Its
    /// NetworkPolicy then allows DNS and the gateway only. Unset: the CIDR
    /// rules above, no gateway. Changes apply without a restart.
    #[serde(
        default,
        rename = "allowDomains",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 256), inner(length(max = 260)))]
    #[x_kube(validation = Rule::new(r"self.all(d, d.matches('^(\\*\\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$'))").message("network.egress.allowDomains holds lower-case host names such as registry.npmjs.org or *.github.com, each optionally with :port"))]
    pub allow_domains: Option<Vec<String>>,
}

/// Who may SSH in: the key decides, under any login name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Ssh {
    /// OpenSSH public keys, one per entry (`ssh-ed25519 AAAA… alice@laptop`).
    /// A change applies without a restart.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 16384)))]
    #[x_kube(validation = Rule::new(r"self.all(k, k.matches('^(ssh-|ecdsa-|sk-)[a-z0-9@.-]+ [A-Za-z0-9+/=]+( .*)?$'))").message("ssh.authorizedKeys holds OpenSSH public keys such as 'ssh-ed25519 AAAA… alice@laptop', one per entry"))]
    pub authorized_keys: Vec<String>,
}

/// The repositories (`owner/name`, one owner) the workspace's tokens may
/// reach, and what they may do there.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.repositories.all(r, r.split('/')[0] == self.repositories[0].split('/')[0])").message("github.repositories must all belong to one owner (one App installation)"))]
pub struct Github {
    #[schemars(
        length(min = 1, max = 100),
        inner(
            length(min = 3, max = 140),
            regex(pattern = r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")
        )
    )]
    pub repositories: Vec<String>,
    /// GitHub App permissions of the tokens (`contents: write`,
    /// `pull_requests: write`, …). Unset: `contents: write`,
    /// `metadata: read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.all(k, self[k] in ['read', 'write'])").message("github.permissions values are read or write"))]
    pub permissions: Option<std::collections::BTreeMap<String, String>>,
}

/// The workspace's model providers: its programs call the egress gateway
/// (`ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`, `GOOGLE_GEMINI_BASE_URL` point
/// there, with a placeholder key), and the gateway adds the real key from
/// the cluster's model key Secret, which only the gateway's pod mounts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Models {
    /// Which of the cluster's providers this workspace may use, by name.
    /// Unset: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub providers: Option<Vec<String>>,
    /// Input plus output tokens the workspace may use per calendar month
    /// (UTC); once used up, model requests get 429 naming this budget.
    /// Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub monthly_token_budget: Option<i64>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BuildMode {
    /// `kube-coder build` in the workspace sends the context to the
    /// operator, which builds it in a build pod it controls, with push
    /// credentials the workspace never holds.
    #[default]
    Brokered,
    /// The old name of `brokered`, accepted as it: Kaniko cannot be built
    /// or tested from the Go module proxy, so BuildKit replaced it.
    Kaniko,
    /// BuildKit in the workspace pod, driven by the workspace (root of the
    /// pod's own user namespace, never privileged): needs the
    /// acknowledgement below.
    Buildkit,
    /// No builds: a build is refused, saying so.
    None,
}

impl BuildMode {
    /// Whether builds go through the operator.
    pub fn brokered(self) -> bool {
        matches!(self, BuildMode::Brokered | BuildMode::Kaniko)
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode != 'buildkit' || self.acknowledgeBuildkitRisk").message("build.mode buildkit runs a builder with more privilege; set build.acknowledgeBuildkitRisk: true to accept that"),
)]
pub struct Build {
    /// `brokered` (the default): `kube-coder build` sends the context to
    /// the operator, which builds it in a build pod it controls; `kaniko`:
    /// the old name of `brokered`, accepted as it (Kaniko cannot be built
    /// from the Go module proxy, so BuildKit replaced it); `buildkit`:
    /// BuildKit in the workspace pod, with `CAP_SYS_ADMIN` in the pod's own
    /// user namespace and Pod Security `privileged` on its namespace (needs
    /// acknowledgeBuildkitRisk); `none`: builds are refused.
    #[serde(default)]
    pub mode: BuildMode,
    #[serde(default)]
    pub acknowledge_buildkit_risk: bool,
    /// Where brokered builds may push: a repository (`registry.example.com/team/app`)
    /// or every repository under a prefix ending in `/`
    /// (`registry.example.com/team/`). Empty: every build is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(
            length(max = 255),
            regex(pattern = r"^[a-z0-9]+([._:-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*/?$")
        )
    )]
    pub registries: Vec<String>,
    /// A docker-registry Secret in the operator's namespace with the push
    /// credentials; given to the build pod only, never to the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub push_secret: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Idle {
    /// A duration such as `2h`, `90m` or `1h30m` (at least one minute).
    #[schemars(length(max = 16), regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"))]
    #[x_kube(validation = Rule::new("self != '' && duration(self) >= duration('60s')").message("idle.stopAfter must be a duration of at least 1m, such as 2h"))]
    pub stop_after: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Provisioning,
    Ready,
    Stopped,
    Failed,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Pending => "Pending",
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Stopped => "Stopped",
            Phase::Failed => "Failed",
        })
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The task API (Bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Last HTTP request or running task seen by the idle check (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<String>,
    /// What is happening or what went wrong, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Idle {
    /// `stopAfter` in seconds (the CRD guarantees the format).
    pub fn seconds(&self) -> Option<u64> {
        parse_duration(&self.stop_after)
    }
}

/// `2h`, `90m`, `1h30m10s` → seconds. None for anything else.
pub fn parse_duration(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
    }
    (num.is_empty() && total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2h"), Some(7200));
        assert_eq!(parse_duration("1h30m10s"), Some(5410));
        assert_eq!(parse_duration("90m"), Some(5400));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("3d"), None);
    }

    #[test]
    fn a_minimal_spec_gets_the_safe_defaults() {
        let spec: WorkspaceSpec = serde_json::from_str(r#"{"owner":{"name":"alice"}}"#).unwrap();
        assert!(spec.running);
        assert_eq!(spec.auth.kind, AuthType::Basic);
        assert!(!spec.auth.read_only);
        assert!(spec.storage.retain_on_delete);
        assert_eq!(spec.build.mode, BuildMode::Brokered);
        assert!(!spec.network.allow_internal_hooks);
        assert!(spec.network.egress.deny_cidrs.is_none());
    }
}
