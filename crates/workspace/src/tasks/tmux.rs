//! The only place that runs tmux.
//!
//! All tasks of a workspace live on one tmux server with its own socket in
//! the data dir, so they outlive this process and never mix with a user's own
//! tmux. Arguments are passed as argv, never through a shell, except the one
//! command line tmux itself hands to `sh -c` (built from quoted paths only).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    #[error("tmux is not installed (install it: apt-get install tmux)")]
    Missing,
    #[error("tmux {args}: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("could not run tmux: {0}")]
    Io(std::io::Error),
}

#[derive(Debug, Clone)]
pub struct Tmux {
    socket: PathBuf,
}

/// What a new session runs and where.
pub struct SessionSpec<'a> {
    pub name: &'a str,
    pub workdir: &'a Path,
    pub env: &'a [(String, String)],
    /// Command line tmux runs with `sh -c`.
    pub command: &'a str,
    /// Command line tmux pipes the pane's output into.
    pub pipe_command: &'a str,
    /// A `wait-for` channel signalled once the output pipe is attached; the
    /// pane's command waits on it before it runs (see `started_channel`).
    pub started_channel: &'a str,
}

/// The channel a task's command waits on before it starts, so that nothing
/// it prints can precede the output pipe, and a command that ends at once
/// cannot take its session away before the pipe is attached.
pub fn started_channel(session: &str) -> String {
    format!("{session}-started")
}

impl Tmux {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn run(&self, args: &[&str]) -> Result<String, TmuxError> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            // Our own defaults, not whatever ~/.tmux.conf says.
            .args(["-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(false)
            .output()
            .await
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    TmuxError::Missing
                } else {
                    TmuxError::Io(e)
                }
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(TmuxError::Failed {
                args: args.first().copied().unwrap_or_default().to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Create a detached session and attach the output pipe in the same tmux
    /// command queue, before tmux reads any output from the pane.
    pub async fn new_session(&self, spec: &SessionSpec<'_>) -> Result<(), TmuxError> {
        let workdir = spec.workdir.to_string_lossy();
        let mut args: Vec<String> = vec![
            // The server outlives its last session: otherwise a task that
            // ends at once takes the server down while the next task's
            // client connects ("server exited unexpectedly").
            "set-option".into(),
            "-s".into(),
            "exit-empty".into(),
            "off".into(),
            ";".into(),
            "new-session".into(),
            "-d".into(),
            "-s".into(),
            spec.name.into(),
            "-x".into(),
            "200".into(),
            "-y".into(),
            "50".into(),
            "-c".into(),
            workdir.into_owned(),
        ];
        for (k, v) in spec.env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(spec.command.into());
        args.extend([
            ";".into(),
            "set-option".into(),
            "-t".into(),
            spec.name.into(),
            "history-limit".into(),
            "10000".into(),
            ";".into(),
            "pipe-pane".into(),
            "-t".into(),
            spec.name.into(),
            spec.pipe_command.into(),
            // tmux remembers a signal nobody waits for yet.
            ";".into(),
            "wait-for".into(),
            "-S".into(),
            spec.started_channel.into(),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&refs).await.map(|_| ())
    }

    pub async fn has_session(&self, name: &str) -> Result<bool, TmuxError> {
        match self.run(&["has-session", "-t", &exact(name)]).await {
            Ok(_) => Ok(true),
            Err(TmuxError::Failed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Names of all sessions; empty when the tmux server is not running.
    pub async fn list_sessions(&self) -> Result<Vec<String>, TmuxError> {
        match self.run(&["list-sessions", "-F", "#{session_name}"]).await {
            Ok(out) => Ok(out.lines().map(str::to_string).collect()),
            Err(TmuxError::Failed { stderr, .. })
                if stderr.contains("no server running")
                    || stderr.contains("error connecting")
                    || stderr.contains("No such file") =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Type literal text into the session's pane.
    pub async fn send_text(&self, name: &str, text: &str) -> Result<(), TmuxError> {
        self.run(&["send-keys", "-t", &exact_pane(name), "-l", "--", text])
            .await
            .map(|_| ())
    }

    /// Send named keys (already checked against the allowlist).
    pub async fn send_keys(&self, name: &str, keys: &[&str]) -> Result<(), TmuxError> {
        let target = exact_pane(name);
        let mut args = vec!["send-keys", "-t", &target, "--"];
        args.extend_from_slice(keys);
        self.run(&args).await.map(|_| ())
    }

    pub async fn kill_session(&self, name: &str) -> Result<(), TmuxError> {
        match self.run(&["kill-session", "-t", &exact(name)]).await {
            Ok(_) => Ok(()),
            // Already gone is what we wanted.
            Err(TmuxError::Failed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The pane's current screen as text (for the terminal-less tail view).
    pub async fn capture(&self, name: &str) -> Result<String, TmuxError> {
        self.run(&["capture-pane", "-p", "-t", &exact_pane(name)])
            .await
    }

    pub async fn kill_server(&self) -> Result<(), TmuxError> {
        self.run(&["kill-server"]).await.map(|_| ())
    }
}

/// `=name` makes tmux match the session name exactly, not as a prefix.
fn exact(name: &str) -> String {
    format!("={name}")
}

/// The active pane of the exactly-named session.
fn exact_pane(name: &str) -> String {
    format!("={name}:")
}

/// Quote a string for POSIX `sh` inside single quotes.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quote_survives_hostile_text() {
        for s in ["plain", "it's", "$(rm -rf /)", "a'b'c", "", "`x` \\ \n"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
