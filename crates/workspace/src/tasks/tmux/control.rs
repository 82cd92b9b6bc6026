//! The one long-lived client of one of a workspace's tmux servers, in
//! control mode (`tmux -C`): commands are written to its stdin as lines of
//! tmux's command language and answered in `%begin … %end` (or `%error`) blocks
//! on its stdout, in the order they were written. So a tmux command costs
//! one line each way, not a process: spawning a client per command was
//! most of a task start's time, and grew with the number of sessions (each
//! new client is introduced to all of them).
//!
//! Two tasks own the client: the writer (takes batches of commands, queues
//! their answer slots, then writes them, so a request that is dropped
//! half-way never leaves half a line) and the reader (parses blocks and
//! fills the slots in order). When the client ends (the tmux server was
//! killed, or it crashed) every waiting slot is told why and the next
//! command starts a new client: the sessions, and so the tasks, are found
//! again by name, as after a restart of this server. Both tasks end on the
//! shutdown signal; the sessions live on in the tmux server.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::quote::tmux_command;
use super::TmuxError;

/// The session the control client attaches to: a control client must be
/// attached to something to stay. Its pane runs `cat`, which waits for
/// input nobody sends.
pub const CONTROL_SESSION: &str = "kube-coder-control";

/// How long a command may go unanswered before its caller gives up (tmux
/// answers in milliseconds; this only bounds a hung tmux server).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// What one command answered: its output, and whether it failed (then the
/// output is tmux's error message).
#[derive(Debug)]
pub struct Reply {
    pub ok: bool,
    pub output: String,
}

/// Why a command got no reply.
#[derive(Debug, Clone)]
struct Gone {
    why: String,
    /// The command was never written, so sending it again is safe.
    unsent: bool,
}

type Slot = oneshot::Sender<Result<Reply, Gone>>;

struct Batch {
    text: String,
    slots: Vec<Slot>,
}

/// Answer slots in the order their commands were written.
#[derive(Default)]
struct Waiting {
    slots: VecDeque<Slot>,
    /// Set once the client has ended.
    closed: bool,
}

pub struct Control {
    socket: PathBuf,
    /// Told when tmux says the set of sessions changed, and when a client
    /// ends (its server may have taken every session with it).
    sessions_changed: Arc<Notify>,
    /// Commands every new client runs first (server-wide options).
    setup: Vec<Vec<String>>,
    shutdown: CancellationToken,
    /// The running client's writer; replaced when it has ended.
    client: Mutex<Option<mpsc::UnboundedSender<Batch>>>,
}

impl Control {
    pub fn new(
        socket: PathBuf,
        setup: Vec<Vec<String>>,
        sessions_changed: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            socket,
            sessions_changed,
            setup,
            shutdown,
            client: Mutex::new(None),
        }
    }

    /// Run commands in order, one reply each. A batch is written at once,
    /// so nothing else runs between its commands.
    pub async fn run(&self, commands: &[&[&str]]) -> Result<Vec<Reply>, TmuxError> {
        let text: String = commands.iter().map(|c| tmux_command(c)).collect();
        let mut tried_fresh = false;
        loop {
            let (slots, answers): (Vec<Slot>, Vec<_>) =
                commands.iter().map(|_| oneshot::channel()).unzip();
            let batch = Batch {
                text: text.clone(),
                slots,
            };
            // A closed channel (its client ended) is replaced by `writer`.
            if self.writer()?.send(batch).is_err() {
                if tried_fresh {
                    return Err(TmuxError::Exited("the tmux client would not start".into()));
                }
                tried_fresh = true;
                continue;
            }
            let mut replies = Vec::with_capacity(commands.len());
            let mut resend = false;
            for answer in answers {
                match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
                    Ok(Ok(Ok(reply))) => replies.push(reply),
                    Ok(Ok(Err(gone))) if gone.unsent && !tried_fresh => {
                        resend = true;
                        break;
                    }
                    Ok(Ok(Err(gone))) => return Err(TmuxError::Exited(gone.why)),
                    Ok(Err(_)) => return Err(TmuxError::Exited("the tmux client ended".into())),
                    Err(_) => return Err(TmuxError::Timeout(ANSWER_TIMEOUT)),
                }
            }
            if !resend {
                return Ok(replies);
            }
            tried_fresh = true;
        }
    }

    /// The running client's writer, starting a client if there is none.
    fn writer(&self) -> Result<mpsc::UnboundedSender<Batch>, TmuxError> {
        let mut client = self
            .client
            .lock()
            .map_err(|_| TmuxError::Exited("the tmux client's lock is poisoned".into()))?;
        if let Some(tx) = client.as_ref().filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        let tx = start(
            &self.socket,
            &self.setup,
            &self.sessions_changed,
            &self.shutdown,
        )?;
        *client = Some(tx.clone());
        Ok(tx)
    }
}

