//! `kube-coder build -t IMAGE [-f FILE] [--build-arg K=V] [--target T]
//! [--platform P] DIR`, inside a workspace that builds through the
//! operator (`spec.build`): DIR goes as a tar, without what its
//! `.dockerignore` leaves out, to the operator's builds endpoint
//! (`KUBE_CODER_BUILD_URL`) with the pod's projected build token
//! (`KUBE_CODER_BUILD_TOKEN_FILE`), through the workspace server
//! (`POST /api/builds`, so the build is in its history) when a task or
//! terminal of it runs this. The build's log comes back as it happens (on
//! stderr); the pushed image, `IMAGE@DIGEST`, is printed on stdout at the
//! end. With `build.mode: buildkit` it builds with the pod's own BuildKit
//! instead (`buildctl`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The largest context sent (the operator's limit too).
const MAX_CONTEXT: u64 = 100 << 20;

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The image to push, REGISTRY/REPOSITORY[:TAG] (repeat for more tags).
    #[arg(short = 't', long = "tag", required = true)]
    tags: Vec<String>,
    /// The Containerfile, relative to DIR (default: Containerfile if there
    /// is one, else Dockerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// A build argument KEY=VALUE (repeatable).
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// The stage to build.
    #[arg(long)]
    target: Option<String>,
    /// The platform to build for, e.g. linux/amd64.
    #[arg(long)]
    platform: Option<String>,
    /// The build context.
    dir: PathBuf,
}

fn fail(message: &str) -> ExitCode {
    eprintln!("kube-coder build: {message}");
    ExitCode::FAILURE
}

pub fn run(args: BuildArgs) -> ExitCode {
    let file = args.file.clone().unwrap_or_else(|| {
        if args.dir.join("Containerfile").is_file() {
            "Containerfile".into()
        } else {
            "Dockerfile".into()
        }
    });
    if !args.dir.join(&file).is_file() {
        return fail(&format!("{} has no {file}", args.dir.display()));
    }
    let (Ok(url), Ok(token_file)) = (
        std::env::var("KUBE_CODER_BUILD_URL"),
        std::env::var("KUBE_CODER_BUILD_TOKEN_FILE"),
    ) else {
        // build.mode buildkit: the builder is in this pod.
        if let Ok(host) = std::env::var("BUILDKIT_HOST") {
            return match build_here(&args, &file, &host) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            };
        }
        return fail(
            "this workspace does not build images: its Workspace needs spec.build.registries \
             (and build.mode brokered, the default), or build.mode buildkit",
        );
    };
    let token = match std::fs::read_to_string(&token_file) {
        Ok(t) => t.trim().to_string(),
        Err(e) => return fail(&format!("cannot read the build token {token_file}: {e}")),
    };
    let context = match context_tar(&args.dir, &file) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for tag in &args.tags {
        query.append_pair("tag", tag);
    }
    query.append_pair("file", &file);
    for arg in &args.build_args {
        query.append_pair("build-arg", arg);
    }
    if let Some(t) = &args.target {
        query.append_pair("target", t);
    }
    if let Some(p) = &args.platform {
        query.append_pair("platform", p);
    }
    let query = query.finish();
    // Through this workspace's server when it says where it is: the build
    // is then in its history and its dashboard. Else to the operator.
    let (url, token, to) = match local_api() {
        Some((api, token)) => (
            format!("{api}/api/builds?{query}"),
            token,
            "the workspace server",
        ),
        None => (format!("{url}?{query}"), token, "the operator"),
    };
    eprintln!(
        "kube-coder build: sending {} KiB of context to {to}",
        context.len().div_ceil(1024)
    );
    crate::cluster::block_on(async move { send(&url, &token, context).await })
}

/// The workspace server's API and its token, as it puts them in the
/// environment of its tasks and terminals (`KUBE_CODER_LOCAL_API`,
/// `KUBE_CODER_LOCAL_API_TOKEN_FILE`).
fn local_api() -> Option<(String, String)> {
    let api = std::env::var("KUBE_CODER_LOCAL_API").ok()?;
    let file = std::env::var("KUBE_CODER_LOCAL_API_TOKEN_FILE").ok()?;
    let token = std::fs::read_to_string(file).ok()?;
    Some((api, token.trim().to_string()))
}

