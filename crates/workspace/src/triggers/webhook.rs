//! Inbound webhooks: the prompt template. Signatures are checked with
//! [`crate::signature`] (the route decides the scheme); an unknown webhook
//! is checked against a throwaway key so that it answers exactly like a
//! bad signature.

use serde_json::Value;

const MAX_PROMPT: usize = 64 * 1024;

/// Fill `{{path.to.field}}` from the JSON body (`{{body}}` is all of it).
/// Missing fields become empty; strings are inserted as they are, other
/// values as JSON. The result is capped at 64 KiB.
pub fn render(template: &str, body: &Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let path = after[..end].trim();
        let value = if path == "body" {
            Some(body)
        } else {
            path.split('.').try_fold(body, |v, key| match v {
                Value::Object(m) => m.get(key),
                Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            })
        };
        match value {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Null) | None => {}
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if out.len() > MAX_PROMPT {
        let mut cut = MAX_PROMPT;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_paths_and_ignores_missing_ones() {
        let body = json!({"repository": {"full_name": "o/r"}, "commits": [{"id": "abc"}], "n": 3, "x": null});
        assert_eq!(
            render(
                "Review {{ repository.full_name }} at {{commits.0.id}} ({{n}}){{missing}}{{x}}",
                &body
            ),
            "Review o/r at abc (3)"
        );
        assert_eq!(render("unclosed {{ oops", &body), "unclosed {{ oops");
        assert!(render("{{body}}", &body).contains("\"full_name\":\"o/r\""));
        let big = json!({"s": "é".repeat(40_000)});
        assert!(render("{{s}}", &big).len() <= 64 * 1024);
    }
}
