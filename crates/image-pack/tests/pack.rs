//! The packer against real trees on disk: reproducible bytes, an archive
//! whose documents and blobs agree with each other, and an SBOM of what the
//! tree records.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use image_pack::{oci::Definition, pack, PackRequest};
use sha2::{Digest, Sha256};

const EPOCH: u64 = 1_700_000_000;

fn definition() -> Definition {
    toml::from_str(
        r#"
user = "1000:1000"
entrypoint = ["/usr/bin/tini", "--"]
cmd = ["serve"]
env = ["HOME=/home/dev"]
ports = ["6080/tcp"]
"#,
    )
    .unwrap()
}

/// A small tree: nested files, an executable, a symlink, a hard link, a
/// FIFO, and a path longer than tar's 100-byte name field.
fn make_tree(root: &Path, reverse: bool) {
    let mut files = vec![
        ("usr/local/bin/tool", "#!/bin/sh\necho hi\n"),
        ("etc/passwd", "dev:x:1000:1000::/home/dev:/bin/bash\n"),
        ("home/dev/.keep", ""),
    ];
    let long = format!("opt/{}/file.txt", "d".repeat(120));
    files.push((&long, "long"));
    if reverse {
        files.reverse();
    }
    for (path, body) in &files {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
    }
    fs::set_permissions(
        root.join("usr/local/bin/tool"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::hard_link(
        root.join("usr/local/bin/tool"),
        root.join("usr/local/bin/tool2"),
    )
    .unwrap();
    symlink("/usr/local/bin/tool", root.join("usr/local/bin/link")).unwrap();
    let fifo = root.join("run.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
}

fn pack_tree(root: &Path, out: &Path) -> image_pack::Packed {
    let def = definition();
    pack(&PackRequest {
        rootfs: root,
        definition: &def,
        reference: "ghcr.io/kube-coder/test:1.2.3",
        epoch: EPOCH,
        out,
        sbom: Some(&out.with_extension("spdx.json")),
        npm_locks: &[],
        cargo_lock: None,
        gzip_level: 6,
    })
    .unwrap()
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The archive's entries by path.
fn entries(archive: &Path) -> HashMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(fs::File::open(archive).unwrap());
    let mut out = HashMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        out.insert(path, body);
    }
    out
}

#[test]
fn the_same_tree_gives_the_same_bytes_whatever_its_times_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    make_tree(&a, false);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    make_tree(&b, true);
    let (pa, pb) = (
        pack_tree(&a, &dir.path().join("a.tar")),
        pack_tree(&b, &dir.path().join("b.tar")),
    );
    assert_eq!(pa.manifest_digest, pb.manifest_digest);
    assert_eq!(
        fs::read(dir.path().join("a.tar")).unwrap(),
        fs::read(dir.path().join("b.tar")).unwrap()
    );
    // A change of content is a change of digest.
    fs::write(b.join("etc/passwd"), "other\n").unwrap();
    let pc = pack_tree(&b, &dir.path().join("c.tar"));
    assert_ne!(pa.manifest_digest, pc.manifest_digest);
}

#[test]
fn the_archive_is_an_oci_layout_whose_digests_hold() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    make_tree(&root, false);
    let archive = dir.path().join("image.tar");
    let packed = pack_tree(&root, &archive);
    let files = entries(&archive);
    let blob = |digest: &str| {
        let body = &files[&format!("blobs/sha256/{}", &digest[7..])];
        assert_eq!(sha(body), digest, "a blob's name is its digest");
        body.clone()
    };
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();

    assert_eq!(json(&files["oci-layout"])["imageLayoutVersion"], "1.0.0");
    let index = json(&files["index.json"]);
    let m = &index["manifests"][0];
    assert_eq!(m["digest"], packed.manifest_digest.as_str());
    assert_eq!(
        m["annotations"]["io.containerd.image.name"],
        "ghcr.io/kube-coder/test:1.2.3"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        "1.2.3"
    );
    let manifest = json(&blob(m["digest"].as_str().unwrap()));
    let config = json(&blob(manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["User"], "1000:1000");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/bin/tini");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert!(config["config"]["ExposedPorts"]["6080/tcp"].is_object());

    // The layer: gzip of a tar whose digest is the config's diff_id.
    let layer_desc = &manifest["layers"][0];
    let gz = blob(layer_desc["digest"].as_str().unwrap());
    assert_eq!(layer_desc["size"], gz.len() as u64);
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], sha(&tar_bytes).as_str());

    let mut layer = tar::Archive::new(&tar_bytes[..]);
    let mut seen = HashMap::new();
    for e in layer.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.mtime().unwrap(), EPOCH, "every time is the epoch");
        let path = e.path().unwrap().display().to_string();
        let link = e.link_name().unwrap().map(|l| l.display().to_string());
        seen.insert(path, (h.entry_type(), h.mode().unwrap(), link));
    }
    let tool = &seen["usr/local/bin/tool"];
    assert_eq!((tool.0, tool.1), (tar::EntryType::Regular, 0o755));
    // One copy of a file with two names; the second is a hard link.
    let (kind, _, target) = &seen["usr/local/bin/tool2"];
    assert_eq!(*kind, tar::EntryType::Link);
    assert_eq!(target.as_deref(), Some("usr/local/bin/tool"));
    let (kind, _, target) = &seen["usr/local/bin/link"];
    assert_eq!(*kind, tar::EntryType::Symlink);
    assert_eq!(target.as_deref(), Some("/usr/local/bin/tool"));
    assert!(seen.keys().any(|p| p.len() > 100), "long names survive");
    assert!(!seen.contains_key("run.fifo"), "no FIFOs in an image");
    assert_eq!(packed.layer.skipped, 1);
}