async fn send(url: &str, token: &str, context: Vec<u8>) -> Result<(), String> {
    // Not through the workspace's HTTP_PROXY: its egress gateway refuses
    // the operator's in-cluster name (and the server is on loopback).
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/x-tar")
        .body(context)
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        return Err(format!(
            "refused ({status}): {}",
            body["error"].as_str().unwrap_or("no reason given")
        ));
    }
    let mut lines = workspace::builds::LogLines::default();
    let mut outcome = Err("the build's log ended without a result".to_string());
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the build's log was cut off: {e}"))?
    {
        for line in lines.push(&chunk) {
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(log) = event["log"].as_str() {
                eprintln!("{log}");
            } else if let Some(status) = event["status"].as_str() {
                eprintln!("kube-coder build: {status}");
            } else if let Some(done) = event.get("done") {
                let digest = done["digest"].as_str().unwrap_or_default();
                let images = done["images"].as_array().into_iter().flatten();
                print_images(images.filter_map(|i| i.as_str()), digest);
                let size = done["size"]
                    .as_u64()
                    .map(|s| format!("{:.1} MiB ", s as f64 / 1048576.0))
                    .unwrap_or_default();
                eprintln!(
                    "kube-coder build: pushed {size}in {:.1} s (the build pod was ready after {:.1} s)",
                    done["seconds"].as_f64().unwrap_or_default(),
                    done["ready_seconds"].as_f64().unwrap_or_default()
                );
                outcome = Ok(());
            } else if let Some(error) = event["error"].as_str() {
                outcome = Err(error.to_string());
            }
        }
    }
    outcome
}

/// Builds with the BuildKit of this pod (`build.mode: buildkit`) through
/// `buildctl`, which reads the context and its `.dockerignore` itself and
/// pushes with the credentials in `~/.docker` (`DOCKER_CONFIG`); its
/// progress goes to stderr as it comes.
fn build_here(args: &BuildArgs, file: &str, host: &str) -> Result<(), String> {
    let dir = args.dir.display().to_string();
    let insecure = std::env::var("KUBE_CODER_BUILD_INSECURE_REGISTRIES").unwrap_or_default();
    let plain_http = args.tags.iter().all(|t| {
        let registry = t.split('/').next().unwrap_or_default();
        insecure.split(',').any(|r| !r.is_empty() && r == registry)
    });
    let mut output = format!("type=image,\"name={}\",push=true", args.tags.join(","));
    if plain_http {
        output.push_str(",registry.insecure=true");
    }
    let metadata =
        std::env::temp_dir().join(format!("kube-coder-build-{}.json", std::process::id()));
    let mut command = std::process::Command::new("buildctl");
    command
        .arg(format!("--addr={host}"))
        .args(["build", "--frontend=dockerfile.v0", "--progress=plain"])
        .args(["--local", &format!("context={dir}")])
        .args(["--local", &format!("dockerfile={dir}")])
        .args(["--opt", &format!("filename={file}")])
        .args(["--output", &output])
        .arg(format!("--metadata-file={}", metadata.display()));
    for arg in &args.build_args {
        command.args(["--opt", &format!("build-arg:{arg}")]);
    }
    if let Some(t) = &args.target {
        command.args(["--opt", &format!("target={t}")]);
    }
    if let Some(p) = &args.platform {
        command.args(["--opt", &format!("platform={p}")]);
    }
    let started = std::time::Instant::now();
    let status = command
        .status()
        .map_err(|e| format!("cannot run buildctl (this workspace's image should have it): {e}"))?;
    if !status.success() {
        return Err(format!("the build failed ({status}); its log is above"));
    }
    let written = std::fs::read(&metadata);
    let _ = std::fs::remove_file(&metadata);
    let metadata: serde_json::Value = written
        .ok()
        .and_then(|m| serde_json::from_slice(&m).ok())
        .unwrap_or_default();
    let digest = metadata["containerimage.digest"]
        .as_str()
        .ok_or("the build left no image digest")?;
    print_images(args.tags.iter().map(String::as_str), digest);
    eprintln!(
        "kube-coder build: pushed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `IMAGE@DIGEST` on stdout, one line per tag (without the tag).
fn print_images<'a>(tags: impl IntoIterator<Item = &'a str>, digest: &str) {
    for image in tags {
        let name = image
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .map_or(image, |(n, _)| n);
        println!("{name}@{digest}");
    }
}

/// The rules of `dir`'s `.dockerignore`, as Docker reads them: each
/// pattern is relative to the context's root, `!` keeps again what an
/// earlier pattern left out.
fn dockerignore(dir: &Path) -> Result<Gitignore, String> {
    let mut builder = GitignoreBuilder::new(dir);
    if let Ok(text) = std::fs::read_to_string(dir.join(".dockerignore")) {
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keep, pattern) = match line.strip_prefix('!') {
                Some(p) => ("!", p),
                None => ("", line),
            };
            // Anchored at the root, as Docker has them.
            let pattern = format!(
                "{keep}/{}",
                pattern.trim_start_matches("./").trim_start_matches('/')
            );
            builder
                .add_line(None, &pattern)
                .map_err(|e| format!(".dockerignore: {line:?}: {e}"))?;
        }
    }
    builder.build().map_err(|e| format!(".dockerignore: {e}"))
}

