//! `kube-coder-image`: packs a root filesystem into a reproducible OCI
//! image archive with an SPDX SBOM. `images/build.sh` makes the root
//! filesystems (mmdebstrap, Debian packages, npm, our binary); this crate
//! turns each into the archive containerd imports and a registry takes.
//!
//! - `layer.rs`: the tree as one deterministic tar layer.
//! - `oci.rs`: the image definition, config/manifest/index, the archive.
//! - `sbom.rs`: the SPDX document.
//!
//! No library writes OCI layouts from a directory deterministically
//! without a daemon or a container store (umoci keeps the disk's times and
//! owners, buildah needs a store and user namespaces), and what it takes is
//! small: a sorted tar, two hashes and three JSON documents.

pub mod layer;
pub mod oci;
pub mod sbom;

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Definition { path: String, reason: String },
}

impl PackError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        PackError::Io {
            what: what.into(),
            source,
        }
    }
}

/// What to pack.
pub struct PackRequest<'a> {
    pub rootfs: &'a Path,
    pub definition: &'a oci::Definition,
    /// Full name with tag: `ghcr.io/kube-coder/workspace:0.1.0`.
    pub reference: &'a str,
    /// Seconds since 1970: every time in the image (SOURCE_DATE_EPOCH).
    pub epoch: u64,
    pub out: &'a Path,
    pub sbom: Option<&'a Path>,
    pub npm_locks: &'a [PathBuf],
    pub cargo_lock: Option<&'a Path>,
    /// 0 (none) to 9 (best).
    pub gzip_level: u32,
}

/// What was packed.
#[derive(Debug)]
pub struct Packed {
    pub manifest_digest: String,
    pub layer: layer::LayerStats,
    pub layer_gzip_bytes: u64,
    pub archive_bytes: u64,
    pub components: usize,
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    /// `sha256:<hex>` of what passed through.
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hash.clone().finalize()))
    }
}

fn hashing<W: Write>(inner: W) -> Hashing<W> {
    Hashing {
        inner,
        hash: Sha256::new(),
        bytes: 0,
    }
}

/// Formats seconds since 1970 as RFC 3339 in UTC.
pub fn rfc3339(epoch: u64) -> Result<String, PackError> {
    let bad = |reason: String| PackError::Definition {
        path: "SOURCE_DATE_EPOCH".into(),
        reason,
    };
    let t =
        time::OffsetDateTime::from_unix_timestamp(epoch as i64).map_err(|e| bad(e.to_string()))?;
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| bad(e.to_string()))
}

/// Packs `req.rootfs` into the archive `req.out` (written beside it under a
/// temporary name and renamed, so a failed build leaves no half archive).
pub fn pack(req: &PackRequest) -> Result<Packed, PackError> {
    let created = rfc3339(req.epoch)?;
    let tmp_layer = req.out.with_extension("layer.tmp");
    let tmp_out = req.out.with_extension("tmp");
    let result = pack_into(req, &created, &tmp_layer, &tmp_out);
    let _ = fs::remove_file(&tmp_layer);
    if result.is_err() {
        let _ = fs::remove_file(&tmp_out);
    }
    result
}

fn pack_into(
    req: &PackRequest,
    created: &str,
    tmp_layer: &Path,
    tmp_out: &Path,
) -> Result<Packed, PackError> {
    let io_err = |what: &Path| {
        let what = what.display().to_string();
        move |e| PackError::io(what, e)
    };
    // The layer: tar → hash (diff_id) → gzip → hash (blob digest) → file.
    let file = fs::File::create(tmp_layer).map_err(io_err(tmp_layer))?;
    let blob = hashing(BufWriter::new(file));
    let gz = flate2::GzBuilder::new().write(blob, flate2::Compression::new(req.gzip_level));
    let diff = hashing(gz);
    let (layer_stats, diff) = layer::write_layer(req.rootfs, req.epoch, diff)?;
    let diff_id = diff.digest();
    let mut blob = diff.inner.finish().map_err(io_err(tmp_layer))?;
    blob.flush().map_err(io_err(tmp_layer))?;
    let layer_desc = oci::Descriptor {
        media_type: oci::MEDIA_LAYER_GZIP.into(),
        digest: blob.digest(),
        size: blob.bytes,
        annotations: Default::default(),
    };
    let created_by = format!(
        "kube-coder-image {} pack {}",
        env!("CARGO_PKG_VERSION"),
        req.reference
    );
    let image = oci::assemble(
        req.definition,
        req.reference,
        created,
        &created_by,
        layer_desc,
        diff_id,
    );

    let layer_file = fs::File::open(tmp_layer).map_err(io_err(tmp_layer))?;
    let out = fs::File::create(tmp_out).map_err(io_err(tmp_out))?;
    let out = oci::write_archive(
        &image,
        io::BufReader::new(layer_file),
        req.epoch,
        BufWriter::new(out),
    )?;
    let out = out
        .into_inner()
        .map_err(|e| PackError::io(tmp_out.display().to_string(), e.into_error()))?;
    out.sync_all().map_err(io_err(tmp_out))?;
    let archive_bytes = out.metadata().map_err(io_err(tmp_out))?.len();
    fs::rename(tmp_out, req.out).map_err(io_err(req.out))?;

    let mut components = sbom::debian_packages(req.rootfs)?;
    for lock in req.npm_locks {
        components.extend(sbom::npm_packages(lock)?);
    }
    if let Some(lock) = req.cargo_lock {
        components.extend(sbom::cargo_packages(lock)?);
    }
    if let Some(path) = req.sbom {
        let doc = sbom::document(
            req.reference,
            &image.manifest_desc.digest,
            created,
            &components,
        );
        fs::write(path, doc).map_err(io_err(path))?;
    }
    Ok(Packed {
        manifest_digest: image.manifest_desc.digest,
        layer: layer_stats,
        layer_gzip_bytes: image.layer_desc.size,
        archive_bytes,
        components: components.len(),
    })
}
