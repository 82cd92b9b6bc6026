//! What the egress gateway's model port adds to a model call, next to the
//! same call made straight to the provider, in the same run (bench/models.sh
//! builds the release binary and runs this). The provider is a stand-in in
//! this process, over TLS with a certificate from a CA made here, so each
//! event's send time is known. Both routes use one reqwest client with
//! keep-alive, as the providers' SDKs do: straight, the client speaks TLS
//! to the provider; through the gateway, it speaks plain HTTP to the model
//! port and the gateway speaks TLS, adds the key and reads token usage from
//! every event on the way. Figures: time to the answer's head, the delay of
//! each streamed event, throughput of a long event stream, and the
//! gateway's RSS and CPU with 200 open, quiet streams. Prints figures;
//! asserts nothing.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::StreamExt;
use kube_coder_bench::{cpu_ticks, mib, pct, status_kib};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    /// The kube-coder binary (release).
    #[arg(long, default_value = "target/release/kube-coder")]
    bin: String,
    /// Requests per latency figure.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Bytes of the long event stream.
    #[arg(long, default_value_t = 256 << 20)]
    bytes: u64,
    /// Streams held open for the RSS figure.
    #[arg(long, default_value_t = 200)]
    streams: usize,
}

const KEY: &str = "sk-bench-key";

/// A CA, and a certificate for `localhost` it signed (DER), with its key.
fn certificates() -> Result<(String, Vec<u8>, Vec<u8>)> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&key, &ca)?;
    Ok((ca.pem(), leaf.der().to_vec(), key.serialize_der()))
}

/// The stand-in provider, over TLS: `POST /v1/small` (a short JSON answer
/// with usage), `/v1/events/N/MS` (N events MS apart, each carrying its
/// send time in ns since `epoch`), `/v1/big/N` (N bytes of 1 KiB text
/// events), `/v1/quiet` (an event every second, never ending). Each checks
/// the key the gateway adds (or the client sends, straight).
async fn provider(epoch: Instant, cert: Vec<u8>, key: Vec<u8>) -> Result<SocketAddr> {
    use tokio_rustls::rustls;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![rustls::pki_types::CertificateDer::from(cert)],
        rustls::pki_types::PrivatePkcs8KeyDer::from(key).into(),
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut s = BufReader::new(tls);
                loop {
                    let mut line = String::new();
                    if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (mut length, mut keyed) = (0usize, false);
                    loop {
                        let mut h = String::new();
                        if s.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        keyed |= lower.trim_end() == format!("x-api-key: {KEY}");
                    }
                    let mut body = vec![0u8; length];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let s = s.get_mut();
                    if !keyed {
                        let _ = s
                            .write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        continue;
                    }
                    let parts: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
                    let events = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n";
                    let r = match parts.as_slice() {
                        ["events", n, ms] => {
                            let (n, ms): (u64, u64) =
                                (n.parse().unwrap_or(0), ms.parse().unwrap_or(0));
                            // `data: {"t":"<16 hex>"}\n\n`: 32 bytes each.
                            let head = format!("{events}Content-Length: {}\r\n\r\n", n * 32);
                            let _ = s.write_all(head.as_bytes()).await;
                            let mut r = Ok(());
                            for _ in 0..n {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                let t = epoch.elapsed().as_nanos() as u64;
                                r = s
                                    .write_all(
                                        format!("data: {{\"t\":\"{t:016x}\"}}\n\n").as_bytes(),
                                    )
                                    .await;
                                if r.is_err() {
                                    break;
                                }
                                let _ = s.flush().await;
                            }
                            r
                        }
                        ["big", n] => {
                            let n: u64 = n.parse().unwrap_or(0);
                            let text = "x".repeat(1024 - 70);
                            let event = format!(
                                "data: {{\"type\":\"content_block_delta\",\"delta\":{{\"text\":\"{text}\"}}}}\n\n"
                            );
                            let events_n = n / event.len() as u64;
                            let head = format!(
                                "{events}Content-Length: {}\r\n\r\n",
                                events_n * event.len() as u64
                            );
                            let _ = s.write_all(head.as_bytes()).await;
                            let batch = event.repeat(64);
                            let mut left = events_n;
                            let mut r = Ok(());
                            while left > 0 && r.is_ok() {
                                let k = left.min(64);
                                r = s
                                    .write_all(&batch.as_bytes()[..(k as usize) * event.len()])
                                    .await;
                                left -= k;
                            }
                            r
                        }
                        ["quiet"] => {
                            let _ = s
                                .write_all(
                                    format!("{events}Transfer-Encoding: chunked\r\n\r\n")
                                        .as_bytes(),
                                )
                                .await;
                            loop {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                let event = b"data: {\"type\":\"ping\"}\n\n";
                                let chunk =
                                    [format!("{:x}\r\n", event.len()).as_bytes(), event, b"\r\n"]
                                        .concat();
                                if s.write_all(&chunk).await.is_err() || s.flush().await.is_err() {
                                    return;
                                }
                            }
                        }
                        _ => {
                            let body = r#"{"content":[{"type":"text","text":"ok"}],"usage":{"input_tokens":5,"output_tokens":1}}"#;
                            s.write_all(
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            )
                            .await
                        }
                    };
                    if r.is_err() || s.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// One route to the provider: a client, and the base URL it calls.
struct Route {
    client: reqwest::Client,
    base: String,
}

impl Route {
    async fn post(&self, path: &str) -> Result<reqwest::Response> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("x-api-key", KEY)
            .header("content-type", "application/json")
            .body(r#"{"model":"bench","max_tokens":8,"messages":[]}"#)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("{path}: {}", r.status());
        }
        Ok(r)
    }
}

/// Request → the answer's head, then its body read, `n` times (ms).
async fn head_time(route: &Route, n: usize) -> Result<(f64, f64)> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = route.post("/v1/small").await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        r.bytes().await?;
    }
    Ok((pct(&mut ms, 0.5), pct(&mut ms, 0.95)))
}

