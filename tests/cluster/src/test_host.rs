//! Test hosts: a TCP server at a chosen IPv4 address inside a network
//! namespace the test creates and removes, reached from the real node's
//! pods through a veth whose host end is `kcth*` (the only interfaces,
//! besides the pod bridge, the node forwards pod traffic to), and from
//! this machine's own address.
//!
//! The namespace belongs to the server process (`unshare --net`) and ends
//! with it, taking the veth along. Not `ip netns add`: that bind-mounts
//! `/run/netns` over itself, hiding the pods' namespaces the CNI mounted
//! there, which then cannot be removed when the node stops.
//!
//! No packet may leave the machine: `hack/node.sh` gives pods a route to
//! each test address and the host a blackhole route for the rest of each
//! range. `TestHost::start` checks that blackhole is in place before it
//! adds the address's own route, so a test that gets anything wrong sends
//! into a blackhole, never out of the default route.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The server each test host runs: once its address is set up (a line on
/// stdin), an HTTP server of the host's own directory, whose `index.html`
/// is the host's name, so a probe knows which host answered (a bare TCP
/// connect works too). Tests may add files (a git repository served by
/// git's dumb HTTP protocol, say).
const SERVER: &str = r#"
import functools, http.server, sys
sys.stdin.readline()
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
handler = functools.partial(Quiet, directory=sys.argv[3])
server = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), handler)
print("ready", flush=True)
server.serve_forever()
"#;

/// The pod range the node's pods come from (hack/node.sh NODE_POD_RANGE).
const POD_RANGE: &str = "10.244.0.0/16";

pub struct TestHost {
    pub addr: Ipv4Addr,
    pub port: u16,
    iface: String,
    server: Child,
    root: tempfile::TempDir,
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e} (apt-get install iproute2)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether the host has a blackhole route whose range holds `addr`.
fn blackholed(addr: Ipv4Addr) -> bool {
    let routes = ip(&["-4", "route", "show", "type", "blackhole"]).unwrap_or_default();
    routes.lines().any(|l| {
        let cidr = l.split_whitespace().nth(1).unwrap_or_default();
        let (net, len) = cidr.split_once('/').unwrap_or((cidr, "32"));
        match (net.parse::<Ipv4Addr>(), len.parse::<u32>()) {
            (Ok(net), Ok(len)) if len <= 32 => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(addr) & mask == u32::from(net) & mask
            }
            _ => false,
        }
    })
}

/// Waits until process `pid` is in a network namespace of its own.
/// `spawn` returns once `unshare` is forked, maybe before it has called
/// unshare(2); a veth moved to it before then stays in the host's
/// namespace and is missing inside.
fn in_own_netns(pid: &str) -> Result<(), String> {
    let ours = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::fs::read_link(format!("/proc/{pid}/ns/net")) {
            Ok(theirs) if theirs != ours => return Ok(()),
            Ok(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Ok(_) => return Err("unshare made no network namespace within 10 s".into()),
            Err(e) => return Err(format!("the server exited before it was set up: {e}")),
        }
    }
}

impl TestHost {
    /// A host at `addr` answering on `port` with `name`. Panics with what
    /// to do when the node has no blackhole for the address's range.
    pub fn start(name: &str, addr: Ipv4Addr, port: u16) -> TestHost {
        let root = tempfile::tempdir().expect("a directory for the test host");
        std::fs::write(root.path().join("index.html"), format!("{name}\n"))
            .expect("write the test host's index");
        let program = [
            "python3",
            "-c",
            SERVER,
            &addr.to_string(),
            &port.to_string(),
        ]
        .map(String::from)
        .into_iter()
        .chain([root.path().display().to_string()])
        .collect::<Vec<_>>();
        Self::run(name, addr, port, root, &program)
    }

    /// A host at `addr` running `program` (with its arguments), which must
    /// read one line from stdin before it listens (the address is set up
    /// by then) and print a line starting with `ready` once it does.
    pub fn start_program(name: &str, addr: Ipv4Addr, port: u16, program: &[String]) -> TestHost {
        let root = tempfile::tempdir().expect("a directory for the test host");
        Self::run(name, addr, port, root, program)
    }

    fn run(
        name: &str,
        addr: Ipv4Addr,
        port: u16,
        root: tempfile::TempDir,
        program: &[String],
    ) -> TestHost {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        assert!(
            blackholed(addr),
            "no blackhole route covers {addr} on this host: hack/node.sh sets one for each test range (NODE_TEST_RANGES) before any pod starts; is the real node up?"
        );
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Interface names hold 15 bytes: kcth + 6 hex digits + 'p'.
        let tag = format!("{:06x}", (std::process::id() << 4 | (n & 0xf)) & 0xff_ffff);
        let iface = format!("kcth{tag}");
        let peer = format!("{iface}p");
        let a = addr.to_string();
        let mut server = Command::new("unshare")
            .args(["--net", "--"])
            .args(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the test host's server (unshare, from util-linux)");
        let pid = server.id().to_string();
        let setup = || -> Result<(), String> {
            in_own_netns(&pid)?;
            ip(&["link", "add", &iface, "type", "veth", "peer", "name", &peer])?;
            ip(&["link", "set", &peer, "netns", &pid])?;
            let inside = |args: &[&str]| -> Result<(), String> {
                let out = Command::new("nsenter")
                    .args(["-t", &pid, "-n", "ip"])
                    .args(args)
                    .output()
                    .map_err(|e| format!("cannot run nsenter: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "ip {} in the test host: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            };
            inside(&["link", "set", "lo", "up"])?;
            inside(&["addr", "add", &format!("{a}/32"), "dev", &peer])?;
            inside(&["link", "set", &peer, "up"])?;
            // Back to the pods only: the host answers for them (proxy ARP).
            inside(&["route", "add", POD_RANGE, "dev", &peer])?;
            ip(&["link", "set", &iface, "up"])?;
            std::fs::write(format!("/proc/sys/net/ipv4/conf/{iface}/proxy_arp"), "1")
                .map_err(|e| format!("proxy_arp on {iface}: {e}"))?;
            ip(&["route", "replace", &format!("{a}/32"), "dev", &iface])?;
            // And back to this machine's own address, for a test process
            // that talks to the host itself (a token broker's API calls).
            let route = ip(&["-4", "route", "get", &a])?;
            if let Some(src) = route.split_whitespace().skip_while(|w| *w != "src").nth(1) {
                inside(&["route", "add", &format!("{src}/32"), "dev", &peer])?;
            }
            Ok(())
        };
        let started = setup().and_then(|()| {
            use std::io::Write;
            let mut stdin = server.stdin.take().ok_or("no stdin")?;
            writeln!(stdin, "go").map_err(|e| e.to_string())?;
            let mut line = String::new();
            let stdout = server.stdout.take().ok_or("no stdout")?;
            let _ = BufReader::new(stdout).read_line(&mut line);
            if line.starts_with("ready") {
                Ok(())
            } else {
                Err("its server did not start".to_string())
            }
        });
        let host = TestHost {
            addr,
            port,
            iface,
            server,
            root,
        };
        if let Err(e) = started {
            drop(host);
            panic!("cannot make the test host {name} at {addr}:{port}: {e}");
        }
        host
    }
}

impl TestHost {
    /// The directory the host serves over HTTP.
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = ip(&[
            "route",
            "del",
            &format!("{}/32", self.addr),
            "dev",
            &self.iface,
        ]);
        let _ = ip(&["link", "del", &self.iface]);
        // Its namespace ends with it.
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
