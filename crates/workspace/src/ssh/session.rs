//! One SSH connection. A command (`ssh host cmd`) runs under `sh -c` in
//! the home with the server's environment, its stdin, stdout and stderr on
//! the channel, and its exit status sent back, so `ssh host false` fails
//! like a local command would. `ssh host` with no command runs a login
//! shell. Local port forwarding (`ssh -L`) reaches the workspace's own
//! ports only (loopback): a dev server started by a task, not the network
//! around the workspace.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
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
        }
    }
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    /// Session channels opened and not yet given a command.
    channels: HashMap<ChannelId, Channel<Msg>>,
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
        let mut cmd = tokio::process::Command::new("sh");
        match &command {
            Some(c) => cmd.arg("-c").arg(c),
            None => cmd.arg("-l"),
        };
        cmd.current_dir(&self.shared.home)
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
        tokio::spawn(run(channel, child, self.shared.home.clone()));
        Ok(())
    }
}

/// Streams the child's output to the channel and the channel's input to
/// the child, then sends the exit status and closes.
async fn run(channel: Channel<Msg>, mut child: tokio::process::Child, _home: PathBuf) {
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
    // A signal's death is reported as the shells do: 128 + the signal.
    let code = match status {
        Ok(s) => s
            .code()
            .or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|n| 128 + n))
            .unwrap_or(255),
        Err(_) => 255,
    };
    let _ = write.exit_status(code as u32).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}
