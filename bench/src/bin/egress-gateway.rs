//! What the egress gateway adds to a connection, next to the same
//! connection made directly, in the same run (bench/egress.sh builds the
//! release binary and runs this): time to the first byte of a small
//! response (plain HTTP through the proxy, and a CONNECT tunnel, as HTTPS
//! would go), the delay of each chunk of a stream, throughput of a large
//! download, and the gateway's RSS and CPU with 200 open, quiet streams.
//! The upstream is in this process, so a chunk's send time is known. Raw
//! TCP on both sides: no client library's overhead in either figure.
//! Prints figures; asserts nothing.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use kube_coder_bench::{cpu_ticks, mib, pct, status_kib};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Args {
    /// The kube-coder binary (release).
    #[arg(long, default_value = "target/release/kube-coder")]
    bin: String,
    /// Requests per latency figure.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Bytes of the throughput download.
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// Streams held open for the RSS figure.
    #[arg(long, default_value_t = 200)]
    streams: usize,
}

/// The upstream: `GET /small` (2 bytes), `GET /big/N` (N bytes),
/// `GET /chunks/N/MS` (N chunks of 16 bytes, MS apart, each carrying its
/// send time in ns since `epoch`), `GET /quiet` (a byte every second).
async fn upstream(epoch: Instant) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    loop {
                        let mut h = String::new();
                        if stream.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let s = stream.get_mut();
                    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                    let r = match parts.as_slice() {
                        ["big", n] => {
                            let n: u64 = n.parse().unwrap_or(0);
                            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                            let _ = s.write_all(head.as_bytes()).await;
                            let buf = vec![0u8; 256 << 10];
                            let mut left = n;
                            while left > 0 {
                                let k = left.min(buf.len() as u64) as usize;
                                if s.write_all(&buf[..k]).await.is_err() {
                                    return;
                                }
                                left -= k as u64;
                            }
                            Ok(())
                        }
                        ["chunks", n, ms] => {
                            let (n, ms): (u64, u64) =
                                (n.parse().unwrap_or(0), ms.parse().unwrap_or(0));
                            let head =
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", n * 16);
                            let _ = s.write_all(head.as_bytes()).await;
                            for _ in 0..n {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                let t = epoch.elapsed().as_nanos() as u64;
                                if s.write_all(&format!("{t:016x}").into_bytes())
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            Ok(())
                        }
                        ["quiet"] => {
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                            loop {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                if s.write_all(b".").await.is_err() {
                                    return;
                                }
                            }
                        }
                        _ => {
                            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                                .await
                        }
                    };
                    if r.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

#[derive(Clone, Copy)]
enum Route {
    Direct,
    /// Plain HTTP in absolute form to the proxy.
    Forward(SocketAddr),
    /// CONNECT, then the request inside the tunnel.
    Tunnel(SocketAddr),
}

/// Opens a connection for `path` and sends the request; the stream is
/// positioned at the response's status line.
async fn request(route: Route, upstream: SocketAddr, path: &str) -> Result<BufReader<TcpStream>> {
    let host = format!("localhost:{}", upstream.port());
    let (target, line) = match route {
        Route::Direct => (
            upstream,
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        ),
        Route::Forward(p) => (
            p,
            format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        ),
        Route::Tunnel(p) => (p, format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")),
    };
    let s = TcpStream::connect(target).await?;
    s.set_nodelay(true)?;
    let mut s = BufReader::new(s);
    if let Route::Tunnel(_) = route {
        s.get_mut()
            .write_all(format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await?;
        let status = skip_head(&mut s).await?;
        if !status.contains(" 200") {
            bail!("CONNECT refused: {status}");
        }
    }
    s.get_mut().write_all(line.as_bytes()).await?;
    Ok(s)
}

/// Reads a response head; returns its status line.
async fn skip_head(s: &mut BufReader<TcpStream>) -> Result<String> {
    let mut status = String::new();
    s.read_line(&mut status).await?;
    loop {
        let mut h = String::new();
        if s.read_line(&mut h).await? == 0 || h == "\r\n" {
            break;
        }
    }
    Ok(status)
}

/// Connect → first byte of the response, in ms, `n` times.
async fn ttfb(route: Route, upstream: SocketAddr, n: usize) -> Result<(f64, f64)> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut s = request(route, upstream, "/small").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((pct(&mut ms, 0.5), pct(&mut ms, 0.95)))
}

/// Each chunk's delay from its send to its arrival, in µs.
async fn chunk_delay(route: Route, upstream: SocketAddr, epoch: Instant) -> Result<(f64, f64)> {
    let mut s = request(route, upstream, "/chunks/300/5").await?;
    skip_head(&mut s).await?;
    let mut us = Vec::new();
    let mut buf = [0u8; 16];
    for _ in 0..300 {
        s.read_exact(&mut buf).await?;
        let sent = u64::from_str_radix(std::str::from_utf8(&buf)?, 16)?;
        let now = epoch.elapsed().as_nanos() as u64;
        us.push(now.saturating_sub(sent) as f64 / 1e3);
    }
    Ok((pct(&mut us, 0.5), pct(&mut us, 0.95)))
}

/// MB/s of a `bytes` download.
async fn throughput(route: Route, upstream: SocketAddr, bytes: u64) -> Result<f64> {
    let t = Instant::now();
    let mut s = request(route, upstream, &format!("/big/{bytes}")).await?;
    skip_head(&mut s).await?;
    let mut buf = vec![0u8; 256 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("the download ended {left} bytes early");
        }
        left -= n as u64;
    }
    Ok(bytes as f64 / 1048576.0 / t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let epoch = Instant::now();
    let up = upstream(epoch).await?;
    let dir = std::env::temp_dir().join(format!("kc-egress-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let list = dir.join("allow");
    std::fs::write(&list, format!("localhost:{}\n", up.port()))?;
    let mut gw = tokio::process::Command::new(&args.bin)
        .args([
            "egress-gateway",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--allow-cidr", "127.0.0.0/8,::1/128", "--allow-file"])
        .arg(&list)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {} (cargo build --release -p kube-coder)", args.bin))?;
    let pid = gw.id().context("the gateway's pid")?;
    let mut lines = BufReader::new(gw.stdout.take().context("stdout")?).lines();
    let banner = lines
        .next_line()
        .await?
        .context("the gateway printed nothing")?;
    let proxy: SocketAddr = banner
        .split("proxy on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .context("no proxy address in the banner")?
        .parse()?;

    println!(
        "{} cores; upstream and client in this process, gateway {}\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        args.bin
    );
    println!(
        "| figure | direct | through the gateway (plain HTTP) | through the gateway (CONNECT) |"
    );
    println!("|---|---|---|---|");
    let routes = [Route::Direct, Route::Forward(proxy), Route::Tunnel(proxy)];
    let mut row = Vec::new();
    for r in routes {
        let (p50, p95) = ttfb(r, up, args.samples).await?;
        row.push(format!("p50 {p50:.3} ms, p95 {p95:.3} ms"));
    }
    println!(
        "| new connection → first byte of a small response ({} each) | {} |",
        args.samples,
        row.join(" | ")
    );
    let mut row = Vec::new();
    for r in routes {
        let (p50, p95) = chunk_delay(r, up, epoch).await?;
        row.push(format!("p50 {p50:.0} µs, p95 {p95:.0} µs"));
    }
    println!(
        "| delay of each streamed chunk (300, 5 ms apart) | {} |",
        row.join(" | ")
    );
    let mut row = Vec::new();
    for r in routes {
        row.push(format!("{:.0} MB/s", throughput(r, up, args.bytes).await?));
    }
    println!(
        "| download of {} MiB | {} |",
        args.bytes >> 20,
        row.join(" | ")
    );

    let idle = status_kib(pid, "VmRSS:");
    let mut held = Vec::new();
    for _ in 0..args.streams {
        let mut s = request(Route::Tunnel(proxy), up, "/quiet").await?;
        skip_head(&mut s).await?;
        held.push(s);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = status_kib(pid, "VmRSS:");
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = cpu_ticks(pid);
    println!("\n| gateway | figure |\n|---|---|");
    println!("| RSS after the figures above | {} |", mib(idle));
    println!(
        "| RSS with {} open tunnels (a byte a second each) | {} |",
        args.streams,
        mib(rss)
    );
    if let (Some(a), Some(b)) = (before, after) {
        println!(
            "| CPU with them, over 10 s | {} ticks ({:.1}/min; 100 ticks = 1 CPU-second) |",
            b - a,
            (b - a) as f64 * 6.0
        );
    }
    drop(held);
    let _ = gw.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
