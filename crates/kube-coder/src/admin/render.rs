//! `kube-coder render NAME -f values.yaml`: the plain manifests the
//! operator would apply, for GitOps users who run no operator. The same
//! builders as the operator; Secrets only with `--with-secrets` (their
//! values are generated here and belong in a secret store, not in git).
//! With no operator there is no waker: the Ingresses always lead to the
//! workload.

use std::path::PathBuf;

use clap::Args;
use operator::crd::{Phase, Workspace, WorkspaceSpec, WorkspaceStatus};
use operator::manifests::{self, credentials, Manifest};
use operator::settings::Settings;

use crate::cluster::SettingsArgs;

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The workspace name.
    name: String,
    /// A YAML file with the Workspace spec (owner, auth, ingress, …).
    #[arg(short = 'f', long = "values")]
    values: PathBuf,
    /// Also print the credentials Secret, with freshly generated values.
    #[arg(long)]
    with_secrets: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

/// `ingress.hots` for a path serde_ignored reports (it marks optional
/// values with `?`, which means nothing to the person who wrote the file).
fn dotted(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    let join = |parent: &Path, child: String| match dotted(parent) {
        p if p.is_empty() => child,
        p => format!("{p}.{child}"),
    };
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => join(parent, index.to_string()),
        Path::Map { parent, key } => join(parent, key.clone()),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

/// A values file: the Workspace spec, and optionally the settings of the
/// operator under `operator:` (they override the flags). Unknown keys are
/// refused by name, so a typo does not silently become a default.
fn parse_values(
    path: &std::path::Path,
    text: &str,
) -> Result<(WorkspaceSpec, Option<Settings>), String> {
    let shown = path.display();
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("{shown}: not YAML: {e}"))?;
    let settings = match value.as_mapping_mut().and_then(|m| m.remove("operator")) {
        Some(v) => {
            let mut unknown = Vec::new();
            let s: Settings =
                serde_ignored::deserialize(v, |p| unknown.push(format!("operator.{}", dotted(&p))))
                    .map_err(|e| format!("{shown}: operator: {e}"))?;
            if !unknown.is_empty() {
                return Err(format!("{shown}: unknown keys: {}", unknown.join(", ")));
            }
            Some(s)
        }
        None => None,
    };
    let mut unknown = Vec::new();
    let spec: WorkspaceSpec = serde_ignored::deserialize(value, |p| unknown.push(dotted(&p)))
        .map_err(|e| format!("{shown}: not a Workspace spec: {e}"))?;
    if !unknown.is_empty() {
        return Err(format!(
            "{shown}: unknown keys: {} (the keys are those of a Workspace spec; see docs/operator.md)",
            unknown.join(", ")
        ));
    }
    Ok((spec, settings))
}

pub fn render(args: RenderArgs) -> Result<String, String> {
    let text = std::fs::read_to_string(&args.values)
        .map_err(|e| format!("cannot read {}: {e}", args.values.display()))?;
    let (spec, settings) = parse_values(&args.values, &text)?;
    let settings = match settings {
        Some(s) => s,
        None => args.settings.try_into()?,
    };
    let mut ws = Workspace::new(&args.name, spec);
    // No operator, so no waker: the hosts lead to the workload always.
    ws.status = Some(WorkspaceStatus {
        phase: Some(Phase::Ready),
        ..Default::default()
    });
    let mut objects = manifests::build(&ws, &settings).map_err(|e| e.to_string())?;
    objects.retain(|m| !(m.kind == manifests::Kind::Service && m.name == operator::names::WAKER));
    if args.with_secrets {
        let (creds, _) = credentials::Credentials::keep_or_generate(&ws.spec.owner.name, None);
        let secret = credentials::credentials_secret(&ws, &creds);
        let m = Manifest::new(manifests::Kind::Secret, &secret).map_err(|e| e.to_string())?;
        objects.insert(2, m);
    }
    let mut out = format!(
        "# kube-coder render {}: {} objects. Apply in this order.\n",
        args.name,
        objects.len()
    );
    if !args.with_secrets {
        out.push_str(&format!(
            "# Not included: Secret {ns}/{cred} with keys api-token, htpasswd (user:bcrypt) and password;\n\
             # create it from your secret store (or re-run with --with-secrets).\n",
            ns = operator::names::namespace(&args.name),
            cred = operator::names::CREDENTIALS_SECRET,
        ));
    }
    for m in objects {
        let yaml = serde_yaml::to_string(&m.body).map_err(|e| e.to_string())?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}

pub fn run(args: RenderArgs) -> Result<(), String> {
    print!("{}", render(args)?);
    Ok(())
}