/// The context as a tar: every file of `dir` its `.dockerignore` keeps
/// (the Containerfile always), symbolic links as links.
fn context_tar(dir: &Path, file: &str) -> Result<Vec<u8>, String> {
    let ignore = dockerignore(dir)?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut size = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&current)
            .map_err(|e| format!("cannot read {}: {e}", current.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(dir) else {
                continue;
            };
            let kind = entry.file_type().map_err(|e| e.to_string())?;
            let always = relative == Path::new(file);
            if !always
                && ignore
                    .matched_path_or_any_parents(relative, kind.is_dir())
                    .is_ignore()
            {
                continue;
            }
            if kind.is_dir() {
                tar.append_dir(relative, &path).map_err(|e| e.to_string())?;
                stack.push(path);
                continue;
            }
            size += entry.metadata().map(|m| m.len()).unwrap_or(0);
            if size > MAX_CONTEXT {
                return Err(format!(
                    "the context is larger than {} MiB; leave files out with .dockerignore",
                    MAX_CONTEXT >> 20
                ));
            }
            tar.append_path_with_name(&path, relative)
                .map_err(|e| format!("cannot add {}: {e}", path.display()))?;
        }
    }
    tar.into_inner().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_context_leaves_out_what_dockerignore_says_as_docker_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "Containerfile",
            "app.py",
            "secret.env",
            "logs/a.log",
            "src/keep.log",
            "node_modules/x/i.js",
            "docs/README.md",
        ] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), f).unwrap();
        }
        std::fs::write(
            d.join(".dockerignore"),
            "# comment\n*.env\nlogs\nnode_modules/\n**/*.log\n!src/keep.log\n/docs/*.md\nContainerfile\n",
        )
        .unwrap();
        let tar = context_tar(d, "Containerfile").unwrap();
        assert_eq!(
            names(&tar),
            [
                ".dockerignore",
                "Containerfile",
                "app.py",
                "docs",
                "src",
                "src/keep.log"
            ]
        );
    }

    #[test]
    fn a_pattern_without_a_slash_is_the_roots_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["Dockerfile", "build", "sub/build"] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), f).unwrap();
        }
        std::fs::write(d.join(".dockerignore"), "build\n").unwrap();
        let tar = context_tar(d, "Dockerfile").unwrap();
        assert_eq!(
            names(&tar),
            [".dockerignore", "Dockerfile", "sub", "sub/build"]
        );
    }
}
