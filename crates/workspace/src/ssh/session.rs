//! One SSH connection. A command (`ssh host cmd`) runs under `sh -c` in
//! the home with the server's environment and what tasks find in theirs
//! (the workspace API's address, for `kube-coder build`), its stdin, stdout and stderr on
//! the channel, and its exit status sent back, so `ssh host false` fails
//! like a local command would. `ssh host` with no command runs a login
//! shell. With a terminal asked for (`ssh -t`, or an interactive `ssh
//! host`), the command or shell runs on a PTY of the client's size and
//! `TERM`, resized as the client's window is. The `sftp` subsystem serves
//! `sftp` and `scp`. Local port forwarding (`ssh -L`) reaches the
//! workspace's own ports only (loopback): a dev server started by a task,
//! not the network around the workspace.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;

use russh::server::{
    Auth, ChannelOpenHandle, Handler, Msg, Session as SshSession, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::io::AsyncWriteExt;

use super::{authorized, Shared};

pub(crate) struct Server {
    pub shared: Arc<Shared>,
}

impl russh::server::Server for Server {
    type Handler = Session;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Session {
        Session {
            shared: self.shared.clone(),
            peer,
            channels: HashMap::new(),
            terminals: HashMap::new(),
            sftp: Default::default(),
            resizes: HashMap::new(),
        }
    }
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    /// Session channels opened and not yet given a command.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Terminals asked for, by channel, until the command starts.
    terminals: HashMap<ChannelId, Terminal>,
    /// Channels serving SFTP.
    sftp: std::collections::HashSet<ChannelId>,
    /// Window sizes on their way to running terminals.
    resizes: HashMap<ChannelId, tokio::sync::mpsc::UnboundedSender<(u16, u16)>>,
}

/// A terminal as the client asked for it.
struct Terminal {
    term: String,
    cols: u16,
    rows: u16,
}

/// A client's size, as a PTY takes it (0 means "unknown": 80×24).
fn size(cols: u32, rows: u32) -> (u16, u16) {
    let clamp = |v: u32, default: u16| match v {
        0 => default,
        v => v.min(1000) as u16,
    };
    (clamp(cols, 80), clamp(rows, 24))
}

const READ_ONLY: &str = "kube-coder: this workspace is read-only; SSH logins are refused.\r\n";

impl Handler for Session {
    type Error = russh::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self.shared.read_only.then(|| READ_ONLY.to_string()))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let allowed = !self.shared.read_only
            && authorized::is_authorized(&self.shared.authorized_keys, key.public_key).await;
        let fingerprint = key.public_key.fingerprint(Default::default()).to_string();
        if allowed {
            tracing::info!(user, %fingerprint, peer = ?self.peer, "SSH login");
            Ok(Auth::Accept)
        } else {
            tracing::info!(user, %fingerprint, peer = ?self.peer, "SSH login refused");
            Ok(Auth::reject())
        }
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.terminals.remove(&channel);
        self.sftp.remove(&channel);
        self.resizes.remove(&channel);
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let (cols, rows) = size(col_width, row_height);
        self.terminals.insert(
            channel,
            Terminal {
                term: term.to_string(),
                cols,
                rows,
            },
        );
        session.channel_success(channel)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.resizes.get(&channel) {
            let _ = tx.send(size(col_width, row_height));
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Some(command), session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.start(channel, None, session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let Some(open) = self.channels.remove(&channel).filter(|_| name == "sftp") else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        let sftp = super::sftp::Sftp::new(self.shared.home.clone());
        // Served by a task of its own; the client's EOF ends it (below).
        russh_sftp::server::run(open.into_stream(), sftp).await;
        self.sftp.insert(channel);
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // The client is done with SFTP: it waits for a status, as from any
        // program, and the channel's end.
        if self.sftp.remove(&channel) {
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]");
        let Ok(port) = u16::try_from(port) else {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        if !loopback {
            tracing::info!(
                host,
                port,
                "SSH forwarding refused: not the workspace's own port"
            );
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let target = if host.contains(':') {
            "::1"
        } else {
            "127.0.0.1"
        };
        match tokio::net::TcpStream::connect((target, port)).await {
            Ok(mut upstream) => {
                reply.accept().await;
                tokio::spawn(async move {
                    let mut stream = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                });
            }
            Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
        }
        Ok(())
    }
}

impl Session {
    /// Runs `command` (a login shell when none) on the session channel.
    fn start(
        &mut self,
        id: ChannelId,
        command: Option<String>,
        session: &mut SshSession,
    ) -> Result<(), russh::Error> {
        let Some(channel) = self.channels.remove(&id) else {
            return session.channel_failure(id);
        };
        if let Some(terminal) = self.terminals.remove(&id) {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            return match on_terminal(&terminal, command.as_deref(), &self.shared) {
                Ok((pty, child)) => {
                    self.resizes.insert(id, tx);
                    session.channel_success(id)?;
                    tokio::spawn(run_on_terminal(channel, pty, child, rx));
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start an SSH terminal");
                    session.channel_failure(id)
                }
            };
        }
        let mut cmd = tokio::process::Command::new("sh");
        match &command {
            Some(c) => cmd.arg("-c").arg(c),
            None => cmd.arg("-l"),
        };
        cmd.current_dir(&self.shared.home)
            .envs(self.shared.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start an SSH command");
                return session.channel_failure(id);
            }
        };
        session.channel_success(id)?;
        tokio::spawn(run(channel, child));
        Ok(())
    }
}

/// Streams the child's output to the channel and the channel's input to
/// the child, then sends the exit status and closes.
async fn run(channel: Channel<Msg>, mut child: tokio::process::Child) {
    let (mut read, write) = channel.split();
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return;
    };
    let mut out = write.make_writer();
    let mut err = write.make_writer_ext(Some(1));
    let input = async move {
        let _ = tokio::io::copy(&mut read.make_reader(), &mut stdin).await;
        let _ = stdin.shutdown().await;
    };
    let output = async {
        let _ = tokio::join!(
            tokio::io::copy(&mut stdout, &mut out),
            tokio::io::copy(&mut stderr, &mut err),
        );
        let _ = out.flush().await;
        let _ = err.flush().await;
    };
    let input = tokio::spawn(input);
    output.await;
    let status = child.wait().await;
    input.abort();
    let _ = write.exit_status(exit_code(status)).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}

/// The command (a login shell when none) on a new PTY of the terminal's
/// size and type.
fn on_terminal(
    terminal: &Terminal,
    command: Option<&str>,
    shared: &super::Shared,
) -> pty_process::Result<(pty_process::Pty, tokio::process::Child)> {
    let (pty, pts) = pty_process::open()?;
    pty.resize(pty_process::Size::new(terminal.rows, terminal.cols))?;
    // bash where the image has it (the workspace's), else sh.
    let shell = if std::path::Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let args: Vec<&str> = match command {
        Some(c) => vec!["-c", c],
        None => vec!["-l"],
    };
    let child = pty_process::Command::new(shell)
        .args(args)
        .current_dir(&shared.home)
        .envs(shared.env.iter().map(|(k, v)| (k, v)))
        .env("TERM", &terminal.term)
        .kill_on_drop(true)
        .spawn(pts)?;
    Ok((pty, child))
}

/// The terminal's output to the channel, the channel's input and window
/// sizes to the terminal; then the exit status, and close.
async fn run_on_terminal(
    channel: Channel<Msg>,
    pty: pty_process::Pty,
    mut child: tokio::process::Child,
    mut resizes: tokio::sync::mpsc::UnboundedReceiver<(u16, u16)>,
) {
    use tokio::io::AsyncReadExt;
    let (mut read, write) = channel.split();
    let (mut pty_out, mut pty_in) = pty.into_split();
    let mut out = write.make_writer();
    let output = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pty_out.read(&mut buf).await {
                // EOF or EIO: every process on the terminal has left it.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = out.flush().await;
    };
    let input = async {
        let mut reader = read.make_reader();
        let mut buf = vec![0u8; 8 * 1024];
        loop {
            tokio::select! {
                n = reader.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if pty_in.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                },
                Some((cols, rows)) = resizes.recv() => {
                    let _ = pty_in.resize(pty_process::Size::new(rows, cols));
                }
            }
        }
        // The client closed its input; the terminal stays until the
        // program ends.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = output => {}
        _ = input => {}
    }
    let status = child.wait().await;
    let _ = write.exit_status(exit_code(status)).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}

/// The status a client gets: the program's exit code, or for a death by
/// signal what the shells report, 128 + the signal.
fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> u32 {
    let code = match status {
        Ok(s) => s
            .code()
            .or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|n| 128 + n))
            .unwrap_or(255),
        Err(_) => 255,
    };
    code as u32
}
