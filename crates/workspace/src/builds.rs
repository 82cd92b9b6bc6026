//! The operator's image builds, as the workspace server reaches them: when
//! the operator wired the workspace to them (`--build-url`, and the pod's
//! projected token of audience `kube-coder-build` in `--build-token-file`,
//! read at each build: the kubelet renews it), a build's context goes to
//! the operator as it arrives, and its NDJSON log comes back.
//!
//! The client ignores the proxy variables: the workspace's own
//! `HTTP_PROXY` may point at its egress gateway, which refuses in-cluster
//! names.
//!
//! Each build's log is also kept, as it comes, in a file of its own
//! (`BuildLogs`: `DATA/builds/ID.ndjson`, at most `MAX_LOG` bytes, the
//! files of the last `KEEP` builds kept), which the dashboard reads and
//! follows while the build runs, whoever started it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The most of one build's log kept; the rest is left out, its last line
/// (the result) kept.
pub const MAX_LOG: u64 = 4 << 20;
/// How many builds' logs are kept.
pub const KEEP: usize = 100;

#[derive(Debug, Clone)]
pub struct BuildService {
    url: String,
    token_file: PathBuf,
    client: reqwest::Client,
}

impl BuildService {
    pub fn new(url: &str, token_file: PathBuf) -> Result<BuildService, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(BuildService {
            url: url.to_string(),
            token_file,
            client,
        })
    }

    /// Starts a build of `query` with the context `body`: the operator's
    /// answer (a refusal, or the log streaming).
    pub async fn start(
        &self,
        query: &str,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, String> {
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                format!(
                    "cannot read the build token {}: {e}",
                    self.token_file.display()
                )
            })?;
        self.client
            .post(format!("{}?{query}", self.url))
            .bearer_auth(token.trim())
            .header("content-type", "application/x-tar")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach the operator's builds at {}: {e}", self.url))
    }
}

/// The kept logs, and the builds whose log is still being written.
#[derive(Debug)]
pub struct BuildLogs {
    dir: PathBuf,
    /// Running builds: told the bytes written; dropped at the end.
    live: Mutex<HashMap<String, watch::Receiver<u64>>>,
}

/// Appends one build's log; the build ends (for followers) when dropped.
pub struct LogWriter {
    logs: Arc<BuildLogs>,
    id: String,
    file: tokio::fs::File,
    written: u64,
    tx: watch::Sender<u64>,
}

impl BuildLogs {
    /// The logs under `data_dir/builds`, made (the owner's alone) when
    /// the first build starts: a workspace that never builds has none.
    pub fn open(data_dir: &Path) -> Arc<BuildLogs> {
        Arc::new(BuildLogs {
            dir: data_dir.join("builds"),
            live: Mutex::default(),
        })
    }

    /// The file of build `id`, if `id` is one a build could have.
    fn path(&self, id: &str) -> Option<PathBuf> {
        let valid =
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then(|| self.dir.join(format!("{id}.ndjson")))
    }

    /// Starts the log of build `id`; `keep` are the ids whose logs stay
    /// (the history's), the others' files go.
    pub async fn start(self: &Arc<Self>, id: &str, keep: &[String]) -> std::io::Result<LogWriter> {
        let path = self
            .path(id)
            .ok_or_else(|| std::io::Error::other("not a build id"))?;
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .await?;
        self.forget_all_but(keep, id).await;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .await?;
        let (tx, rx) = watch::channel(0);
        if let Ok(mut live) = self.live.lock() {
            live.insert(id.to_string(), rx);
        }
        Ok(LogWriter {
            logs: self.clone(),
            id: id.to_string(),
            file,
            written: 0,
            tx,
        })
    }

    async fn forget_all_but(&self, keep: &[String], id: &str) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".ndjson")) else {
                continue;
            };
            if stem != id && !keep.iter().any(|k| k == stem) {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    /// Build `id`'s log: what is written, then, while the build runs, each
    /// line as it comes, until it ends. `None` for a build with no log.
    pub async fn follow(
        self: &Arc<Self>,
        id: &str,
    ) -> Option<impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + use<>> {
        let path = self.path(id)?;
        let live = self.live.lock().ok()?.get(id).cloned();
        let file = tokio::fs::File::open(&path).await.ok()?;
        Some(futures_util::stream::unfold(
            (file, live, false),
            |(mut file, mut live, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let mut chunk = vec![0u8; 64 << 10];
                    match file.read(&mut chunk).await {
                        Ok(0) => {}
                        Ok(n) => {
                            chunk.truncate(n);
                            return Some((Ok(chunk), (file, live, false)));
                        }
                        Err(e) => return Some((Err(e), (file, live, true))),
                    }
                    // At the end of what is written: wait for more, or
                    // stop when the build has ended (and all is read).
                    let rx = live.as_mut()?;
                    if rx.changed().await.is_err() {
                        live = None;
                    }
                }
            },
        ))
    }
}

