//! SSH into the workspace (`--ssh-listen`) with the real OpenSSH client: a
//! command's output and exit status, stdin, stderr; a terminal (`-tt`) of
//! the client's type, and a shell typed into; a key not listed, and
//! one removed from the file while the server runs, are refused, and one
//! added works, without a restart; the host key survives a restart (the
//! client's known_hosts stays valid); `ssh -W` reaches a port of the
//! workspace's own and nothing else, and `ssh -L` a dev server a task
//! started; scp, sftp, rsync and git move files both ways; read-only mode
//! refuses every login, saying why; a workspace that builds gives SSH
//! sessions its API's address, as it gives tasks.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A new key pair in `dir`; returns the private key's path and the
/// public key's line.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

struct Client {
    port: u16,
    known_hosts: PathBuf,
    /// `yes`: only the host key known_hosts holds; `accept-new`: learn it.
    strict: &'static str,
}

impl Client {
    /// `program` (ssh, scp or sftp) as the tests run it: no user config,
    /// no prompts, this key only, the workspace's host key by its alias
    /// (a restart moves the port).
    fn command(&self, program: &str, key: &Path) -> Command {
        let mut c = Command::new(program);
        c.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "HostKeyAlias=workspace", "-o"])
        .arg(format!("StrictHostKeyChecking={}", self.strict))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
        .arg("-i")
        .arg(key)
        // ssh takes the port as -p, scp and sftp as -P.
        .arg(if program == "ssh" { "-p" } else { "-P" })
        .arg(self.port.to_string())
        // What a terminal asked for with -t says it is.
        .env("TERM", "xterm-256color");
        c
    }

    /// The same options as one `ssh` command line, for the programs that
    /// run ssh themselves (git's GIT_SSH_COMMAND, rsync's -e).
    fn ssh_line(&self, key: &Path) -> String {
        format!(
            "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o HostKeyAlias=workspace -o UserKnownHostsFile={} -i {} -p {}",
            self.known_hosts.display(),
            key.display(),
            self.port
        )
    }

    /// `ssh` with `key` and `args`, `stdin` fed to it.
    fn ssh(&self, key: &Path, args: &[&str], stdin: &[u8]) -> Output {
        let mut c = self.command("ssh", key);
        c.arg("anyone@127.0.0.1").args(args);
        feed(c, stdin)
    }
}

