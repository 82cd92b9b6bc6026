//! Token usage read from a provider's answer as it streams past, without
//! holding the stream back: server-sent events are scanned line by line
//! (`data:` lines holding JSON), a plain JSON answer is kept up to a cap
//! and read at its end.
//!
//! Each dialect reports usage its own way, and each reports running
//! totals, so the largest figure seen for each direction is the answer's:
//! - Anthropic: `message_start` carries `message.usage.input_tokens` (and
//!   the cache reads and writes, counted as input), `message_delta`
//!   carries the running `usage.output_tokens`; a whole answer has `usage`.
//! - OpenAI: `usage.prompt_tokens`/`completion_tokens` (chat completions,
//!   the last chunk when the client asked for it), or
//!   `response.usage.input_tokens`/`output_tokens` (the Responses API).
//! - Gemini: `usageMetadata.promptTokenCount`/`candidatesTokenCount`
//!   (plus `thoughtsTokenCount`), in every chunk.

use serde_json::Value;

/// The most a single event line, or a whole JSON answer, may hold to be
/// read for usage; larger ones pass through uncounted.
const LINE_CAP: usize = 1 << 20;
const BODY_CAP: usize = 8 << 20;

/// Tokens one answer used.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

impl Tokens {
    pub fn total(self) -> u64 {
        self.input.saturating_add(self.output)
    }

    fn merge(&mut self, other: Tokens) {
        self.input = self.input.max(other.input);
        self.output = self.output.max(other.output);
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The usage one JSON value (an event, or a whole answer) reports.
pub fn tokens_of(v: &Value) -> Tokens {
    let mut t = Tokens::default();
    if let Some(items) = v.as_array() {
        // Gemini's streamGenerateContent without `alt=sse`: an array.
        for item in items {
            t.merge(tokens_of(item));
        }
        return t;
    }
    for usage in [
        v.get("usage"),
        v.get("message").and_then(|m| m.get("usage")),
        v.get("response").and_then(|r| r.get("usage")),
    ]
    .into_iter()
    .flatten()
    {
        let input = count(usage, "input_tokens")
            + count(usage, "prompt_tokens")
            + count(usage, "cache_creation_input_tokens")
            + count(usage, "cache_read_input_tokens");
        let output = count(usage, "output_tokens") + count(usage, "completion_tokens");
        t.merge(Tokens { input, output });
    }
    if let Some(meta) = v.get("usageMetadata") {
        t.merge(Tokens {
            input: count(meta, "promptTokenCount"),
            output: count(meta, "candidatesTokenCount") + count(meta, "thoughtsTokenCount"),
        });
    }
    t
}

/// Reads usage from an answer's body as its chunks go by.
#[derive(Debug)]
pub struct UsageReader {
    events: bool,
    /// Events: the unfinished line. JSON: the body so far.
    pending: Vec<u8>,
    /// The pending line or body went over its cap and is skipped.
    overflow: bool,
    seen: Tokens,
}

impl UsageReader {
    /// For an answer whose `Content-Type` is `content_type`.
    pub fn new(content_type: &str) -> UsageReader {
        UsageReader {
            events: content_type
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream"),
            pending: Vec::new(),
            overflow: false,
            seen: Tokens::default(),
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        if !self.events {
            if self.pending.len() + chunk.len() > BODY_CAP {
                self.overflow = true;
                self.pending = Vec::new();
            } else if !self.overflow {
                self.pending.extend_from_slice(chunk);
            }
            return;
        }
        while let Some(end) = memchr::memchr(b'\n', chunk) {
            if !self.overflow {
                if self.pending.is_empty() {
                    // The whole line is in this chunk: read it in place.
                    self.event_line(&chunk[..end]);
                } else {
                    self.pending.extend_from_slice(&chunk[..end]);
                    let line = std::mem::take(&mut self.pending);
                    self.event_line(&line);
                }
            }
            self.overflow = false;
            self.pending.clear();
            chunk = &chunk[end + 1..];
        }
        if self.pending.len() + chunk.len() > LINE_CAP {
            self.overflow = true;
            self.pending = Vec::new();
        } else if !self.overflow {
            self.pending.extend_from_slice(chunk);
        }
    }

    fn event_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        // Most events are text; only one that names usage is worth parsing
        // (every dialect's field has "usage" in its name).
        if memchr::memmem::find(data, b"usage").is_none() {
            return;
        }
        if let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii_start()) {
            self.seen.merge(tokens_of(&v));
        }
    }

    /// The usage seen, once the answer has ended (or stopped early: what
    /// arrived until then still counts).
    pub fn finish(&mut self) -> Tokens {
        if self.events {
            if !self.overflow && !self.pending.is_empty() {
                let line = std::mem::take(&mut self.pending);
                self.event_line(&line);
            }
        } else if !self.overflow {
            if let Ok(v) = serde_json::from_slice::<Value>(&self.pending) {
                self.seen.merge(tokens_of(&v));
            }
            self.pending = Vec::new();
        }
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes, so lines break anywhere.
    fn read(content_type: &str, body: &str, step: usize) -> Tokens {
        let mut r = UsageReader::new(content_type);
        for piece in body.as_bytes().chunks(step) {
            r.feed(piece);
        }
        r.finish()
    }

    #[test]
    fn anthropic_streams_count_the_start_input_and_the_last_output() {
        let body = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n\
event: message_delta\r\n\
data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\r\n\r\n";
        for step in [1, 7, body.len()] {
            assert_eq!(
                read("text/event-stream; charset=utf-8", body, step),
                Tokens {
                    input: 125,
                    output: 15
                },
                "in pieces of {step}"
            );
        }
    }

    #[test]
    fn openai_and_gemini_answers_whole_or_streamed() {
        let chat = r#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"#;
        assert_eq!(
            read("application/json", chat, 5),
            Tokens {
                input: 12,
                output: 30
            }
        );
        let responses = "data: {\"type\":\"response.output_text.delta\",\"delta\":\"a\"}\n\n\
data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":4}}}\n\n\
data: [DONE]\n\n";
        assert_eq!(
            read("text/event-stream", responses, 3),
            Tokens {
                input: 9,
                output: 4
            }
        );
        let gemini = r#"[{"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":2}},
                         {"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":6,"thoughtsTokenCount":3}}]"#;
        assert_eq!(
            read("application/json", gemini, 11),
            Tokens {
                input: 8,
                output: 9
            }
        );
    }

    #[test]
    fn what_cannot_be_read_counts_nothing_and_breaks_nothing() {
        assert_eq!(read("application/json", "{not json", 3), Tokens::default());
        assert_eq!(read("text/plain", "", 1), Tokens::default());
        // An over-long line is skipped; the next one still counts.
        let long = format!(
            "data: {{\"pad\":\"{}\"}}\ndata: {{\"usage\":{{\"output_tokens\":3}}}}\n",
            "x".repeat(LINE_CAP + 10)
        );
        assert_eq!(read("text/event-stream", &long, 4096).output, 3);
        // An event cut off by a closed connection still counts.
        assert_eq!(
            read(
                "text/event-stream",
                "data: {\"usage\":{\"input_tokens\":4}}",
                2
            )
            .input,
            4
        );
    }
}
