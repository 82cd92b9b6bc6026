//! Rebuild when the dashboard's build output changes: `web_assets.rs`
//! embeds `web/dist` at compile time.
fn main() {
    let dist = std::path::Path::new("../../web/dist");
    if dist.exists() {
        println!("cargo:rerun-if-changed=../../web/dist");
    } else {
        // Not built yet: notice when it appears (web/ itself changes then).
        println!("cargo:rerun-if-changed=../../web");
    }
}
