//! `kube-coder attach ID`: attach this terminal to a task's tmux session on
//! this machine, on whichever of the workspace's tmux servers holds it (a
//! task's server follows from its session name, `tasks::tmux::socket_of`,
//! but a session started by an older build may sit on the first).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Args;
use workspace::tasks::tmux::{session_name, shard_sockets, socket_of};

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// The task's id (as in the dashboard, the API or `kc-ID`).
    id: String,
    /// The server's --data-dir, if not the default.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server's --tmux-socket, if set (default: <data-dir>/tmux.sock).
    #[arg(long, env = "KUBE_CODER_TMUX_SOCKET")]
    tmux_socket: Option<PathBuf>,
    /// Watch without typing (tmux's read-only client).
    #[arg(long)]
    read_only: bool,
}

pub fn run(args: AttachArgs) -> ExitCode {
    let base = args.tmux_socket.clone().unwrap_or_else(|| {
        args.data_dir
            .clone()
            .unwrap_or_else(crate::serve::default_data_dir)
            .join("tmux.sock")
    });
    let id = args.id.strip_prefix("kc-").unwrap_or(&args.id);
    let session = session_name(id);
    let Some(socket) = find(&base, &session) else {
        eprintln!(
            "kube-coder: no running task {id} on the tmux servers at {} (ended, or another --data-dir?)",
            base.display()
        );
        return ExitCode::FAILURE;
    };
    let mut tmux = Command::new("tmux");
    tmux.arg("-S")
        .arg(&socket)
        .arg("attach-session")
        .env_remove("TMUX");
    if args.read_only {
        tmux.arg("-r");
    }
    tmux.args(["-t", &format!("={session}")]);
    // Only returns if tmux could not be started.
    let e = tmux.exec();
    if e.kind() == std::io::ErrorKind::NotFound {
        eprintln!("kube-coder: tmux is not installed (install it: apt-get install tmux)");
    } else {
        eprintln!("kube-coder: could not run tmux: {e}");
    }
    ExitCode::FAILURE
}

/// The socket of the server that holds the session: where its name puts
/// it, else any of the others.
fn find(base: &Path, session: &str) -> Option<PathBuf> {
    let home = socket_of(base, session);
    std::iter::once(home.clone())
        .chain(shard_sockets(base).into_iter().filter(|s| *s != home))
        .filter(|s| s.exists())
        .find(|s| has_session(s, session))
}

fn has_session(socket: &Path, session: &str) -> bool {
    Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(["has-session", "-t", &format!("={session}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