impl LogWriter {
    /// Appends one line (newline included), while the log is under
    /// `MAX_LOG`; `last`, the result, always.
    pub async fn line(&mut self, line: &[u8], last: bool) {
        if self.written + line.len() as u64 > MAX_LOG && !last {
            return;
        }
        // tokio's File hands a write to a blocking thread and returns:
        // flushed, the line is in the file before a follower is told.
        if self.file.write_all(line).await.is_ok() && self.file.flush().await.is_ok() {
            self.written += line.len() as u64;
            self.tx.send_replace(self.written);
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if let Ok(mut live) = self.logs.live.lock() {
            live.remove(&self.id);
        }
    }
}

/// A build's log (one JSON object a line) cut into lines as its chunks
/// arrive: each complete line, newline included; a partial one waits for
/// the next chunk.
#[derive(Debug, Default)]
pub struct LogLines {
    pending: Vec<u8>,
}

impl LogLines {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            lines.push(self.pending.drain(..=end).collect());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::{BuildLogs, LogLines, MAX_LOG};
    use futures_util::StreamExt;

    #[tokio::test]
    async fn a_log_is_followed_while_written_and_read_whole_after() {
        let dir = tempfile::tempdir().unwrap();
        let logs = BuildLogs::open(dir.path());
        // No build yet, no directory; nothing to follow.
        assert!(!dir.path().join("builds").exists());
        assert!(logs.follow("b1").await.is_none());
        let mut w = logs.start("b1", &[]).await.unwrap();
        let mode = std::fs::metadata(dir.path().join("builds")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o700
        );
        w.line(b"{\"status\":\"one\"}\n", false).await;
        let mut follower = Box::pin(logs.follow("b1").await.unwrap());
        let first = follower.next().await.unwrap().unwrap();
        assert_eq!(first, b"{\"status\":\"one\"}\n");
        // A line written later comes to the follower; the end ends it.
        w.line(b"{\"done\":{}}\n", true).await;
        let second = follower.next().await.unwrap().unwrap();
        assert_eq!(second, b"{\"done\":{}}\n");
        drop(w);
        assert!(follower.next().await.is_none());
        // Read after the end: all of it, then the end.
        let all: Vec<u8> = logs
            .follow("b1")
            .await
            .unwrap()
            .map(|c| c.unwrap())
            .concat()
            .await;
        assert_eq!(all, b"{\"status\":\"one\"}\n{\"done\":{}}\n");
        // Not a build's id, or none: nothing.
        assert!(logs.follow("../etc/passwd").await.is_none());
        assert!(logs.follow("b2").await.is_none());
    }

    #[tokio::test]
    async fn a_log_is_capped_but_keeps_its_result_and_old_logs_go() {
        let dir = tempfile::tempdir().unwrap();
        let logs = BuildLogs::open(dir.path());
        let mut w = logs.start("big", &[]).await.unwrap();
        let line = vec![b'x'; 1 << 20];
        for _ in 0..6 {
            w.line(&line, false).await;
        }
        w.line(b"{\"error\":\"failed\"}\n", true).await;
        drop(w);
        let size = std::fs::metadata(dir.path().join("builds/big.ndjson"))
            .unwrap()
            .len();
        assert!(size <= MAX_LOG + 64, "{size}");
        let text = std::fs::read(dir.path().join("builds/big.ndjson")).unwrap();
        assert!(text.ends_with(b"{\"error\":\"failed\"}\n"));
        // A new build keeps the logs of the builds listed, and no other.
        drop(logs.start("kept", &[]).await.unwrap());
        drop(logs.start("new", &["kept".to_string()]).await.unwrap());
        assert!(logs.follow("kept").await.is_some());
        assert!(logs.follow("big").await.is_none());
    }

    #[test]
    fn a_line_split_across_chunks_comes_out_whole() {
        let mut lines = LogLines::default();
        assert!(lines.push(b"{\"log\":").is_empty());
        assert_eq!(
            lines.push(b"\"a\"}\n{\"log\":\"b\"}\n{"),
            [b"{\"log\":\"a\"}\n".to_vec(), b"{\"log\":\"b\"}\n".to_vec()]
        );
        assert_eq!(lines.push(b"}\n"), [b"{}\n".to_vec()]);
    }
}
