//! Any template and any JSON body: rendering never panics and stays
//! within its cap; signature checks of arbitrary headers never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workspace::signature::{verify_body, verify_delivery};
use workspace::triggers::webhook::render;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (template, body) = s.split_once('\n').unwrap_or((s, "{}"));
    let value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    assert!(render(template, &value).len() <= 64 * 1024);
    let _ = verify_body("key", body.as_bytes(), template);
    let ts = body.len() as i64 - 1_000;
    let _ = verify_delivery("key", ts, template, body.as_bytes(), body);
});
