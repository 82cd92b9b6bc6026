//! What a completion hook sends, and how it is signed.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::store::TaskRecord;
use crate::tasks::rfc3339;

/// The JSON body for a task that reached a final state. Written into the
/// outbox with the state, so every attempt sends the same bytes.
pub fn completion(rec: &TaskRecord, output_tail: Option<&str>, delivery_id: &str) -> String {
    json!({
        "event": "task.finished",
        "delivery_id": delivery_id,
        "task_id": rec.id,
        "name": rec.name,
        "assistant": rec.assistant,
        "status": rec.state,
        "exit_code": rec.exit_code,
        "error": rec.error,
        "workdir": rec.workdir,
        "created_at": rfc3339(rec.created_at),
        "started_at": rec.started_at.map(rfc3339),
        "finished_at": rec.finished_at.map(rfc3339),
        "output_tail": output_tail,
    })
    .to_string()
}

/// `sha256=<hex HMAC-SHA256 of the body>`, GitHub's format.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
