//! SECURITY.md's defaults tables stay true: each Workspace field's default
//! is the CRD's (or the CRD has none where the table says "unset"), each
//! chart value's default is `values.yaml`'s, and every chart value under
//! `network`, `models` and `github` has a row.

use std::path::PathBuf;

use serde_json::Value;

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// A table row: the setting (a dotted path) and its default cell.
struct Row {
    path: String,
    default: String,
}

/// The rows of the first table after the heading `heading`.
fn table(doc: &str, heading: &str) -> Vec<Row> {
    let after = doc
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("SECURITY.md has no heading {heading:?}"))
        .1;
    let rows: Vec<Row> = after
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the separator
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            let path = cells[0]
                .strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .unwrap_or_else(|| panic!("the setting of {l:?} is not one `path`"));
            Row {
                path: path.to_string(),
                default: cells[1].to_string(),
            }
        })
        .collect();
    assert!(!rows.is_empty(), "no table under {heading:?}");
    rows
}

/// The default a cell states: its leading `literal` as YAML, or None
/// when it says "unset".
fn stated(row: &Row) -> Option<Value> {
    if row.default.starts_with("unset") {
        return None;
    }
    let literal = row
        .default
        .strip_prefix('`')
        .and_then(|c| c.split_once('`'))
        .map(|(l, _)| l)
        .unwrap_or_else(|| {
            panic!(
                "the default of {} is neither a `literal` nor \"unset\": {:?}",
                row.path, row.default
            )
        });
    Some(serde_yaml::from_str(literal).expect("a YAML literal"))
}

fn workspace_schema() -> Value {
    let crd: Value = serde_yaml::from_str(&operator::crd_yaml()).expect("the CRD parses");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn workspace_defaults_are_the_crds() {
    let doc = repo_file("SECURITY.md");
    let schema = workspace_schema();
    for row in table(&doc, "### Per Workspace (spec fields)") {
        let field = row.path.split('.').fold(&schema, |node, seg| {
            node.get("properties")
                .and_then(|p| p.get(seg))
                .unwrap_or_else(|| {
                    panic!(
                        "SECURITY.md names {}, which the Workspace CRD has not",
                        row.path
                    )
                })
        });
        assert_eq!(
            field.get("default"),
            stated(&row).as_ref(),
            "SECURITY.md's default of {} differs from the CRD's",
            row.path
        );
    }
}

#[test]
fn chart_defaults_are_the_values_file_and_every_security_value_has_a_row() {
    let doc = repo_file("SECURITY.md");
    let values: Value =
        serde_yaml::from_str(&repo_file("charts/kube-coder/values.yaml")).expect("values parse");
    let rows = table(&doc, "### Chart values");
    for row in &rows {
        let value = row
            .path
            .split('.')
            .try_fold(&values, |node, seg| node.get(seg))
            .unwrap_or_else(|| panic!("SECURITY.md names {}, which values.yaml has not", row.path));
        assert_eq!(
            Some(value),
            stated(row).as_ref(),
            "SECURITY.md's default of {} differs from values.yaml",
            row.path
        );
    }
    for section in ["network", "models", "github"] {
        let keys = values[section]
            .as_object()
            .unwrap_or_else(|| panic!("values.yaml has no {section} map"));
        for key in keys.keys() {
            let path = format!("{section}.{key}");
            assert!(
                rows.iter().any(|r| r.path == path),
                "values.yaml's {path} has no row in SECURITY.md's chart table"
            );
        }
    }
}
