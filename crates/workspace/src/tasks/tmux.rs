//! The only place that runs tmux.
//!
//! All tasks of a workspace live on one tmux server with its own socket in
//! the data dir, so they outlive this process and never mix with a user's own
//! tmux. Arguments are passed as argv, never through a shell, except the one
//! command line tmux itself hands to `sh -c` (built from quoted paths only).
//!
//! tmux reads its argv as a command list: an argument that ends in `;`
//! ends a command there (`rm -rf build;` would be typed without its `;`).
//! [`Tmux::run_all`] takes the commands apart and escapes every argument
//! ([`literal`]), so data always arrives exactly as sent.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    #[error("tmux is not installed (install it: apt-get install tmux)")]
    Missing,
    #[error("tmux {command}: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("could not run tmux: {0}")]
    Io(std::io::Error),
}

impl TmuxError {
    /// What a client may be told: tmux's own words name server paths (the
    /// socket, the data dir), so they go to the log, not to the client.
    pub fn public(&self) -> String {
        match self {
            Self::Missing => self.to_string(),
            Self::Failed { command, .. } => format!("tmux {command} failed"),
            Self::Io(_) => "could not run tmux".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tmux {
    socket: PathBuf,
}

/// The status bar in the dashboard's dark colours (the terminal is dark in
/// both themes): the task's title on the left in the accent colour, the
/// time on the right, nothing else.
const STATUS_THEME: &[(&str, &str)] = &[
    ("status-style", "bg=#181c25,fg=#9aa3b5"),
    ("status-left", "#[fg=#6d9bff,bold] #{@kc_title} #[default]"),
    ("status-left-length", "64"),
    ("status-right", "#[fg=#9aa3b5]%H:%M "),
    ("window-status-format", ""),
    ("window-status-current-format", ""),
    ("message-style", "bg=#2a303d,fg=#e4e7ee"),
    ("mode-style", "bg=#6d9bff,fg=#0c1020"),
];

/// What a new session runs and where.
pub struct SessionSpec<'a> {
    pub name: &'a str,
    /// Shown on the status bar (the task's name or prompt).
    pub title: &'a str,
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

/// The tmux session of task `id` (the one place this name is made).
pub fn session_name(id: &str) -> String {
    format!("kc-{id}")
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
        self.run_all(&[args]).await
    }

    /// Run several tmux commands in one client, in order, in one queue.
    async fn run_all(&self, commands: &[&[&str]]) -> Result<String, TmuxError> {
        let mut argv: Vec<String> = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            if i > 0 {
                argv.push(";".into());
            }
            argv.extend(command.iter().map(|a| literal(a)));
        }
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            // Our own defaults, not whatever ~/.tmux.conf says.
            .args(["-f", "/dev/null"])
            .args(&argv)
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
                command: commands
                    .iter()
                    .map(|c| c.first().copied().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Create a detached session and attach the output pipe in the same tmux
    /// command queue, before tmux reads any output from the pane.
    pub async fn new_session(&self, spec: &SessionSpec<'_>) -> Result<(), TmuxError> {
        let workdir = spec.workdir.to_string_lossy();
        let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut new_session = vec![
            "new-session",
            "-d",
            "-s",
            spec.name,
            "-x",
            "200",
            "-y",
            "50",
            "-c",
            &workdir,
        ];
        for kv in &env {
            new_session.extend(["-e", kv.as_str()]);
        }
        new_session.push(spec.command);
        // One line, and short: a prompt can be pages long.
        let title: String = spec
            .title
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(60)
            .collect();
        let mut commands: Vec<Vec<&str>> = vec![
            // The server outlives its last session: otherwise a task that
            // ends at once takes the server down while the next task's
            // client connects ("server exited unexpectedly").
            vec!["set-option", "-s", "exit-empty", "off"],
            new_session,
            vec!["set-option", "-t", spec.name, "history-limit", "10000"],
            // Only the owner's terminal sizes the window (resize-window);
            // a viewer's attached client never does (see `terminal`).
            vec!["set-option", "-w", "-t", spec.name, "window-size", "manual"],
            vec!["set-option", "-t", spec.name, "@kc_title", &title],
        ];
        commands.extend(
            STATUS_THEME
                .iter()
                .map(|(option, value)| vec!["set-option", "-t", spec.name, option, value]),
        );
        commands.extend([
            vec!["pipe-pane", "-t", spec.name, spec.pipe_command],
            // tmux remembers a signal nobody waits for yet.
            vec!["wait-for", "-S", spec.started_channel],
        ]);
        let commands: Vec<&[&str]> = commands.iter().map(Vec::as_slice).collect();
        self.run_all(&commands).await.map(|_| ())
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

    /// Set the session's window to the size of the terminal that types
    /// into it (windows are sized by hand: `window-size manual`).
    pub async fn resize_window(&self, name: &str, cols: u16, rows: u16) -> Result<(), TmuxError> {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        self.run(&[
            "resize-window",
            "-t",
            &exact_pane(name),
            "-x",
            &cols,
            "-y",
            &rows,
        ])
        .await
        .map(|_| ())
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

/// One argument as tmux must see it to take it literally. tmux strips a
/// final `;` and ends the command there, unless a backslash stands before
/// it, which it then replaces by the `;`: so `x;` is written `x\;`, and
/// `x\;` becomes `x\\;` (only the last backslash is consumed).
fn literal(arg: &str) -> String {
    match arg.strip_suffix(';') {
        Some(rest) => format!("{rest}\\;"),
        None => arg.to_string(),
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