/// Runs `c` with `stdin` fed to it; its output.
fn feed(mut c: Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the OpenSSH client runs (apt-get install openssh-client)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ssh_port(ws: &common::Workspace) -> u16 {
    let line = ws
        .stdout_lines
        .iter()
        .find_map(|l| l.strip_prefix("ssh:"))
        .expect("the banner names the SSH address");
    let addr: std::net::SocketAddr = line.split_whitespace().next().unwrap().parse().unwrap();
    addr.port()
}

/// A workspace with SSH (and `extra` flags) letting in the key `alice`
/// (made in `keys`); the client for it. Returns alice's private key, the
/// authorized-keys file, the workspace and the client.
async fn with_alice(keys: &Path, extra: &[&str]) -> (PathBuf, PathBuf, common::Workspace, Client) {
    with_alice_env(keys, extra, &[]).await
}

/// [`with_alice`], the server started with `env` in its environment.
async fn with_alice_env(
    keys: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (PathBuf, PathBuf, common::Workspace, Client) {
    let (alice, alice_pub) = keygen(keys, "alice");
    let authorized = keys.join("authorized_keys");
    std::fs::write(&authorized, format!("{alice_pub}\n")).unwrap();
    let authorized_arg = authorized.display().to_string();
    let mut args = vec![
        "--ssh-listen",
        "127.0.0.1:0",
        "--ssh-authorized-keys",
        &authorized_arg,
    ];
    args.extend_from_slice(extra);
    let ws = common::Workspace::start_env(&args, env).await;
    let client = Client {
        port: ssh_port(&ws),
        known_hosts: keys.join("known_hosts"),
        strict: "accept-new",
    };
    (alice, authorized, ws, client)
}

/// A workspace that builds through the operator: an SSH command or
/// terminal finds the workspace API, as a task does, so `kube-coder build`
/// typed over SSH goes through the server and into its build history.
#[tokio::test]
async fn ssh_sessions_find_the_workspace_api_as_tasks_do() {
    let keys = tempfile::tempdir().unwrap();
    let env = common::build_env(keys.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (alice, _, ws, client) = with_alice_env(keys.path(), &[], &env).await;
    let show = "echo \"local=$KUBE_CODER_LOCAL_API\"; test -s \"$KUBE_CODER_LOCAL_API_TOKEN_FILE\" && echo token-file=readable";
    let want = format!("local={}", ws.api);
    let out = client.ssh(&alice, &[show], b"");
    assert_eq!(
        text(&out.stdout),
        format!("{want}\ntoken-file=readable\n"),
        "{}",
        text(&out.stderr)
    );
    let out = client.ssh(&alice, &["-tt", show], b"");
    assert!(
        text(&out.stdout).contains(&format!("{want}\r\ntoken-file=readable")),
        "{}",
        text(&out.stdout)
    );

    // A workspace that does not build tells SSH sessions nothing of it.
    let keys = tempfile::tempdir().unwrap();
    let (alice, _, _plain, client) = with_alice(keys.path(), &[]).await;
    let out = client.ssh(&alice, &["echo \"local=[$KUBE_CODER_LOCAL_API]\""], b"");
    assert_eq!(text(&out.stdout), "local=[]\n", "{}", text(&out.stderr));
}

#[tokio::test]
async fn ssh_runs_commands_with_listed_keys_only() {
    let keys = tempfile::tempdir().unwrap();
    let (alice, authorized, mut ws, mut client) = with_alice(keys.path(), &[]).await;
    let (bob, bob_pub) = keygen(keys.path(), "bob");

    // A command: its output, where it runs, its exit status.
    let out = client.ssh(&alice, &["echo hello; pwd; echo oops >&2; exit 3"], b"");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let home = std::fs::canonicalize(ws.home()).unwrap();
    assert_eq!(text(&out.stdout), format!("hello\n{}\n", home.display()));
    assert!(text(&out.stderr).contains("oops"), "{}", text(&out.stderr));
    // Its stdin, to the end.
    let out = client.ssh(&alice, &["wc -l"], b"a\nb\nc\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "3");

    // A terminal: the command runs on a PTY of the client's type (this
    // client has no window, so the default 80×24); typed input reaches an
    // interactive shell on it.
    let out = client.ssh(
        &alice,
        &["-tt", "tty; echo \"$TERM\"; stty size; exit 5"],
        b"",
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("/dev/pts/"), "{shown:?}");
    assert!(shown.contains("xterm-256color\r\n24 80\r\n"), "{shown:?}");
    let out = client.ssh(&alice, &["-tt"], b"echo typed-$((6*7))\nexit 7\n");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("typed-42"),
        "{}",
        text(&out.stdout)
    );

    // A key not listed.
    let out = client.ssh(&bob, &["true"], b"");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    // Listed now, without a restart; and alice removed.
    std::fs::write(&authorized, format!("{bob_pub}\n")).unwrap();
    let out = client.ssh(&bob, &["echo bob"], b"");
    assert_eq!(text(&out.stdout), "bob\n", "{}", text(&out.stderr));
    let out = client.ssh(&alice, &["true"], b"");
    assert_eq!(out.status.code(), Some(255), "a removed key still got in");

    // Forwarding: a port of the workspace's own, not the network around.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dev_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"from the dev server\n").await;
        }
    });
    let target = format!("127.0.0.1:{dev_port}");
    let out = tokio::task::spawn_blocking({
        let (bob, client_port, known) = (bob.clone(), client.port, client.known_hosts.clone());
        move || {
            Client {
                port: client_port,
                known_hosts: known,
                strict: "accept-new",
            }
            .ssh(&bob, &["-W", &target], b"hi\n")
        }
    })
    .await
    .unwrap();
    assert_eq!(
        text(&out.stdout),
        "from the dev server\n",
        "{}",
        text(&out.stderr)
    );
    let out = client.ssh(&bob, &["-W", "192.0.2.1:80"], b"");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("administratively prohibited"),
        "{}",
        text(&out.stderr)
    );

    // The host key is kept: strict checking against what the client saw.
    ws.crash();
    ws.spawn().await;
    client.port = ssh_port(&ws);
    client.strict = "yes";
    let out = client.ssh(&bob, &["echo same host"], b"");
    assert_eq!(text(&out.stdout), "same host\n", "{}", text(&out.stderr));
}

#[tokio::test]
async fn read_only_refuses_every_login_and_says_why() {
    let keys = tempfile::tempdir().unwrap();
    let (alice, _, ws, client) = with_alice(keys.path(), &["--read-only"]).await;
    let out = client.ssh(&alice, &["touch pwned"], b"");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("this workspace is read-only; SSH logins are refused"),
        "{}",
        text(&out.stderr)
    );
    assert!(!ws.home().join("pwned").exists());
}

/// `program` (scp or sftp) with the options `ssh` gets, and `args`.
fn transfer(program: &str, client: &Client, key: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut c = client.command(program, key);
    c.args(args);
    feed(c, stdin)
}

