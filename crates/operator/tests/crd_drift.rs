//! The checked-in CRD must be what the Rust types generate.
//! `UPDATE_CRD=1 cargo test -p kube-coder-operator --test crd_drift`
//! rewrites it after a deliberate change to `crd.rs`.

use std::path::PathBuf;

#[test]
fn the_checked_in_crd_matches_the_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(operator::CRD_PATH);
    let generated = operator::crd_yaml();
    if std::env::var_os("UPDATE_CRD").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with crates/operator/src/crd.rs; regenerate it with \
         `UPDATE_CRD=1 cargo test -p kube-coder-operator --test crd_drift` and review the diff",
        operator::CRD_PATH
    );
}
