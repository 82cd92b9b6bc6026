//! The file API against the real filesystem: confinement, streaming,
//! atomicity, read-only mode, zip extraction. Starts: `kube-coder serve`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Workspace;
use serde_json::{json, Value};

const SECRET: &str = "outside-secret-do-not-read";

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn put(ws: &Workspace, path: &str, body: Vec<u8>) -> (u16, Value) {
    let r = ws
        .client
        .put(format!("{}/api/files/content", ws.api))
        .query(&[("path", path)])
        .header("authorization", ws.bearer())
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn get(ws: &Workspace, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = ws
        .client
        .get(format!("{}/api/files/content", ws.api))
        .query(&[("path", path)])
        .header("authorization", ws.bearer());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn list(ws: &Workspace, path: &str) -> (u16, Value) {
    let r = ws
        .client
        .get(format!("{}/api/files", ws.api))
        .query(&[("path", path)])
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn watch(ws: &Workspace, path: &str) -> reqwest::Response {
    ws.client
        .get(format!("{}/api/files/watch", ws.api))
        .query(&[("path", path)])
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap()
}

async fn delete(ws: &Workspace, path: &str, recursive: bool) -> u16 {
    ws.client
        .delete(format!("{}/api/files", ws.api))
        .query(&[
            ("path", path),
            ("recursive", if recursive { "true" } else { "false" }),
        ])
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Every file below `dir` with its contents (links not followed).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            } else {
                out.insert(e.path(), b"<link>".to_vec());
            }
        }
    }
    out
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".kc-upload-") || n.contains(".kc-extract-"))
        .collect()
}