#[test]
fn the_sbom_lists_installed_debian_packages_and_npm_locks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("var/lib/dpkg/status.d")).unwrap();
    fs::write(
        root.join("var/lib/dpkg/status"),
        "Package: tmux\nStatus: install ok installed\nVersion: 3.3a-3\nDescription: x\n more\n\n\
         Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
         Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u10\n",
    )
    .unwrap();
    fs::write(
        root.join("var/lib/dpkg/status.d/tini"),
        "Package: tini\nVersion: 0.19.0-1\n",
    )
    .unwrap();
    let lock = dir.path().join("package-lock.json");
    fs::write(
        &lock,
        r#"{"lockfileVersion":3,"packages":{"":{"name":"x"},
           "node_modules/@openai/codex":{"version":"0.171.0"},
           "node_modules/a/node_modules/b":{"version":"2.0.0"}}}"#,
    )
    .unwrap();
    let def = definition();
    let out = dir.path().join("img.tar");
    let sbom_path = dir.path().join("img.spdx.json");
    let packed = pack(&PackRequest {
        rootfs: &root,
        definition: &def,
        reference: "ghcr.io/kube-coder/test:1",
        epoch: EPOCH,
        out: &out,
        sbom: Some(&sbom_path),
        npm_locks: &[lock],
        cargo_lock: None,
        gzip_level: 1,
    })
    .unwrap();
    assert_eq!(packed.components, 5);
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&sbom_path).unwrap()).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    let purls: Vec<String> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for want in [
        "pkg:deb/debian/tmux@3.3a-3?arch=amd64",
        "pkg:deb/debian/libc6@2.36-9+deb12u10?arch=amd64",
        "pkg:deb/debian/tini@0.19.0-1?arch=amd64",
        "pkg:npm/%40openai/codex@0.171.0",
        "pkg:npm/b@2.0.0",
    ] {
        assert!(purls.iter().any(|p| p == want), "{want} in {purls:?}");
    }
    assert!(
        !purls.iter().any(|p| p.contains("/gone@")),
        "removed packages are not listed"
    );
    assert!(purls[0].starts_with("pkg:oci/test@sha256%3A"));
}