/// Start a control client and its two tasks.
fn start(
    socket: &Path,
    setup: &[Vec<String>],
    sessions_changed: &Arc<Notify>,
    shutdown: &CancellationToken,
) -> Result<mpsc::UnboundedSender<Batch>, TmuxError> {
    let mut child = Command::new("tmux")
        .arg("-S")
        .arg(socket)
        // Our own defaults, not whatever ~/.tmux.conf says.
        .args(["-f", "/dev/null", "-C"])
        .args([
            "new-session",
            "-A",
            "-s",
            CONTROL_SESSION,
            "exec cat >/dev/null",
        ])
        // Started inside someone's tmux, the variable would make tmux
        // refuse to attach ("sessions should be nested with care").
        .env_remove("TMUX")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TmuxError::Missing
            } else {
                TmuxError::Io(e)
            }
        })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(TmuxError::Exited("the tmux client has no pipes".into()));
    };
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    // Ends the writer as soon as the reader sees the client go.
    let ended = shutdown.child_token();
    let (tx, rx) = mpsc::unbounded_channel();
    // The client's first lines, before any caller's: stdin is read in order,
    // while the command line above may run after the first lines. Nobody
    // waits for their answers (a failure is logged by the reader).
    let setup_text: String = setup
        .iter()
        .map(|c| tmux_command(&c.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    let slots = setup.iter().map(|_| oneshot::channel().0).collect();
    let _ = tx.send(Batch {
        text: setup_text,
        slots,
    });
    tokio::spawn(write_loop(stdin, rx, waiting.clone(), ended.clone()));
    tokio::spawn(read_loop(
        child,
        BufReader::new(stdout),
        waiting,
        sessions_changed.clone(),
        shutdown.clone(),
        ended,
    ));
    Ok(tx)
}

async fn write_loop(
    mut stdin: ChildStdin,
    mut batches: mpsc::UnboundedReceiver<Batch>,
    waiting: Arc<Mutex<Waiting>>,
    ended: CancellationToken,
) {
    // Batches never written: told so once the channel is closed, so that a
    // caller's retry finds it closed and starts a new client.
    let mut unsent = Vec::new();
    loop {
        let batch = tokio::select! {
            _ = ended.cancelled() => break,
            b = batches.recv() => match b {
                Some(b) => b,
                None => break,
            },
        };
        // Slots first, so the reader always has one for the answer.
        let text = {
            let Ok(mut w) = waiting.lock() else {
                unsent.push(batch);
                break;
            };
            if w.closed {
                unsent.push(batch);
                break;
            }
            w.slots.extend(batch.slots);
            batch.text
        };
        tokio::select! {
            _ = ended.cancelled() => break,
            r = stdin.write_all(text.as_bytes()) => if let Err(e) = r {
                // The reader sees the client end and answers the slots.
                tracing::warn!(error = %e, "could not write to the tmux client");
                break;
            },
        }
    }
    batches.close();
    while let Ok(batch) = batches.try_recv() {
        unsent.push(batch);
    }
    for slot in unsent.into_iter().flat_map(|b| b.slots) {
        let _ = slot.send(Err(Gone {
            why: "the tmux client ended".into(),
            unsent: true,
        }));
    }
}

async fn read_loop(
    mut child: Child,
    mut stdout: BufReader<tokio::process::ChildStdout>,
    waiting: Arc<Mutex<Waiting>>,
    sessions_changed: Arc<Notify>,
    shutdown: CancellationToken,
    ended: CancellationToken,
) {
    let mut parser = Parser::default();
    let mut line = Vec::new();
    let why = loop {
        line.clear();
        let read = tokio::select! {
            _ = shutdown.cancelled() => break "the server is shutting down".to_string(),
            r = stdout.read_until(b'\n', &mut line) => r,
        };
        match read {
            Ok(0) => break exit_reason(&mut child).await,
            Err(e) => break format!("reading from the tmux client: {e}"),
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if !parser.in_block() && text == "%sessions-changed" {
            sessions_changed.notify_one();
            continue;
        }
        let Some((ours, reply)) = parser.line(text) else {
            continue;
        };
        if !ours {
            // The client's own start-up commands.
            continue;
        }
        let slot = waiting.lock().ok().and_then(|mut w| w.slots.pop_front());
        match slot {
            Some(slot) => {
                // Nobody waits for the set-up's answers, and a caller may
                // have given up waiting: their failures are logged here.
                if let Err(Ok(reply)) = slot.send(Ok(reply)) {
                    if !reply.ok {
                        tracing::warn!(
                            error = reply.output.trim(),
                            "a tmux command nobody waited for failed"
                        );
                    }
                }
            }
            None => tracing::warn!("tmux answered a command nobody sent"),
        }
    };
    ended.cancel();
    sessions_changed.notify_one();
    let slots = match waiting.lock() {
        Ok(mut w) => {
            w.closed = true;
            std::mem::take(&mut w.slots)
        }
        Err(_) => VecDeque::new(),
    };
    if !shutdown.is_cancelled() {
        tracing::warn!(reason = %why, "the tmux control client ended; the next command starts another");
    }
    for slot in slots {
        let _ = slot.send(Err(Gone {
            why: why.clone(),
            unsent: false,
        }));
    }
    // The writer has ended, closing the client's stdin: the client detaches
    // and exits by itself (tmux 3.3 has crashed when a control client was
    // killed instead). The tmux server and its sessions keep running.
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Why the client ended, from its exit status and what it printed.
async fn exit_reason(child: &mut Child) -> String {
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            (&mut err).take(4096).read_to_string(&mut stderr),
        )
        .await;
    }
    let status = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
    let status = match status {
        Ok(Ok(s)) => s.to_string(),
        _ => "still running".into(),
    };
    match stderr.trim() {
        "" => format!("the tmux client ended ({status})"),
        said => format!("the tmux client ended ({status}): {said}"),
    }
}

/// Control-mode output, one line at a time: a block's output lines, or a
/// notification (`%sessions-changed` and the like, ignored).
#[derive(Default)]
struct Parser {
    /// Inside a block: its header (`<time> <number> <flags>`) and output.
    block: Option<(String, String)>,
}

impl Parser {
    fn in_block(&self) -> bool {
        self.block.is_some()
    }

    /// The reply a line completes, and whether it answers a command this
    /// client wrote (flags `1`) rather than its start-up command line.
    fn line(&mut self, line: &str) -> Option<(bool, Reply)> {
        match &mut self.block {
            None => {
                if let Some(header) = line.strip_prefix("%begin ") {
                    self.block = Some((header.to_string(), String::new()));
                }
                None
            }
            Some((header, output)) => {
                // Only the end carrying the begin's own header ends the
                // block: an output line can say anything.
                let ok = match line.split_once(' ') {
                    Some(("%end", rest)) if rest == header => true,
                    Some(("%error", rest)) if rest == header => false,
                    _ => {
                        output.push_str(line);
                        output.push('\n');
                        return None;
                    }
                };
                let (header, output) = self.block.take()?;
                let ours = header.rsplit(' ').next() == Some("1");
                Some((ours, Reply { ok, output }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_end_only_with_their_own_header() {
        let mut p = Parser::default();
        assert!(p.line("%sessions-changed").is_none());
        assert!(p.line("%begin 1700000000 12 0").is_none());
        let (ours, r) = p.line("%end 1700000000 12 0").unwrap();
        assert!(!ours && r.ok && r.output.is_empty());
        assert!(p.line("%begin 1700000000 13 1").is_none());
        assert!(p.line("kc-a").is_none());
        // An output line that looks like an end, with another number.
        assert!(p.line("%end 1700000000 14 1").is_none());
        assert!(p.line("%begin 1700000000 99 1").is_none());
        let (ours, r) = p.line("%end 1700000000 13 1").unwrap();
        assert!(ours && r.ok);
        assert_eq!(
            r.output,
            "kc-a\n%end 1700000000 14 1\n%begin 1700000000 99 1\n"
        );
        assert!(p.line("%begin 1700000001 15 1").is_none());
        assert!(p.line("no such session: x").is_none());
        let (_, r) = p.line("%error 1700000001 15 1").unwrap();
        assert!(!r.ok);
        assert_eq!(r.output, "no such session: x\n");
    }
}
