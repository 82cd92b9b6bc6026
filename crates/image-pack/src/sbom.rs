//! The image's software bill of materials, in SPDX 2.3 JSON, made offline
//! from what the build itself knows: the Debian packages recorded in the
//! root filesystem's dpkg database (`var/lib/dpkg/status`, or one file per
//! package in `status.d/` where no dpkg is installed), the npm packages of
//! the lock files given, and the crates of our binary's `Cargo.lock`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::PackError;

/// One component of the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Component {
    /// `deb`, `npm` or `cargo`: the purl type.
    pub kind: &'static str,
    pub name: String,
    pub version: String,
}

impl Component {
    fn purl(&self) -> String {
        match self.kind {
            "deb" => format!(
                "pkg:deb/debian/{}@{}?arch=amd64",
                self.name,
                encode(&self.version)
            ),
            kind => format!("pkg:{kind}/{}@{}", encode(&self.name), self.version),
        }
    }
}

/// Percent-encodes what a purl may not hold raw (`@` in npm scopes is
/// kept as `%40`, `:` in Debian epochs as `%3A`).
fn encode(s: &str) -> String {
    s.replace('@', "%40").replace(':', "%3A")
}

/// Debian packages installed in `rootfs`.
pub fn debian_packages(rootfs: &Path) -> Result<Vec<Component>, PackError> {
    let mut texts = Vec::new();
    let status = rootfs.join("var/lib/dpkg/status");
    if status.exists() {
        texts.push(read(&status)?);
    }
    let status_d = rootfs.join("var/lib/dpkg/status.d");
    if status_d.is_dir() {
        let mut files: Vec<_> = fs::read_dir(&status_d)
            .map_err(|e| PackError::io(status_d.display().to_string(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            texts.push(read(&f)?);
        }
    }
    let mut out = Vec::new();
    for text in texts {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    l.strip_prefix(name)
                        .and_then(|r| r.strip_prefix(':'))
                        .map(|v| v.trim().to_string())
                })
            };
            let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
                continue;
            };
            // In a full dpkg database, removed packages keep a stanza.
            if field("Status").is_some_and(|s| !s.ends_with(" installed")) {
                continue;
            }
            out.push(Component {
                kind: "deb",
                name,
                version,
            });
        }
    }
    Ok(out)
}

/// npm packages of a `package-lock.json` (lockfile version 2 or 3).
pub fn npm_packages(lock: &Path) -> Result<Vec<Component>, PackError> {
    let value: serde_json::Value =
        serde_json::from_str(&read(lock)?).map_err(|e| PackError::Definition {
            path: lock.display().to_string(),
            reason: e.to_string(),
        })?;
    let mut out = Vec::new();
    if let Some(packages) = value.get("packages").and_then(|p| p.as_object()) {
        for (path, pkg) in packages {
            // "" is the lock's own project; the rest are node_modules paths.
            let Some(name) = path.rsplit_once("node_modules/").map(|(_, n)| n) else {
                continue;
            };
            if let Some(version) = pkg.get("version").and_then(|v| v.as_str()) {
                out.push(Component {
                    kind: "npm",
                    name: name.to_string(),
                    version: version.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// Crates of a `Cargo.lock` that come from a registry (not the workspace's own).
pub fn cargo_packages(lock: &Path) -> Result<Vec<Component>, PackError> {
    #[derive(serde::Deserialize)]
    struct Lock {
        #[serde(default)]
        package: Vec<Pkg>,
    }
    #[derive(serde::Deserialize)]
    struct Pkg {
        name: String,
        version: String,
        source: Option<String>,
    }
    let lock: Lock = toml::from_str(&read(lock)?).map_err(|e| PackError::Definition {
        path: lock.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(lock
        .package
        .into_iter()
        .filter(|p| p.source.is_some())
        .map(|p| Component {
            kind: "cargo",
            name: p.name,
            version: p.version,
        })
        .collect())
}

fn read(path: &Path) -> Result<String, PackError> {
    fs::read_to_string(path).map_err(|e| PackError::io(path.display().to_string(), e))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: &'a str,
    document_namespace: String,
    creation_info: CreationInfo<'a>,
    packages: Vec<Package>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
struct CreationInfo<'a> {
    created: &'a str,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Package {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    version_info: String,
    download_location: &'static str,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

/// The SPDX document of image `reference` (whose manifest digest is
/// `digest`) made of `components`.
pub fn document(reference: &str, digest: &str, created: &str, components: &[Component]) -> Vec<u8> {
    let unique: BTreeSet<&Component> = components.iter().collect();
    let image_id = "SPDXRef-Image".to_string();
    let mut packages = vec![Package {
        spdx_id: image_id.clone(),
        name: reference.to_string(),
        version_info: digest.to_string(),
        download_location: "NOASSERTION",
        files_analyzed: false,
        external_refs: vec![ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: oci_purl(reference, digest),
        }],
    }];
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".into(),
        relationship_type: "DESCRIBES",
        related_spdx_element: image_id.clone(),
    }];
    for (i, c) in unique.into_iter().enumerate() {
        let id = format!("SPDXRef-{}-{}", c.kind, i + 1);
        packages.push(Package {
            spdx_id: id.clone(),
            name: c.name.clone(),
            version_info: c.version.clone(),
            download_location: "NOASSERTION",
            files_analyzed: false,
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: c.purl(),
            }],
        });
        relationships.push(Relationship {
            spdx_element_id: image_id.clone(),
            relationship_type: "CONTAINS",
            related_spdx_element: id,
        });
    }
    let doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: reference,
        document_namespace: format!(
            "https://kube-coder.dev/spdx/{}/{}",
            reference.replace([':', '/'], "-"),
            digest.trim_start_matches("sha256:")
        ),
        creation_info: CreationInfo {
            created,
            creators: vec![format!(
                "Tool: kube-coder-image-{}",
                env!("CARGO_PKG_VERSION")
            )],
        },
        packages,
        relationships,
    };
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}

/// `pkg:oci/workspace@sha256:…?repository_url=ghcr.io/kube-coder/workspace&tag=0.1.0`
fn oci_purl(reference: &str, digest: &str) -> String {
    let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
    let name = repo.rsplit('/').next().unwrap_or(repo);
    format!(
        "pkg:oci/{name}@{}?repository_url={repo}&tag={tag}",
        digest.replace(':', "%3A")
    )
}