#[tokio::test]
async fn scp_and_sftp_move_files_both_ways() {
    let keys = tempfile::tempdir().unwrap();
    let (alice, _, ws, client) = with_alice(keys.path(), &[]).await;
    let local = tempfile::tempdir().unwrap();
    // 3 MiB of varied bytes: several SFTP reads and writes each way.
    let body: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(local.path().join("up.bin"), &body).unwrap();

    // scp up, into a path relative to the home, and back down.
    let up = local.path().join("up.bin").display().to_string();
    let out = transfer("scp", &client, &alice, &[&up, "dev@127.0.0.1:up.bin"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(ws.home().join("up.bin")).unwrap(), body);
    let down = local.path().join("down.bin").display().to_string();
    let out = transfer(
        "scp",
        &client,
        &alice,
        &["dev@127.0.0.1:up.bin", &down],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&down).unwrap(), body);

    // sftp: a directory, a rename, a listing, a removal.
    let batch = format!(
        "mkdir box\nput {up} box/a.bin\nrename box/a.bin box/b.bin\nls box\nget box/b.bin {}\nrm up.bin\n",
        local.path().join("b.bin").display()
    );
    let mut args = vec!["-b", "-"];
    args.push("dev@127.0.0.1");
    let out = transfer("sftp", &client, &alice, &args, batch.as_bytes());
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("box/b.bin"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(std::fs::read(ws.home().join("box/b.bin")).unwrap(), body);
    assert_eq!(std::fs::read(local.path().join("b.bin")).unwrap(), body);
    assert!(!ws.home().join("up.bin").exists());
    // A file that is not there is an error the client reports.
    let out = transfer("sftp", &client, &alice, &args, b"get no-such-file\n");
    assert!(!out.status.success());

    // git over SSH: a push into a bare repository in the home.
    let ssh = client.ssh_line(&alice);
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .env("GIT_SSH_COMMAND", &ssh)
            .output()
            .expect("git is installed");
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    git(&ws.home(), &["init", "-q", "--bare", "repo.git"]);
    let src = local.path().join("src");
    std::fs::create_dir(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    std::fs::write(src.join("README"), "pushed over ssh\n").unwrap();
    git(&src, &["add", "README"]);
    git(&src, &["commit", "-q", "-m", "first"]);
    git(&src, &["push", "-q", "dev@127.0.0.1:repo.git", "main"]);
    let shown = Command::new("git")
        .args(["--git-dir", "repo.git", "show", "main:README"])
        .current_dir(ws.home())
        .output()
        .unwrap();
    assert_eq!(text(&shown.stdout), "pushed over ssh\n");

    // rsync over SSH (rsync --server runs in the workspace): a tree up,
    // a change made there, and only that back down.
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/big.bin"), &body).unwrap();
    std::fs::write(tree.join("notes.txt"), "first\n").unwrap();
    let rsync = |args: &[&str]| {
        let out = Command::new("rsync")
            .args(["-a", "--stats", "-e", &ssh])
            .args(args)
            .output()
            .expect("rsync runs (apt-get install rsync)");
        assert!(
            out.status.success(),
            "rsync {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let from = format!("{}/", tree.display());
    rsync(&[&from, "dev@127.0.0.1:synced/"]);
    assert_eq!(
        std::fs::read(ws.home().join("synced/sub/big.bin")).unwrap(),
        body
    );
    std::fs::write(
        ws.home().join("synced/notes.txt"),
        "changed in the workspace\n",
    )
    .unwrap();
    let stats = rsync(&["dev@127.0.0.1:synced/", &from]);
    assert_eq!(
        std::fs::read_to_string(tree.join("notes.txt")).unwrap(),
        "changed in the workspace\n"
    );
    assert!(
        stats.contains("Number of regular files transferred: 1"),
        "only the changed file comes back:\n{stats}"
    );
}

#[tokio::test]
async fn ssh_l_reaches_a_dev_server_a_task_started() {
    let keys = tempfile::tempdir().unwrap();
    let (alice, _, ws, client) = with_alice(keys.path(), &[]).await;
    let remote = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let local = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    std::fs::write(ws.home().join("index.html"), "served in the workspace\n").unwrap();
    let task = ws
        .create(serde_json::json!({
            "assistant": "shell",
            "prompt": format!("exec python3 -m http.server --bind 127.0.0.1 {remote}"),
        }))
        .await;
    let mut tunnel = client
        .command("ssh", &alice)
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("{local}:127.0.0.1:{remote}"))
        .arg("dev@127.0.0.1")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs");
    // The server and the tunnel each take a moment to listen.
    let url = format!("http://127.0.0.1:{local}/index.html");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        if let Ok(r) = reqwest::get(&url).await {
            if r.status() == 200 {
                break r.text().await.unwrap();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing answered through ssh -L within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(body, "served in the workspace\n");
    let _ = tunnel.kill();
    let _ = tunnel.wait();
    ws.api_delete(&format!("/api/tasks/{}", task["id"].as_str().unwrap()))
        .await;
}
