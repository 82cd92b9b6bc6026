//! Any string as a file-API path: never a panic; an accepted path has no
//! `..`, no absolute part and no NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workspace::files::UserPath;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(p) = UserPath::parse(s) {
        let path = p.as_path();
        assert!(!path.is_absolute());
        assert!(path.components().all(|c| !matches!(c, std::path::Component::ParentDir)));
        assert!(!path.to_string_lossy().contains('\0'));
    }
});
