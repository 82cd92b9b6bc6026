//! `kube-coder-image pack`: the command line of the image packer (see lib.rs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use image_pack::{oci::Definition, pack, PackRequest};

/// Packs a root filesystem into a reproducible OCI image archive.
#[derive(Parser)]
#[command(name = "kube-coder-image", version)]
enum Cli {
    /// Pack ROOTFS as one layer, run as DEFINITION says, into OUT.
    Pack(PackArgs),
}

#[derive(clap::Args)]
struct PackArgs {
    /// The root filesystem (a directory).
    #[arg(long)]
    rootfs: PathBuf,
    /// images/<name>/image.toml: user, entrypoint, env, ports, labels.
    #[arg(long)]
    definition: PathBuf,
    /// The image's full name with tag, e.g. ghcr.io/kube-coder/workspace:0.1.0.
    #[arg(long)]
    reference: String,
    /// Every time in the image, in seconds since 1970.
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    epoch: u64,
    /// The OCI archive to write.
    #[arg(long)]
    out: PathBuf,
    /// Where to write the SPDX SBOM (JSON).
    #[arg(long)]
    sbom: Option<PathBuf>,
    /// A package-lock.json whose packages the image holds (repeatable).
    #[arg(long)]
    npm_lock: Vec<PathBuf>,
    /// The Cargo.lock of the binary the image holds.
    #[arg(long)]
    cargo_lock: Option<PathBuf>,
    /// gzip level of the layer, 0 to 9.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    gzip_level: u32,
}

fn main() -> ExitCode {
    let Cli::Pack(args) = Cli::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-coder-image: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: PackArgs) -> anyhow::Result<()> {
    let definition = Definition::read(&args.definition)?;
    let packed = pack(&PackRequest {
        rootfs: &args.rootfs,
        definition: &definition,
        reference: &args.reference,
        epoch: args.epoch,
        out: &args.out,
        sbom: args.sbom.as_deref(),
        npm_locks: &args.npm_lock,
        cargo_lock: args.cargo_lock.as_deref(),
        gzip_level: args.gzip_level,
    })?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "{}: {} ({:.1} MiB in {} files, {} dirs, {} links; layer {:.1} MiB gzip; archive {:.1} MiB; {} components in the SBOM)",
        args.reference,
        packed.manifest_digest,
        mib(packed.layer.bytes),
        packed.layer.files,
        packed.layer.dirs,
        packed.layer.symlinks + packed.layer.hardlinks,
        mib(packed.layer_gzip_bytes),
        mib(packed.archive_bytes),
        packed.components,
    );
    Ok(())
}
