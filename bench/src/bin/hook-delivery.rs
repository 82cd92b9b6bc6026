//! Hook delivery benchmark: outbox latency (task finished → receiver got the
//! POST) and delivery throughput (a full outbox drained to a local
//! receiver). Run through `bench/hooks.sh`, which starts a server that may
//! reach 127.0.0.1 and retries slowly. Prints figures; asserts nothing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    base_url: String,
    #[arg(long)]
    token_file: std::path::PathBuf,
    /// Deliveries queued for the throughput figure.
    #[arg(long, default_value_t = 200)]
    deliveries: usize,
    /// Tasks timed for the latency figure.
    #[arg(long, default_value_t = 30)]
    samples: usize,
}

#[derive(Default)]
struct Receiver {
    accept: AtomicBool,
    received: AtomicUsize,
    /// (arrival, finished_at from the payload) in ms since the epoch.
    latencies: Mutex<Vec<f64>>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

async fn serve(listener: TcpListener, rx: Arc<Receiver>) {
    while let Ok((mut s, _)) = listener.accept().await {
        let rx = rx.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16384];
            loop {
                let Ok(n) = s.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        let arrived = now_ms();
                        let ok = rx.accept.load(Ordering::SeqCst);
                        if ok {
                            rx.received.fetch_add(1, Ordering::SeqCst);
                            let body: Value =
                                serde_json::from_slice(&buf[end + 4..]).unwrap_or(Value::Null);
                            if let Some(f) = body["finished_at"].as_str() {
                                if let Ok(t) = chrono_ms(f) {
                                    rx.latencies.lock().unwrap().push(arrived - t);
                                }
                            }
                        }
                        let status = if ok { "200 OK" } else { "503 Busy" };
                        let _ = s
                            .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
                            .await;
                        return;
                    }
                }
            }
        });
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time like 2026-11-25T18:12:39.043Z.
fn chrono_ms(s: &str) -> Result<f64> {
    let (date, time) = s.trim_end_matches('Z').split_once('T').context("no T")?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap_or(0)).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap_or(0)).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let ms: f64 = format!("0.{frac}").parse::<f64>().unwrap_or(0.0) * 1000.0;
    Ok(((days * 86400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000) as f64 + ms)
}

fn stats(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (n={})",
        p(0.5),
        p(0.95),
        v[v.len() - 1],
        v.len()
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let token = std::fs::read_to_string(&args.token_file)?
        .trim()
        .to_string();
    let auth = format!("Bearer {token}");
    let base = args.base_url.trim_end_matches('/').to_string();
    let client = reqwest::Client::new();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    let rx = Arc::new(Receiver::default());
    tokio::spawn(serve(listener, rx.clone()));

    let create = |n: usize| {
        let (client, base, auth, hook_url) =
            (client.clone(), base.clone(), auth.clone(), hook_url.clone());
        async move {
            for _ in 0..n {
                loop {
                    let r = client
                        .post(format!("{base}/api/tasks"))
                        .header("authorization", &auth)
                        .json(&json!({"assistant": "shell", "prompt": "true", "hook": {"url": hook_url, "secret": "bench"}}))
                        .send()
                        .await?;
                    match r.status().as_u16() {
                        201 => break,
                        429 => tokio::time::sleep(Duration::from_millis(20)).await,
                        s => bail!(
                            "create answered {s}: {}",
                            r.text().await.unwrap_or_default()
                        ),
                    }
                }
            }
            Ok(())
        }
    };
    let wait_received = |target: usize, secs: u64| {
        let rx = rx.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(secs);
            while rx.received.load(Ordering::SeqCst) < target {
                if Instant::now() > deadline {
                    bail!(
                        "only {} of {target} deliveries arrived",
                        rx.received.load(Ordering::SeqCst)
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        }
    };

    // Latency: each task's final state → its POST at the receiver.
    rx.accept.store(true, Ordering::SeqCst);
    for i in 0..args.samples {
        create(1).await?;
        wait_received(i + 1, 30).await?;
    }
    let latency = stats(rx.latencies.lock().unwrap().clone());

    // Throughput: fill the outbox while the receiver refuses, then let it drain.
    rx.accept.store(false, Ordering::SeqCst);
    create(args.deliveries).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let pending = loop {
        let v: Value = client
            .get(format!(
                "{base}/api/hooks/deliveries?state=pending&limit=500"
            ))
            .header("authorization", &auth)
            .send()
            .await?
            .json()
            .await?;
        let list: Vec<String> = v["deliveries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|d| d["attempts"].as_i64() >= Some(1))
                    .filter_map(|d| d["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if list.len() >= args.deliveries {
            break list;
        }
        if Instant::now() > deadline {
            bail!("the outbox never filled ({} pending)", list.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    rx.accept.store(true, Ordering::SeqCst);
    let before = rx.received.load(Ordering::SeqCst);
    let t0 = Instant::now();
    for id in &pending {
        client
            .post(format!("{base}/api/hooks/deliveries/{id}/redeliver"))
            .header("authorization", &auth)
            .send()
            .await?;
    }
    wait_received(before + pending.len(), 120).await?;
    let secs = t0.elapsed().as_secs_f64();

    println!("\n| measurement | figure |\n|---|---|");
    println!("| outbox latency (task final state → receiver) | {latency} |");
    println!(
        "| delivery throughput (outbox of {} drained to a local receiver, incl. redeliver calls) | {:.0} deliveries/s |",
        pending.len(),
        pending.len() as f64 / secs
    );
    let cmd: Vec<String> = std::env::args().collect();
    println!("\ncommand: {}", cmd.join(" "));
    Ok(())
}
