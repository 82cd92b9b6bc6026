//! The release workflow (.github/workflows/release.yml) cannot run here: no
//! registry, no GitHub. This checks what can be checked: it is valid YAML
//! of the shape GitHub runs, it runs on version tags only with the rights it
//! needs, every shell step parses (`bash -n`), and everything it names
//! exists: the make target, the images it pushes, the chart, the SBOMs.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn workflow() -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo().join(".github/workflows/release.yml"))
        .expect("read the release workflow");
    serde_yaml::from_str(&text).expect("the release workflow is valid YAML")
}

#[test]
fn the_release_workflow_runs_on_version_tags_with_the_rights_it_needs() {
    let w = workflow();
    // YAML 1.1 reads a bare `on` as true; serde_yaml keeps it a string.
    let on = &w["on"];
    assert_eq!(on["push"]["tags"][0].as_str(), Some("v*"), "{on:?}");
    assert!(
        on["push"]["branches"].is_null(),
        "releases come from tags only"
    );
    assert_eq!(w["permissions"]["packages"].as_str(), Some("write"));
    assert_eq!(w["permissions"]["contents"].as_str(), Some("write"));
    let jobs = w["jobs"].as_mapping().expect("jobs");
    assert!(!jobs.is_empty());
    for (name, job) in jobs {
        assert!(
            job["runs-on"].as_str().is_some(),
            "job {name:?} has no runs-on"
        );
        let steps = job["steps"].as_sequence().expect("steps");
        for step in steps {
            assert!(
                step["run"].is_string() ^ step["uses"].is_string(),
                "a step must either run or use: {step:?}"
            );
        }
    }
}

#[test]
fn every_shell_step_parses_and_names_what_exists() {
    let w = workflow();
    let mut scripts = String::new();
    for (_, job) in w["jobs"].as_mapping().unwrap() {
        for step in job["steps"].as_sequence().unwrap() {
            if let Some(run) = step["run"].as_str() {
                // GitHub expressions are substituted before the shell sees them.
                let run = run.replace("${{", "\"").replace("}}", "\"");
                let check = std::process::Command::new("bash")
                    .args(["-n", "-c", &run])
                    .output()
                    .expect("run bash -n");
                assert!(
                    check.status.success(),
                    "a step does not parse:\n{run}\n{}",
                    String::from_utf8_lossy(&check.stderr)
                );
                scripts.push_str(&run);
            }
        }
    }
    let makefile = std::fs::read_to_string(repo().join("Makefile")).unwrap();
    assert!(scripts.contains("make images") && makefile.contains("\nimages:"));
    assert!(repo().join("charts/kube-coder/Chart.yaml").exists());
    assert!(scripts.contains("helm package charts/kube-coder"));
    // The images it pushes are ones images/build.sh makes, with their SBOMs.
    let pushed = scripts
        .lines()
        .find_map(|l| l.trim().strip_prefix("for image in "))
        .and_then(|l| l.strip_suffix("; do"))
        .expect("the loop over pushed images");
    for image in pushed.split_whitespace() {
        assert!(
            repo().join("images").join(image).join("rootfs.sh").exists(),
            "the workflow pushes {image}, which images/ does not define"
        );
        assert!(scripts.contains(&format!("target/images/{image}.spdx.json")));
    }
    assert!(pushed.contains("kube-coder") && pushed.contains("workspace"));
}