/// Each event's delay from its send to its arrival (µs).
async fn event_delay(route: &Route, epoch: Instant) -> Result<(f64, f64)> {
    let mut stream = route.post("/v1/events/300/5").await?.bytes_stream();
    let mut pending = String::new();
    let mut us = Vec::new();
    while let Some(chunk) = stream.next().await {
        let now = epoch.elapsed().as_nanos() as u64;
        pending.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if let Some(hex) = event.split('"').nth(3) {
                let sent = u64::from_str_radix(hex, 16)?;
                us.push(now.saturating_sub(sent) as f64 / 1e3);
            }
        }
    }
    if us.len() != 300 {
        bail!("{} of 300 events arrived", us.len());
    }
    Ok((pct(&mut us, 0.5), pct(&mut us, 0.95)))
}

/// MB/s of a long event stream.
async fn throughput(route: &Route, bytes: u64) -> Result<f64> {
    let t = Instant::now();
    let mut stream = route
        .post(&format!("/v1/big/{bytes}"))
        .await?
        .bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = stream.next().await {
        got += chunk?.len() as u64;
    }
    Ok(got as f64 / 1048576.0 / t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let epoch = Instant::now();
    let (ca, cert, key) = certificates()?;
    let up = provider(epoch, cert, key).await?;
    let dir = std::env::temp_dir().join(format!("kc-models-bench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("keys"))?;
    std::fs::write(dir.join("allow"), "")?;
    std::fs::write(dir.join("keys/bench"), KEY)?;
    std::fs::write(
        dir.join("models.json"),
        serde_json::json!({
            "providers": [{"name": "bench", "api": "anthropic", "baseUrl": format!("https://localhost:{}", up.port())}],
            "caBundle": ca,
        })
        .to_string(),
    )?;
    let mut gw = tokio::process::Command::new(&args.bin)
        .args([
            "egress-gateway",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--models-listen",
            "127.0.0.1:0",
            "--allow-cidr",
            "127.0.0.0/8,::1/128",
        ])
        .arg("--allow-file")
        .arg(dir.join("allow"))
        .arg("--models-file")
        .arg(dir.join("models.json"))
        .arg("--model-keys-dir")
        .arg(dir.join("keys"))
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
    let models: SocketAddr = banner
        .split("models on ")
        .nth(1)
        .context("no model port in the banner")?
        .trim()
        .parse()?;

    let direct = Route {
        client: reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?)
            .build()?,
        base: format!("https://localhost:{}", up.port()),
    };
    let through = Route {
        client: reqwest::Client::builder().no_proxy().build()?,
        base: format!("http://{models}/bench"),
    };
    let routes = [&direct, &through];
    println!(
        "{} cores; provider (TLS) and client in this process, gateway {}\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        args.bin
    );
    println!("| figure | straight to the provider (TLS) | through the gateway's model port |");
    println!("|---|---|---|");
    let mut row = Vec::new();
    for r in routes {
        let (p50, p95) = head_time(r, args.samples).await?;
        row.push(format!("p50 {p50:.3} ms, p95 {p95:.3} ms"));
    }
    println!(
        "| request → answer's head, kept-alive connection ({} each) | {} |",
        args.samples,
        row.join(" | ")
    );
    let mut row = Vec::new();
    for r in routes {
        let (p50, p95) = event_delay(r, epoch).await?;
        row.push(format!("p50 {p50:.0} µs, p95 {p95:.0} µs"));
    }
    println!(
        "| delay of each streamed event (300, 5 ms apart) | {} |",
        row.join(" | ")
    );
    let mut row = Vec::new();
    for r in routes {
        row.push(format!("{:.0} MB/s", throughput(r, args.bytes).await?));
    }
    println!(
        "| event stream of {} MiB (1 KiB text events, usage read by the gateway) | {} |",
        args.bytes >> 20,
        row.join(" | ")
    );

    let idle = status_kib(pid, "VmRSS:");
    let mut held = Vec::new();
    for _ in 0..args.streams {
        // A client each: one connection per stream, as 200 agents would.
        let client = reqwest::Client::builder().no_proxy().build()?;
        let r = Route {
            client,
            base: through.base.clone(),
        };
        held.push(r.post("/v1/quiet").await?.bytes_stream());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = status_kib(pid, "VmRSS:");
    // The streams are read while the CPU is measured, as clients would.
    let reading = tokio::spawn(async move {
        let mut all = futures_util::stream::select_all(held);
        while all.next().await.is_some() {}
    });
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = cpu_ticks(pid);
    reading.abort();
    println!("\n| gateway | figure |\n|---|---|");
    println!("| RSS after the figures above | {} |", mib(idle));
    println!(
        "| RSS with {} open model streams (an event a second each) | {} |",
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
    let _ = gw.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