#[tokio::test]
async fn upload_and_download_round_trip_with_ranges_and_validators() {
    let ws = Workspace::start(&[]).await;
    let data = random_bytes(3 * 1024 * 1024 + 17, 7);
    let (s, v) = put(&ws, "data/blob.bin", data.clone()).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("not_found")),
        "parent must exist"
    );
    let r = ws
        .client
        .post(format!("{}/api/files/mkdir", ws.api))
        .header("authorization", ws.bearer())
        .json(&json!({"path": "data/deep/er", "parents": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (s, v) = put(&ws, "data/blob.bin", data.clone()).await;
    assert_eq!((s, v["size"].as_u64()), (201, Some(data.len() as u64)));
    // POST /api/files/upload answers the same.
    let r = ws
        .client
        .post(format!("{}/api/files/upload", ws.api))
        .query(&[("path", "data/second.bin")])
        .header("authorization", ws.bearer())
        .body(data[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let r = get(&ws, "data/blob.bin", &[]).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"blob.bin\""));
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    let etag = h["etag"].to_str().unwrap().to_string();
    let modified = h["last-modified"].to_str().unwrap().to_string();

    let r = get(&ws, "data/blob.bin", &[("range", "bytes=100-199")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-199/{}", data.len())
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[100..200]);
    let r = get(&ws, "data/blob.bin", &[("range", "bytes=-10")]).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[data.len() - 10..]);
    let r = get(&ws, "data/blob.bin", &[("range", "bytes=99999999-")]).await;
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", data.len())
    );
    // Megabytes, whole and as ranges that end inside a read: the server
    // reads into buffers it reuses and must still send exactly the bytes
    // asked for.
    let big: Vec<u8> = (0..(9 << 20) + 12_345)
        .map(|i: usize| (i * 7 % 251) as u8)
        .collect();
    let (s, _) = put(&ws, "data/big.bin", big.clone()).await;
    assert_eq!(s, 201);
    for (from, to) in [(1000, (8 << 20) + 777), (3, (5 << 20) + 1), (0, 4099)] {
        let range = format!("bytes={from}-{to}");
        let r = get(&ws, "data/big.bin", &[("range", &range)]).await;
        assert_eq!(r.status(), 206, "{range}");
        let got = r.bytes().await.unwrap();
        assert!(
            got.as_ref() == &big[from..=to],
            "{range}: {} bytes",
            got.len()
        );
    }
    let r = get(&ws, "data/big.bin", &[]).await;
    assert!(r.bytes().await.unwrap().as_ref() == &big[..]);
    std::fs::remove_file(ws.home().join("data/big.bin")).unwrap();
    let r = get(&ws, "data/blob.bin", &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(r.status(), 200);
    let r = get(&ws, "data/blob.bin", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), 304);
    let r = get(&ws, "data/blob.bin", &[("if-modified-since", &modified)]).await;
    assert_eq!(r.status(), 304);
    // If-Range with a stale validator: the whole file, not the range.
    let r = get(
        &ws,
        "data/blob.bin",
        &[("range", "bytes=0-9"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = ws
        .client
        .head(format!("{}/api/files/content", ws.api))
        .query(&[("path", "data/blob.bin")])
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-length"], data.len().to_string());

    // A UTF-8 name keeps its exact spelling in filename*.
    put(&ws, "data/résumé ✓.txt", b"cv".to_vec()).await;
    let r = get(&ws, "data/résumé ✓.txt", &[]).await;
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cd.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%9C%93.txt"),
        "{cd}"
    );

    // Listing: dirs first, sizes, modes; dot-files shown to authenticated users.
    std::fs::write(ws.home().join("data/.env"), "A=1").unwrap();
    let (s, l) = list(&ws, "data").await;
    assert_eq!(s, 200);
    let names: Vec<_> = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["deep", ".env", "blob.bin", "résumé ✓.txt", "second.bin"]
    );
    let blob = &l["entries"][2];
    assert_eq!(
        (
            blob["kind"].as_str(),
            blob["size"].as_u64(),
            blob["mode"].as_str()
        ),
        (Some("file"), Some(data.len() as u64), Some("0644"))
    );
    let (s, _) = list(&ws, "data/blob.bin").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn mkdir_rename_delete() {
    let ws = Workspace::start(&[]).await;
    let post = |route: &'static str, body: Value| {
        ws.client
            .post(format!("{}/api/files/{route}", ws.api))
            .header("authorization", ws.bearer())
            .json(&body)
            .send()
    };
    assert_eq!(
        post("mkdir", json!({"path": "a"})).await.unwrap().status(),
        201
    );
    assert_eq!(
        post("mkdir", json!({"path": "a"})).await.unwrap().status(),
        409
    );
    assert_eq!(
        post("mkdir", json!({"path": "x/y"}))
            .await
            .unwrap()
            .status(),
        404
    );
    put(&ws, "a/one.txt", b"1".to_vec()).await;
    put(&ws, "two.txt", b"2".to_vec()).await;
    // No silent overwrite.
    let r = post("rename", json!({"from": "two.txt", "to": "a/one.txt"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(std::fs::read(ws.home().join("a/one.txt")).unwrap(), b"1");
    let r = post(
        "rename",
        json!({"from": "two.txt", "to": "a/one.txt", "overwrite": true}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(std::fs::read(ws.home().join("a/one.txt")).unwrap(), b"2");
    assert!(!ws.home().join("two.txt").exists());
    let r = post("rename", json!({"from": "a", "to": "b"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post("rename", json!({"from": "", "to": "c"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Delete: never the root; a full directory only when asked.
    assert_eq!(delete(&ws, "", true).await, 400);
    assert_eq!(delete(&ws, "/", true).await, 400);
    assert_eq!(delete(&ws, ".", true).await, 400);
    assert_eq!(delete(&ws, "b", false).await, 409);
    assert_eq!(delete(&ws, "b", true).await, 204);
    assert!(!ws.home().join("b").exists());
    assert_eq!(delete(&ws, "b", true).await, 404);
    assert!(ws.home().exists());
}

struct Hostile {
    home: PathBuf,
    outside: PathBuf,
}

/// A home with links and tricks pointing at a sibling `outside` directory.
fn hostile_layout(ws: &Workspace) -> Hostile {
    let home = ws.home();
    let outside = ws.dir.path().join("outside");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    std::fs::write(outside.join("target.txt"), SECRET).unwrap();
    std::fs::write(outside.join("sub/deep.txt"), SECRET).unwrap();
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(home.join("dir/inner")).unwrap();
    std::fs::write(home.join("dir/ok.txt"), "inside").unwrap();
    symlink("../outside", home.join("link_out")).unwrap();
    symlink("../outside/secret.txt", home.join("link_secret")).unwrap();
    symlink(&outside, home.join("abs_link")).unwrap();
    symlink("/etc", home.join("etc_link")).unwrap();
    symlink("../../outside", home.join("dir/up2")).unwrap();
    symlink("loop_b", home.join("loop_a")).unwrap();
    symlink("loop_a", home.join("loop_b")).unwrap();
    symlink("chain2", home.join("chain1")).unwrap();
    symlink("dir/../link_out", home.join("chain2")).unwrap();
    symlink("../outside/missing.txt", home.join("dangling_out")).unwrap();
    // A hard link to a file outside (same filesystem).
    std::fs::hard_link(outside.join("target.txt"), home.join("hard")).unwrap();
    Hostile { home, outside }
}

const HOSTILE: &[&str] = &[
    "../outside/secret.txt",
    "/../outside/secret.txt",
    "../../../../../../etc/passwd",
    "dir/../../outside/secret.txt",
    "./../outside/secret.txt",
    "dir/inner/../../../outside/secret.txt",
    "..",
    "../",
    "..\\outside\\secret.txt",
    "%2e%2e/outside/secret.txt",
    "%252e%252e/outside/secret.txt",
    "....//outside/secret.txt",
    ".../outside/secret.txt",
    "~/../outside/secret.txt",
    "\u{ff0e}\u{ff0e}/outside/secret.txt",
    "/etc/passwd",
    "//etc/passwd",
    "/proc/self/root/etc/passwd",
    "link_out/secret.txt",
    "link_out/sub/deep.txt",
    "link_out",
    "link_out/",
    "link_out/.",
    "link_secret",
    "abs_link/secret.txt",
    "abs_link",
    "etc_link/passwd",
    "etc_link",
    "dir/up2/secret.txt",
    "dir/up2",
    "loop_a",
    "loop_a/x",
    "chain1/secret.txt",
    "chain1",
    "dangling_out",
    "secret.txt\0.png",
    "dir/ok.txt\0",
    "link_out/secret.txt/",
    "dir//..//..//outside/secret.txt",
    "link_out/../outside/secret.txt",
    "link_out/sub/../secret.txt",
    "abs_link/sub/deep.txt",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Download,
    List,
    Mkdir,
    RenameTo,
    RenameFrom,
    Upload,
    Delete,
    Watch,
}

/// Run one operation on a hostile path; describe anything wrong with the answer.
async fn hostile_op(ws: &Workspace, op: Op, p: &str) -> Option<String> {
    let (status, body) = match op {
        Op::Download => {
            let r = get(ws, p, &[]).await;
            let s = r.status().as_u16();
            (s, r.text().await.unwrap())
        }
        Op::List => {
            let (s, v) = list(ws, p).await;
            (s, v.to_string())
        }
        Op::Upload => {
            let (s, v) = put(ws, p, b"overwritten".to_vec()).await;
            (s, v.to_string())
        }
        Op::Delete => (delete(ws, p, true).await, String::new()),
        // A 200 is an open event stream: only the status matters.
        Op::Watch => (watch(ws, p).await.status().as_u16(), String::new()),
        Op::Mkdir | Op::RenameTo | Op::RenameFrom => {
            let (route, body) = match op {
                Op::Mkdir => (
                    "mkdir",
                    json!({"path": format!("{p}/newdir"), "parents": true}),
                ),
                Op::RenameTo => ("rename", json!({"from": "dir/ok.txt", "to": p})),
                _ => ("rename", json!({"from": p, "to": "dir/moved"})),
            };
            let r = ws
                .client
                .post(format!("{}/api/files/{route}", ws.api))
                .header("authorization", ws.bearer())
                .json(&body)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.text().await.unwrap())
        }
    };
    if body.contains(SECRET) || (op == Op::List && status == 200 && body.contains("secret.txt")) {
        return Some(format!("{op:?} {p:?} revealed the outside ({status})"));
    }
    if (op == Op::Download || op == Op::Watch) && status == 200 {
        return Some(format!("{op:?} {p:?} answered 200"));
    }
    if status >= 500 {
        return Some(format!("{op:?} {p:?} answered {status}: {body:.120}"));
    }
    None
}

/// Undo a legitimate rename inside the home so the next path starts clean.
fn restore_dir(home: &Path, p: &str) {
    let dir = home.join("dir");
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        panic!("renaming with {p:?} replaced `dir`");
    }
    let moved = dir.join("moved");
    if let Ok(m) = std::fs::symlink_metadata(&moved) {
        if m.is_dir() {
            std::fs::remove_dir_all(&moved).unwrap();
        } else {
            std::fs::remove_file(&moved).unwrap();
        }
    }
    if !dir.join("ok.txt").exists() {
        std::fs::write(dir.join("ok.txt"), "inside").unwrap();
    }
}

#[tokio::test]
async fn hostile_paths_never_read_or_write_outside_the_home() {
    assert!(HOSTILE.len() >= 40);
    let long = "n".repeat(300);
    let long_path = format!("dir/{long}");
    let mut paths: Vec<&str> = HOSTILE.to_vec();
    paths.push(&long_path);
    let mut problems = Vec::new();
    // Each kind of operation gets a fresh layout, so one path's legitimate
    // change (deleting a link inside the home) cannot weaken the next check.
    for op in [
        Op::Download,
        Op::List,
        Op::Mkdir,
        Op::RenameTo,
        Op::RenameFrom,
        Op::Upload,
        Op::Delete,
        Op::Watch,
    ] {
        let ws = Workspace::start(&[]).await;
        let h = hostile_layout(&ws);
        let before = snapshot(&h.outside);
        for p in &paths {
            if let Some(problem) = hostile_op(&ws, op, p).await {
                problems.push(problem);
            }
            if op == Op::RenameTo || op == Op::RenameFrom {
                restore_dir(&h.home, p);
            }
            if snapshot(&h.outside) != before {
                problems.push(format!("{op:?} {p:?} changed the outside directory"));
                break;
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn uploading_onto_a_hard_link_replaces_the_name_not_the_shared_file() {
    let ws = Workspace::start(&[]).await;
    let h = hostile_layout(&ws);
    let (s, _) = put(&ws, "hard", b"new content".to_vec()).await;
    assert_eq!(s, 201);
    assert_eq!(
        std::fs::read(h.outside.join("target.txt")).unwrap(),
        SECRET.as_bytes()
    );
    assert_eq!(std::fs::read(h.home.join("hard")).unwrap(), b"new content");
}

#[tokio::test]
async fn an_existing_symlink_at_the_upload_target_is_replaced_not_followed() {
    let ws = Workspace::start(&[]).await;
    let h = hostile_layout(&ws);
    // Weakness 7 of the old implementation: `link_secret` points outside.
    let (s, _) = put(&ws, "link_secret", b"mine".to_vec()).await;
    assert_eq!(s, 201);
    assert_eq!(
        std::fs::read_to_string(h.outside.join("secret.txt")).unwrap(),
        SECRET
    );
    let meta = std::fs::symlink_metadata(h.home.join("link_secret")).unwrap();
    assert!(meta.is_file(), "the link was replaced by a regular file");
    // Deleting a link removes the link, not its target.
    assert_eq!(delete(&ws, "link_out", true).await, 204);
    assert!(h.outside.join("sub/deep.txt").exists());
}

#[tokio::test]
async fn a_directory_swapped_for_a_link_mid_request_never_escapes() {
    let ws = Workspace::start(&[]).await;
    let h = hostile_layout(&ws);
    let before = snapshot(&h.outside);
    let swap = h.home.join("swap");
    std::fs::create_dir(&swap).unwrap();
    std::fs::write(swap.join("secret.txt"), "inside copy").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (swap, outside, stop) = (swap.clone(), h.outside.clone(), stop.clone());
        let real = h.home.join("swap_real");
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Directory → symlink to outside → directory, over and over.
                let _ = std::fs::rename(&swap, &real);
                let _ = std::os::unix::fs::symlink(&outside, &swap);
                let _ = std::fs::remove_file(&swap);
                let _ = std::fs::rename(&real, &swap);
                n += 1;
            }
            n
        })
    };
    let mut leaked = 0;
    for i in 0..300 {
        let r = get(&ws, "swap/secret.txt", &[]).await;
        if r.text().await.unwrap().contains(SECRET) {
            leaked += 1;
        }
        put(&ws, "swap/secret.txt", format!("write {i}").into_bytes()).await;
        put(&ws, "swap/new.txt", b"x".to_vec()).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    assert!(flips > 100, "the race was exercised ({flips} swaps)");
    assert_eq!(leaked, 0);
    assert_eq!(snapshot(&h.outside), before);
}

#[tokio::test]
async fn interrupted_and_oversize_uploads_leave_the_old_file_and_no_temp() {
    let ws = Workspace::start(&["--max-upload-bytes", "1048576"]).await;
    put(&ws, "keep.txt", b"original".to_vec()).await;
    // Oversize with a Content-Length: refused before reading. A client that
    // waits for `100 Continue` (as curl does) gets the answer cleanly.
    let addr = ws.api.trim_start_matches("http://").to_string();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "PUT /api/files/content?path=keep.txt HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n\r\n",
        ws.bearer()
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut sock, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("upload_too_large")
            && answer.to_ascii_lowercase().contains("connection: close")
    );
    drop(sock);
    // A client that sends anyway sees 413 or, if the server closed first, a reset.
    match ws
        .client
        .put(format!("{}/api/files/content?path=keep.txt", ws.api))
        .header("authorization", ws.bearer())
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
    {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    // Oversize without a Content-Length (chunked): refused while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b'y'; 64 * 1024])).collect();
    let r = ws
        .client
        .put(format!("{}/api/files/content?path=keep.txt", ws.api))
        .header("authorization", ws.bearer())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    // A client that disconnects halfway.
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "PUT /api/files/content?path=keep.txt HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nContent-Length: 900000\r\n\r\n",
        ws.bearer()
    )
    .unwrap();
    sock.write_all(&vec![b'z'; 300_000]).unwrap();
    sock.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(sock);
    // Give the server a moment to notice and clean up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !temp_files(&ws.home()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "temp left: {:?}",
            temp_files(&ws.home())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read(ws.home().join("keep.txt")).unwrap(),
        b"original"
    );
    let r = get(&ws, "keep.txt", &[]).await;
    assert_eq!(r.text().await.unwrap(), "original");
}

#[tokio::test]
async fn a_full_disk_leaves_the_old_file_and_no_temp() {
    // A real full filesystem: a 4 MiB tmpfs as the workspace home.
    let mnt = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test mounts a small tmpfs and needs root (CI and `make test` run as root)"
    );
    let _mount = common::Mount(mnt.path().to_path_buf());
    let home = mnt.path().to_str().unwrap().to_string();
    let ws = Workspace::start(&["--home", &home]).await;
    let first = random_bytes(1024 * 1024, 3);
    let (s, _) = put(&ws, "keep.bin", first.clone()).await;
    assert_eq!(s, 201);
    let (s, v) = put(&ws, "keep.bin", vec![b'f'; 6 * 1024 * 1024]).await;
    assert_eq!((s, v["code"].as_str()), (507, Some("disk_full")), "{v}");
    assert_eq!(std::fs::read(mnt.path().join("keep.bin")).unwrap(), first);
    assert!(temp_files(mnt.path()).is_empty());
    // And the space is free again for a normal upload.
    let (s, _) = put(&ws, "keep.bin", b"small".to_vec()).await;
    assert_eq!(s, 201);
    drop(ws);
}

#[tokio::test]
async fn read_only_serves_reads_refuses_writes_and_hides_dot_files() {
    let ws = Workspace::start(&["--read-only", "--auth", "none"]).await;
    let home = ws.home();
    std::fs::write(home.join("readme.txt"), "hello").unwrap();
    std::fs::write(home.join(".env"), "SECRET=1").unwrap();
    std::fs::create_dir(home.join(".git")).unwrap();
    std::fs::write(home.join(".git/config"), "x").unwrap();
    let (s, l) = list(&ws, "").await;
    assert_eq!(s, 200);
    let names: Vec<_> = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("readme.txt")]);
    assert_eq!(
        get(&ws, "readme.txt", &[]).await.text().await.unwrap(),
        "hello"
    );
    for p in [".env", ".git/config", "sub/../.env"] {
        let s = get(&ws, p, &[]).await.status().as_u16();
        assert!(s == 404 || s == 400, "{p}: {s}");
    }
    assert_eq!(list(&ws, ".git").await.0, 404);
    // Links to hidden files or into hidden folders are hidden too: what
    // counts is where a path really leads, every component of it.
    std::fs::create_dir(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_rsa"), "PRIVATE KEY").unwrap();
    std::fs::create_dir(home.join("pub")).unwrap();
    for (link, target) in [
        ("key", ".ssh/id_rsa"),
        ("keys", ".ssh"),
        ("pub/up", "../.ssh"),
        ("gitcfg", "./.git/config"),
    ] {
        std::os::unix::fs::symlink(target, home.join(link)).unwrap();
    }
    for p in ["key", "keys/id_rsa", "pub/up/id_rsa", "gitcfg"] {
        let r = get(&ws, p, &[]).await;
        let s = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(s, 404, "{p}: {body}");
        assert!(!body.contains("PRIVATE"), "{p}");
    }
    for p in ["keys", "pub/up"] {
        assert_eq!(list(&ws, p).await.0, 404, "list {p}");
        assert_eq!(watch(&ws, p).await.status(), 404, "watch {p}");
    }
    std::os::unix::fs::symlink("readme.txt", home.join("plain-link")).unwrap();
    assert_eq!(
        get(&ws, "plain-link", &[]).await.text().await.unwrap(),
        "hello",
        "a link to a visible file still works"
    );
    // The public dashboard listener too.
    let r = ws
        .client
        .get(format!("{}/api/files/content?path=.env", ws.dashboard))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (s, v) = put(&ws, "new.txt", b"x".to_vec()).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("read_only")));
    assert_eq!(delete(&ws, "readme.txt", false).await, 403);
    for (route, body) in [
        ("mkdir", json!({"path": "d"})),
        ("rename", json!({"from": "readme.txt", "to": "x"})),
        ("extract", json!({"path": "a.zip", "dest": "d"})),
    ] {
        let r = ws
            .client
            .post(format!("{}/api/files/{route}", ws.api))
            .header("authorization", ws.bearer())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{route}");
    }
    assert!(!home.join("new.txt").exists() && home.join("readme.txt").exists());
}

/// Writes a test archive at the given path.
type ZipBuilder = Box<dyn Fn(&Path)>;

fn make_zip(path: &Path, entries: &[(&str, &[u8])], symlink: Option<(&str, &str)>) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        if name.ends_with('/') {
            z.add_directory(*name, opts).unwrap();
        } else {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
    }
    if let Some((name, target)) = symlink {
        z.add_symlink(name, target, opts).unwrap();
    }
    z.finish().unwrap();
}

async fn extract(ws: &Workspace, path: &str, dest: &str) -> (u16, Value) {
    let r = ws
        .client
        .post(format!("{}/api/files/extract", ws.api))
        .header("authorization", ws.bearer())
        .json(&json!({"path": path, "dest": dest}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn zip_extraction_is_limited_and_all_or_nothing() {
    let ws = Workspace::start(&[
        "--zip-max-entries",
        "5",
        "--zip-max-bytes",
        "2000000",
        "--zip-max-ratio",
        "50",
    ])
    .await;
    let home = ws.home();
    let data = random_bytes(10_000, 9);
    make_zip(
        &home.join("good.zip"),
        &[
            ("src/", b""),
            ("src/main.rs", b"fn main() {}"),
            ("data.bin", &data),
        ],
        None,
    );
    let (s, v) = extract(&ws, "good.zip", "out").await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["entries"], 3);
    assert_eq!(
        std::fs::read(home.join("out/src/main.rs")).unwrap(),
        b"fn main() {}"
    );
    assert_eq!(std::fs::read(home.join("out/data.bin")).unwrap(), data);
    let (s, v) = extract(&ws, "good.zip", "out").await;
    assert_eq!((s, v["code"].as_str()), (409, Some("exists")));

    let bomb = vec![0u8; 1_500_000];
    let cases: Vec<(&str, ZipBuilder, &str)> = vec![
        (
            "dotdot",
            Box::new(|p: &Path| make_zip(p, &[("ok.txt", b"1"), ("../evil.txt", b"x")], None)),
            "..`",
        ),
        (
            "absolute",
            Box::new(|p: &Path| make_zip(p, &[("/tmp/evil.txt", b"x")], None)),
            "absolute",
        ),
        (
            "nested dotdot",
            Box::new(|p: &Path| make_zip(p, &[("a/../../evil.txt", b"x")], None)),
            "absolute",
        ),
        (
            "symlink",
            Box::new(|p: &Path| make_zip(p, &[("ok.txt", b"1")], Some(("link", "/etc/passwd")))),
            "symbolic link",
        ),
        (
            "too many",
            Box::new(|p: &Path| {
                let e: Vec<(String, Vec<u8>)> =
                    (0..6).map(|i| (format!("f{i}"), vec![b'a'])).collect();
                let refs: Vec<(&str, &[u8])> =
                    e.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
                make_zip(p, &refs, None)
            }),
            "6 entries",
        ),
        (
            "ratio bomb",
            Box::new(move |p: &Path| make_zip(p, &[("zeros", &bomb)], None)),
            "expands more than 50:1",
        ),
        (
            "too big",
            Box::new(move |p: &Path| {
                let big = random_bytes(2_100_000, 5);
                make_zip(p, &[("big", &big)], None)
            }),
            "limit is 2000000",
        ),
        (
            "not a zip",
            Box::new(|p: &Path| std::fs::write(p, "plain text").unwrap()),
            "not a readable zip",
        ),
    ];
    for (label, build, mentions) in cases {
        build(&home.join("bad.zip"));
        let (s, v) = extract(&ws, "bad.zip", "bad_out").await;
        assert_eq!(s, 400, "{label}: {v}");
        assert_eq!(v["code"], "zip_refused", "{label}");
        assert!(
            v["error"].as_str().unwrap().contains(mentions),
            "{label}: {v}"
        );
        assert!(!home.join("bad_out").exists(), "{label}: partial output");
        assert!(!ws.dir.path().join("evil.txt").exists() && !Path::new("/tmp/evil.txt").exists());
        assert!(temp_files(&home).is_empty(), "{label}: temp left");
    }
}

/// A zip whose entries declare 200 bytes each but inflate to 200 KB: the
/// declared sizes pass every check made before extraction.
fn lying_zip(path: &Path, entries: usize) {
    make_zip(
        path,
        &(0..entries)
            .map(|i| (format!("e{i}"), vec![0u8; 200_000]))
            .collect::<Vec<_>>()
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect::<Vec<_>>(),
        None,
    );
    let mut bytes = std::fs::read(path).unwrap();
    let patch = |bytes: &mut Vec<u8>, sig: [u8; 4], offset: usize| {
        let mut i = 0;
        while i + offset + 4 <= bytes.len() {
            if bytes[i..i + 4] == sig {
                bytes[i + offset..i + offset + 4].copy_from_slice(&200u32.to_le_bytes());
            }
            i += 1;
        }
    };
    patch(&mut bytes, [0x50, 0x4b, 0x03, 0x04], 22); // local headers
    patch(&mut bytes, [0x50, 0x4b, 0x01, 0x02], 24); // central directory
    std::fs::write(path, bytes).unwrap();
}

/// Declared sizes can lie: extraction counts what really comes out and
/// stops at the ratio, even far below the total limit.
#[tokio::test]
async fn a_zip_that_lies_about_its_sizes_stops_at_the_real_ratio() {
    let ws = Workspace::start(&["--zip-max-ratio", "100"]).await;
    let home = ws.home();
    lying_zip(&home.join("liar.zip"), 100);
    let archive = std::fs::metadata(home.join("liar.zip")).unwrap().len();
    assert!(archive < 40_000, "the test archive is {archive} bytes");
    let (s, v) = extract(&ws, "liar.zip", "out").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("zip_refused")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("100:1"), "{v}");
    assert!(!home.join("out").exists(), "partial output");
    assert!(temp_files(&home).is_empty(), "temp left");
}

/// A named pipe (or socket, or device) in the home is refused at once by
/// every route that would open it; hundreds of such requests leave the
/// server answering (an open() of a pipe used to block a pool thread each).
#[tokio::test]
async fn special_files_are_refused_without_blocking() {
    let ws = Workspace::start(&[]).await;
    let home = ws.home();
    for name in ["pipe", "pipe.zip"] {
        let ok = std::process::Command::new("mkfifo")
            .arg(home.join(name))
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo");
    }
    std::os::unix::net::UnixListener::bind(home.join("sock")).unwrap();
    let quick = Duration::from_secs(5);
    for p in ["pipe", "sock"] {
        let r = tokio::time::timeout(quick, get(&ws, p, &[]))
            .await
            .expect("download blocked");
        assert_eq!(r.status(), 400, "{p}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "special_file", "{v}");
        let head = ws
            .client
            .head(format!("{}/api/files/content", ws.api))
            .query(&[("path", p)])
            .header("authorization", ws.bearer());
        let r = tokio::time::timeout(quick, head.send())
            .await
            .expect("HEAD blocked");
        assert_eq!(r.unwrap().status(), 400, "HEAD {p}");
        let (s, v) = tokio::time::timeout(quick, put(&ws, p, b"x".to_vec()))
            .await
            .expect("upload blocked");
        assert_eq!((s, v["code"].as_str()), (400, Some("special_file")), "{v}");
    }
    let (s, v) = tokio::time::timeout(quick, extract(&ws, "pipe.zip", "out"))
        .await
        .expect("extract blocked");
    assert_eq!((s, v["code"].as_str()), (400, Some("special_file")), "{v}");
    let (s, v) = list(&ws, "").await;
    assert_eq!(s, 200, "{v}");
    // Many at once, then the rest of the API still answers.
    let many = (0..200).map(|_| get(&ws, "pipe", &[]));
    let answers = tokio::time::timeout(
        Duration::from_secs(30),
        futures_util::future::join_all(many),
    )
    .await
    .expect("downloads of a pipe hung");
    assert!(answers.iter().all(|r| r.status() == 400));
    put(&ws, "after.txt", b"still here".to_vec()).await;
    let r = tokio::time::timeout(quick, get(&ws, "after.txt", &[]))
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "still here");
    let (s, _) = tokio::time::timeout(quick, ws.api_get("/api/tasks"))
        .await
        .unwrap();
    assert_eq!(s, 200);
    // The pipe itself is a name like any other: it can be deleted.
    assert_eq!(delete(&ws, "pipe", false).await, 204);
}

/// A multipart form is refused with 415 and how to send the file itself,
/// instead of being stored with its boundaries around the file.
#[tokio::test]
async fn form_uploads_are_refused_with_how_to_send_the_file() {
    let ws = Workspace::start(&[]).await;
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nhello\r\n--XyZ--\r\n";
    for (method, route) in [("PUT", "content"), ("POST", "upload")] {
        let r = ws
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/api/files/{route}", ws.api),
            )
            .query(&[("path", "a.txt")])
            .header("authorization", ws.bearer())
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{method} {route}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "unsupported_media_type");
        assert!(
            v["error"].as_str().unwrap().contains("--data-binary"),
            "{v}"
        );
        assert!(!ws.home().join("a.txt").exists(), "a form was stored");
    }
    // The file's own bytes, with any other type, are taken as they are.
    let (s, _) = put(&ws, "a.txt", b"hello".to_vec()).await;
    assert_eq!(s, 201);
    assert_eq!(std::fs::read(ws.home().join("a.txt")).unwrap(), b"hello");
}

/// Reads one watch stream's events as they come.
struct WatchStream(tokio::sync::mpsc::UnboundedReceiver<common::SseEvent>);

impl WatchStream {
    fn new(resp: reqwest::Response) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(common::read_sse(resp, Duration::from_secs(60), move |ev| {
            tx.send(ev.clone()).is_err()
        }));
        Self(rx)
    }

    /// The next event, or `None` when none comes within 10 s or the stream ended.
    async fn next(&mut self) -> Option<common::SseEvent> {
        tokio::time::timeout(Duration::from_secs(10), self.0.recv())
            .await
            .ok()
            .flatten()
    }

    /// Events that arrive within `quiet` of each other, until none does.
    async fn drain(&mut self, quiet: Duration) -> Vec<common::SseEvent> {
        let mut out = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout(quiet, self.0.recv()).await {
            out.push(ev);
        }
        out
    }
}

#[tokio::test]
async fn a_watched_folder_reports_changes_made_outside_the_api_until_it_is_gone() {
    let ws = Workspace::start(&[]).await;
    let proj = ws.home().join("proj");
    std::fs::create_dir(&proj).unwrap();
    std::fs::write(proj.join("notes.txt"), "x").unwrap();

    let r = watch(&ws, "proj").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut events = WatchStream::new(r);
    let ready = events.next().await.expect("ready");
    assert_eq!(ready.event, "ready");
    assert_eq!(ready.json(), json!({"path": "proj"}));

    // Listing and downloading (what a viewer does on each notice) are not
    // changes, or every notice would cause the next one.
    assert_eq!(list(&ws, "proj").await.0, 200);
    assert_eq!(get(&ws, "proj/notes.txt", &[]).await.status(), 200);
    assert!(events.drain(Duration::from_millis(500)).await.is_empty());

    // As an agent's shell would: straight to the disk.
    std::fs::write(proj.join("main.rs"), "fn main() {}").unwrap();
    let ev = events.next().await.expect("a change notice");
    assert_eq!(
        (ev.event.as_str(), ev.json()),
        ("changed", json!({"path": "proj"}))
    );

    // A burst (a build rewriting many files) becomes a few notices, the
    // last one after the last change.
    for i in 0..300 {
        std::fs::write(proj.join(format!("gen{i}.o")), [0u8; 64]).unwrap();
    }
    let burst = events.drain(Duration::from_millis(1500)).await;
    assert!(!burst.is_empty(), "the burst was not reported");
    assert!(burst.len() < 100, "300 writes gave {} notices", burst.len());
    assert!(burst.iter().all(|e| e.event == "changed"));

    // Changes in a subfolder touch only the subfolder, not this view.
    std::fs::create_dir(proj.join("sub")).unwrap();
    events.drain(Duration::from_millis(500)).await;
    std::fs::write(proj.join("sub/deep.txt"), "x").unwrap();
    assert!(events.drain(Duration::from_millis(500)).await.is_empty());

    // The folder deleted: `gone`, then the stream ends and its slot is free.
    std::fs::remove_dir_all(&proj).unwrap();
    let rest = events.drain(Duration::from_secs(2)).await;
    assert_eq!(
        rest.last().map(|e| e.event.as_str()),
        Some("gone"),
        "{rest:?}"
    );
    assert!(events.next().await.is_none(), "the stream ends after gone");
    let mut streams = String::new();
    for _ in 0..50 {
        streams = ws.metrics_text().await;
        if streams.contains("kube_coder_sse_streams 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(streams.contains("kube_coder_sse_streams 0"));
}

#[tokio::test]
async fn watching_refuses_files_missing_folders_and_hidden_ones_in_read_only_mode() {
    let ws = Workspace::start(&[]).await;
    std::fs::write(ws.home().join("f.txt"), "x").unwrap();
    for (path, status, code) in [
        ("f.txt", 400, "not_a_directory"),
        ("missing", 404, "not_found"),
        ("../x", 400, "invalid_path"),
    ] {
        let r = watch(&ws, path).await;
        assert_eq!(r.status(), status, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], code, "{path}: {v}");
    }
    let r = ws
        .client
        .get(format!("{}/api/files/watch?path=.&depth=2", ws.api))
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown parameters are refused");

    let ro = Workspace::start(&["--read-only", "--auth", "none"]).await;
    std::fs::create_dir(ro.home().join(".git")).unwrap();
    assert_eq!(watch(&ro, ".git").await.status(), 404);
    // The home is watchable; a change to a hidden entry is not news there.
    let r = watch(&ro, "").await;
    assert_eq!(r.status(), 200);
    let mut events = WatchStream::new(r);
    assert_eq!(events.next().await.expect("ready").event, "ready");
    std::fs::write(ro.home().join(".env"), "SECRET=1").unwrap();
    assert!(events.drain(Duration::from_millis(700)).await.is_empty());
    std::fs::write(ro.home().join("readme.txt"), "hi").unwrap();
    assert_eq!(events.next().await.expect("changed").event, "changed");
}

/// The editor's save: a conditional upload with the ETag it read. A change
/// made on disk since then is not overwritten (412), nothing is written,
/// and the answer names the new ETag; `If-None-Match: *` only creates.
#[tokio::test]
async fn conditional_uploads_refuse_to_overwrite_a_newer_file() {
    let ws = Workspace::start(&[]).await;
    let send = |headers: Vec<(&'static str, String)>, body: &'static str| {
        let mut req = ws
            .client
            .put(format!("{}/api/files/content?path=notes.md", ws.api))
            .header("authorization", ws.bearer())
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let etag = r
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_string());
            (status, etag, r.json::<Value>().await.unwrap())
        }
    };
    // Create only if absent: once, then refused.
    let (s, first, v) = send(vec![("if-none-match", "*".into())], "one\n").await;
    assert_eq!(s, 201, "{v}");
    let first = first.expect("an ETag");
    assert_eq!(v["etag"], first.as_str());
    let (s, _, v) = send(vec![("if-none-match", "*".into())], "two\n").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (412, Some("precondition_failed")),
        "{v}"
    );
    // The ETag a download shows is the one a save must send.
    let r = get(&ws, "notes.md", &[]).await;
    assert_eq!(r.headers()["etag"].to_str().unwrap(), first);
    let (s, second, v) = send(vec![("if-match", first.clone())], "two\n").await;
    assert_eq!(s, 201, "{v}");
    let second = second.unwrap();
    assert_ne!(second, first);
    // Someone else writes the file: a save with the old ETag is refused,
    // their content stays, and the message names the current ETag.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(ws.home().join("notes.md"), "theirs\n").unwrap();
    let (s, _, v) = send(vec![("if-match", second.clone())], "mine\n").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (412, Some("precondition_failed")),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("changed since it was read"),
        "{v}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.home().join("notes.md")).unwrap(),
        "theirs\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(ws.home())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(leftovers, ["notes.md"], "no temp file left");
    // `*` matches any existing file; a plain save overwrites.
    let (s, _, _) = send(vec![("if-match", "*".into())], "mine\n").await;
    assert_eq!(s, 201);
    std::fs::remove_file(ws.home().join("notes.md")).unwrap();
    let (s, _, v) = send(vec![("if-match", second)], "gone?\n").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (412, Some("precondition_failed")),
        "{v}"
    );
    assert!(!ws.home().join("notes.md").exists());
}
