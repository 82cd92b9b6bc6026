//! The README's and docs/api.md's shell examples, run as pasted against a
//! live `kube-coder serve`, so they cannot rot. Every ```sh block of a
//! document runs in order in one bash (`set -euo pipefail`), except blocks
//! preceded by a `<!-- docs-test: skip (why) -->` line. Only the addresses
//! the documents assume (127.0.0.1:6080/6081) are rewritten to the test
//! server's, and `~/.local/share/kube-coder` leads to its data directory.
//! curl calls that do not choose `-f` themselves get `--fail-with-body`, so
//! an error answer fails its block instead of passing as output.
//! Starts: `kube-coder serve --allow-internal-hooks` with the built-in
//! assistants, bash, python3 (the README's hook receiver), jq, openssl.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Workspace;
use serde_json::Value;

const SKIP: &str = "<!-- docs-test: skip";

/// A fenced ```sh block: where it starts and its text, unindented.
struct Block {
    line: usize,
    text: String,
}

fn sh_blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let lines: Vec<&str> = doc.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        let indent = lines[i].len() - fence.len();
        if fence.starts_with("```") {
            let info = fence.trim_start_matches('`').trim();
            let skipped = i > 0 && lines[i - 1].trim_start().starts_with(SKIP);
            let start = i + 1;
            i += 1;
            let mut text = String::new();
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                let l = lines[i];
                text.push_str(l.get(indent.min(l.len())..).unwrap_or(l));
                text.push('\n');
                i += 1;
            }
            if info == "sh" && !skipped {
                out.push(Block { line: start, text });
            }
        }
        i += 1;
    }
    out
}

/// One script for one document: each block announces itself on stderr, so
/// a failure names the block it happened in.
fn script(name: &str, blocks: &[Block], ws: &Workspace) -> String {
    let mut s = String::from(
        "set -euo pipefail\n\
         curl() { case \" $* \" in *' -f'*|*' --fail'*) command curl \"$@\";; \
         *) command curl --fail-with-body \"$@\";; esac; }\n",
    );
    for b in blocks {
        let text = b
            .text
            .replace("http://127.0.0.1:6081", &ws.api)
            .replace("http://127.0.0.1:6080", &ws.dashboard);
        s.push_str(&format!(
            "echo '::block {name}:{}' >&2\n{text}\necho\n",
            b.line
        ));
    }
    s.push_str("echo '::done' >&2\n");
    s
}

/// What a document's examples left running (the README's hook receiver):
/// their process group, killed when the test ends.
struct Leftovers(i32);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
    }
}

/// Runs one document's blocks; returns their standard output (and, as it
/// grows, what background jobs print) through a file, and what they left
/// running.
fn run_doc(ws: &Workspace, name: &str, doc: &str) -> (std::path::PathBuf, Leftovers) {
    let blocks = sh_blocks(doc);
    assert!(blocks.len() >= 3, "{name}: no sh blocks found");
    let home = ws
        .dir
        .path()
        .join(format!("user-{}", name.replace('/', "-")));
    let cwd = home.join("work");
    std::fs::create_dir_all(home.join(".local/share")).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    std::os::unix::fs::symlink(ws.data_dir(), home.join(".local/share/kube-coder")).unwrap();
    let (out_path, err_path) = (home.join("stdout"), home.join("stderr"));
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script(name, &blocks, ws))
        .current_dir(&cwd)
        .env("HOME", &home)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .expect("run bash");
    let leftovers = Leftovers(child.id() as i32);
    let status = child.wait().unwrap();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    let failed_in = stderr
        .lines()
        .rfind(|l| l.starts_with("::"))
        .unwrap_or("before the first block");
    assert!(
        status.success() && failed_in == "::done",
        "{name}: an example failed in {failed_in} (exit {:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        status.code()
    );
    (out_path, leftovers)
}

/// Waits until `pred` holds for `GET path` (deliveries and webhook tasks
/// finish after the examples return).
async fn eventually(ws: &Workspace, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = ws.api_get(path).await.1;
        if pred(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn has_task_with_prompt(tasks: &Value, prompt: &str) -> bool {
    tasks["tasks"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["prompt"] == prompt))
}

fn read_doc(rel: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(rel)).unwrap()
}

#[tokio::test]
async fn the_readme_examples_run_as_pasted() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("assistants.toml");
    std::fs::write(&empty, "").unwrap();
    let ws = Workspace::start(&[
        "--allow-internal-hooks",
        "--assistants-config",
        empty.to_str().unwrap(),
    ])
    .await;
    let (out_path, _receiver) = run_doc(&ws, "README.md", &read_doc("README.md"));
    let out = std::fs::read_to_string(&out_path).unwrap();

    // The stream example printed the task's output and its end.
    assert!(
        out.contains("step 3") && out.contains("event: end"),
        "{out}"
    );
    // The hook reached the README's receiver, signed.
    let deliveries = eventually(&ws, "/api/hooks/deliveries", |v| {
        v["deliveries"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(
        deliveries["deliveries"][0]["state"], "delivered",
        "{deliveries}"
    );
    let out = std::fs::read_to_string(&out_path).unwrap().to_lowercase();
    assert!(
        out.contains("x-kube-coder-signature-256: sha256=")
            && out.contains(r#""event":"task.finished""#),
        "{out}"
    );
    // The signed webhook delivery started its task from the template.
    let tasks = eventually(&ws, "/api/tasks?state=succeeded", |v| {
        has_task_with_prompt(v, "echo pushed abc123")
    })
    .await;
    assert!(
        has_task_with_prompt(&tasks, "echo pushed abc123"),
        "{tasks}"
    );
    // The file went in and came back.
    assert_eq!(
        std::fs::read_to_string(ws.home().join("notes.txt")).unwrap(),
        "hello\n"
    );
    let copy = ws.dir.path().join("user-README.md/work/notes-copy.txt");
    assert_eq!(std::fs::read_to_string(copy).unwrap(), "hello\n");
}

#[tokio::test]
async fn the_api_examples_run_as_pasted() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("assistants.toml");
    std::fs::write(&empty, "").unwrap();
    let ws = Workspace::start(&["--assistants-config", empty.to_str().unwrap()]).await;
    let doc = read_doc("docs/api.md");
    let (out_path, _) = run_doc(&ws, "docs/api.md", &doc);
    let out = std::fs::read_to_string(out_path).unwrap();

    // The hook check printed the signature the document promises.
    let promised = doc
        .lines()
        .find_map(|l| l.trim().strip_prefix("# → sha256="))
        .expect("api.md shows a signature");
    assert!(out.contains(&format!("sha256={promised}")), "{out}");
    let schedules = ws.api_get("/api/schedules").await.1;
    assert_eq!(schedules["schedules"][0]["name"], "nightly", "{schedules}");
    let tasks = eventually(&ws, "/api/tasks?state=succeeded", |v| {
        has_task_with_prompt(v, "echo me/app abc")
    })
    .await;
    assert!(has_task_with_prompt(&tasks, "echo me/app abc"), "{tasks}");
}
