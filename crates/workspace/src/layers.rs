//! The direction of dependencies, checked: each top-level module may use
//! only modules of a lower tier (`crate::x` in its source files). The same
//! table is in ARCHITECTURE.md ("Layers"); change both together.
//!
//! Low tiers hold what everything shares (the clock, the store, views);
//! high tiers hold wiring (routes, the server). A module that needs
//! something from its own tier or above has found a helper that belongs
//! lower, or a dependency to invert (as the store takes the completion
//! payload from its caller instead of rendering it).

/// Tiers, lowest first. A module may import from earlier rows only.
const TIERS: &[&[&str]] = &[
    &[
        "clock",
        "egress",
        "builds",
        "secrets",
        "signature",
        "task_state",
        "system_stats",
    ],
    &["secret_box"],
    &["store"],
    &["error", "views", "metrics"],
    &["extract", "events", "files", "web_assets"],
    &["hooks", "ssh"],
    &["config"],
    &["auth"],
    &["activity", "tasks"],
    &["triggers", "terminal"],
    &["http"],
    &["server"],
];

fn tier(module: &str) -> Option<usize> {
    TIERS.iter().position(|row| row.contains(&module))
}

/// Top-level module → its source files.
fn modules() -> Vec<(String, Vec<std::path::PathBuf>)> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name == "lib" || name == "layers" {
            continue;
        }
        let files = if path.is_dir() {
            let mut files = Vec::new();
            let mut stack = vec![path];
            while let Some(dir) = stack.pop() {
                for e in std::fs::read_dir(dir).expect("dir") {
                    let p = e.expect("entry").path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "rs") {
                        files.push(p);
                    }
                }
            }
            files
        } else {
            vec![path]
        };
        out.push((name, files));
    }
    out
}

/// The top-level modules `crate::x` that a source text names.
fn uses(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !found.contains(&name) {
            found.push(name);
        }
    }
    found
}

#[test]
fn every_module_has_a_tier_and_uses_only_lower_ones() {
    let mut wrong = Vec::new();
    for (module, files) in modules() {
        let Some(own) = tier(&module) else {
            wrong.push(format!("{module} has no tier in layers.rs"));
            continue;
        };
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            for used in uses(&text) {
                if used == module {
                    continue;
                }
                match tier(&used) {
                    Some(t) if t < own => {}
                    _ => wrong.push(format!(
                        "{} (tier {own}) uses crate::{used} (tier {:?})",
                        file.display(),
                        tier(&used)
                    )),
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_use() {
    assert_eq!(
        uses("use crate::tasks::TaskView;\ncrate::clock::now_ms()"),
        ["tasks", "clock"]
    );
    assert!(tier("store") < tier("tasks"));
}
