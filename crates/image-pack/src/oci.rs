//! The OCI image around a layer: the image definition read from
//! `images/<name>/image.toml`, the config, manifest and index documents,
//! and the archive (an OCI image layout in one tar file, what
//! `ctr images import`, `skopeo copy oci-archive:` and `podman load` take).
//!
//! Every document is serialised from structs, so keys keep one order, and
//! every time in them is the build's epoch: the same inputs give the same
//! digests.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::PackError;

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `images/<name>/image.toml`: how the image runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// `uid:gid`, numeric, so a runtime needs no `/etc/passwd` lookup to
    /// know the image is non-root.
    pub user: String,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub workdir: String,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Definition {
    pub fn read(path: &Path) -> Result<Self, PackError> {
        let text =
            fs::read_to_string(path).map_err(|e| PackError::io(path.display().to_string(), e))?;
        toml::from_str(&text).map_err(|e| PackError::Definition {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// A content-addressed blob: its digest and size.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct RuntimeConfig<'a> {
    #[serde(rename = "User")]
    user: &'a str,
    #[serde(rename = "Env", skip_serializing_if = "<[_]>::is_empty")]
    env: &'a [String],
    #[serde(rename = "Entrypoint", skip_serializing_if = "<[_]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(rename = "Cmd", skip_serializing_if = "<[_]>::is_empty")]
    cmd: &'a [String],
    #[serde(rename = "WorkingDir", skip_serializing_if = "str::is_empty")]
    workdir: &'a str,
    #[serde(rename = "ExposedPorts", skip_serializing_if = "BTreeMap::is_empty")]
    ports: BTreeMap<&'a str, Empty>,
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: &'a [String],
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: &'a str,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    created: &'a str,
    architecture: &'static str,
    os: &'static str,
    config: RuntimeConfig<'a>,
    rootfs: RootFs<'a>,
    history: Vec<History<'a>>,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, &'a str>,
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: [&'a Descriptor; 1],
}

/// Everything an image is made of, in memory but for the layer blob.
pub struct Image {
    pub config: Vec<u8>,
    pub config_desc: Descriptor,
    pub manifest: Vec<u8>,
    pub manifest_desc: Descriptor,
    pub index: Vec<u8>,
    pub layer_desc: Descriptor,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Structs only: serialising them cannot fail.
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

/// Builds config, manifest and index for one layer.
///
/// `reference` is the full name with tag (`ghcr.io/kube-coder/workspace:0.1.0`):
/// containerd names the imported image after `io.containerd.image.name`,
/// other tools after the tag in `org.opencontainers.image.ref.name`.
pub fn assemble(
    def: &Definition,
    reference: &str,
    created: &str,
    created_by: &str,
    layer_desc: Descriptor,
    diff_id: String,
) -> Image {
    let diff_ids = [diff_id];
    let config = json(&ImageConfig {
        created,
        architecture: "amd64",
        os: "linux",
        config: RuntimeConfig {
            user: &def.user,
            env: &def.env,
            entrypoint: &def.entrypoint,
            cmd: &def.cmd,
            workdir: &def.workdir,
            ports: def.ports.iter().map(|p| (p.as_str(), Empty {})).collect(),
            labels: &def.labels,
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: &diff_ids,
        },
        history: vec![History {
            created,
            created_by,
        }],
    });
    let config_desc = Descriptor {
        media_type: MEDIA_CONFIG.into(),
        digest: sha256_digest(&config),
        size: config.len() as u64,
        annotations: BTreeMap::new(),
    };
    let manifest = json(&Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST,
        config: &config_desc,
        layers: std::slice::from_ref(&layer_desc),
        annotations: BTreeMap::from([("org.opencontainers.image.created", created)]),
    });
    let tag = reference
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map(|(_, t)| t)
        .unwrap_or("latest");
    let manifest_desc = Descriptor {
        media_type: MEDIA_MANIFEST.into(),
        digest: sha256_digest(&manifest),
        size: manifest.len() as u64,
        annotations: BTreeMap::from([
            (
                "io.containerd.image.name".to_string(),
                reference.to_string(),
            ),
            (
                "org.opencontainers.image.ref.name".to_string(),
                tag.to_string(),
            ),
        ]),
    };
    let index = json(&Index {
        schema_version: 2,
        media_type: MEDIA_INDEX,
        manifests: [&manifest_desc],
    });
    Image {
        config,
        config_desc,
        manifest,
        manifest_desc,
        index,
        layer_desc,
    }
}

/// Writes the OCI image layout as one tar archive: `oci-layout`,
/// `index.json` and the blobs, in a fixed order with fixed times.
pub fn write_archive<W: Write, L: Read + Seek>(
    image: &Image,
    mut layer_blob: L,
    epoch: u64,
    out: W,
) -> Result<W, PackError> {
    let mut tar = tar::Builder::new(out);
    let err = |e| PackError::io("writing the image archive", e);
    let put = |tar: &mut tar::Builder<W>, path: &str, size: u64, data: &mut dyn Read| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(epoch);
        h.set_size(size);
        tar.append_data(&mut h, path, data)
    };
    let dir = |tar: &mut tar::Builder<W>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(epoch);
        h.set_size(0);
        tar.append_data(&mut h, path, io::empty())
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    put(
        &mut tar,
        "oci-layout",
        layout.len() as u64,
        &mut &layout[..],
    )
    .map_err(err)?;
    put(
        &mut tar,
        "index.json",
        image.index.len() as u64,
        &mut &image.index[..],
    )
    .map_err(err)?;
    dir(&mut tar, "blobs").map_err(err)?;
    dir(&mut tar, "blobs/sha256").map_err(err)?;
    let blob_path = |d: &Descriptor| format!("blobs/sha256/{}", &d.digest["sha256:".len()..]);
    // Blobs in digest order: a fixed order that does not depend on kind.
    let mut blobs: Vec<(&Descriptor, Option<&[u8]>)> = vec![
        (&image.config_desc, Some(&image.config[..])),
        (&image.manifest_desc, Some(&image.manifest[..])),
        (&image.layer_desc, None),
    ];
    blobs.sort_by(|a, b| a.0.digest.cmp(&b.0.digest));
    for (desc, bytes) in blobs {
        match bytes {
            Some(b) => put(&mut tar, &blob_path(desc), b.len() as u64, &mut &b[..]),
            None => {
                layer_blob.rewind().map_err(err)?;
                put(&mut tar, &blob_path(desc), desc.size, &mut layer_blob)
            }
        }
        .map_err(err)?;
    }
    tar.into_inner().map_err(err)
}
