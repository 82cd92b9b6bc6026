//! The browser terminal: a PTY running a tmux client attached to one task's
//! session, bridged to a WebSocket (xterm.js on the other side).
//!
//! Wire format, both directions on one socket:
//! - browser → server, binary frame: keystrokes and pasted text (dropped
//!   when the terminal is view-only);
//! - browser → server, text frame: a JSON control message, today only
//!   `{"type":"resize","cols":N,"rows":N}`;
//! - server → browser, binary frame: terminal output;
//! - server → browser, close frame: the session ended (code 1000) or the
//!   client could not start (1011), with the reason as text.
//!
//! The tmux client is a child of this process and is killed when the socket
//! goes away; the session itself keeps running, so a reconnect after a
//! network blip attaches again to the same screen.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::activity::Activity;
use crate::tasks::tmux::Tmux;

/// What to attach to and how.
pub struct Attach {
    pub tmux: Tmux,
    pub session: String,
    /// View-only: tmux's read-only client that does not size the window;
    /// input and resizes are dropped here too.
    pub read_only: bool,
    pub cols: u16,
    pub rows: u16,
    /// Typing in the terminal is using the workspace (idle stop).
    pub activity: Arc<Activity>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    Resize { cols: u16, rows: u16 },
}

/// Terminal sizes are clamped to what a screen can show; 0 would upset tmux.
pub fn clamp_size(cols: u16, rows: u16) -> (u16, u16) {
    (cols.clamp(2, 1000), rows.clamp(1, 500))
}

/// Run one terminal connection until either side ends it.
pub async fn run(socket: WebSocket, a: Attach) {
    let (mut sink, mut stream) = socket.split();
    let (pty, mut child) = match spawn_client(&a) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, session = %a.session, "terminal: cannot start the tmux client");
            let _ = sink
                .send(close(1011, &format!("cannot attach to the session: {e}")))
                .await;
            return;
        }
    };
    let (mut pty_out, mut pty_in) = pty.into_split();
    if !a.read_only {
        let (cols, rows) = clamp_size(a.cols, a.rows);
        resize_window(&a, cols, rows).await;
    }

    let output = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pty_out.read(&mut buf).await {
                // EOF or EIO: the tmux client exited (session ended or detached).
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let bytes = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if sink.send(Message::Binary(bytes)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(close(1000, "the session ended")).await;
    };

    let input = async {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(data) => {
                    if a.read_only {
                        continue;
                    }
                    a.activity.touch();
                    if pty_in.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Message::Text(text) => match serde_json::from_str::<Control>(&text) {
                    // A viewer's size is not the window's (see spawn_client).
                    Ok(Control::Resize { .. }) if a.read_only => {}
                    Ok(Control::Resize { cols, rows }) => {
                        let (cols, rows) = clamp_size(cols, rows);
                        let _ = pty_in.resize(pty_process::Size::new(rows, cols));
                        resize_window(&a, cols, rows).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "terminal: unknown control message"),
                },
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    };

    tokio::select! {
        _ = output => {}
        _ = input => {}
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// The window follows the owner's terminal (windows are sized by hand).
async fn resize_window(a: &Attach, cols: u16, rows: u16) {
    if let Err(e) = a.tmux.resize_window(&a.session, cols, rows).await {
        tracing::debug!(error = %e, session = %a.session, "terminal: could not resize the window");
    }
}

fn spawn_client(a: &Attach) -> pty_process::Result<(pty_process::Pty, tokio::process::Child)> {
    let (pty, pts) = pty_process::open()?;
    let (cols, rows) = clamp_size(a.cols, a.rows);
    pty.resize(pty_process::Size::new(rows, cols))?;
    let mut args: Vec<String> = vec![
        "-u".into(), // the browser speaks UTF-8 whatever the locale says
        "-S".into(),
        a.tmux.socket_for(&a.session).to_string_lossy().into_owned(),
        "attach-session".into(),
    ];
    if a.read_only {
        // A viewer neither types nor sizes the window: a public viewer's
        // small browser would shrink the owner's screen, and it would stay
        // shrunk. (ignore-size alone is not enough: tmux still sizes a
        // window by an ignore-size client when it is the only one, hence
        // `window-size manual` on the session and explicit resizes by the
        // owner's terminal.)
        args.extend(["-f".into(), "read-only,ignore-size".into()]);
    }
    args.extend(["-t".into(), format!("={}", a.session)]);
    let child = pty_process::Command::new("tmux")
        .args(args)
        .env("TERM", "xterm-256color")
        .env_remove("TMUX")
        .kill_on_drop(true)
        .spawn(pts)?;
    Ok((pty, child))
}

fn close(code: u16, reason: &str) -> Message {
    // A close reason is at most 123 bytes.
    let mut reason = reason.to_string();
    while reason.len() > 120 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_clamped() {
        assert_eq!(clamp_size(0, 0), (2, 1));
        assert_eq!(clamp_size(80, 24), (80, 24));
        assert_eq!(clamp_size(60000, 60000), (1000, 500));
    }

    #[test]
    fn control_messages_parse() {
        let c: Control = serde_json::from_str(r#"{"type":"resize","cols":100,"rows":30}"#).unwrap();
        assert!(matches!(
            c,
            Control::Resize {
                cols: 100,
                rows: 30
            }
        ));
        assert!(serde_json::from_str::<Control>(r#"{"type":"exec"}"#).is_err());
    }
}
