//! The SSRF guard, table-driven, through a resolver the test controls; and
//! the pinned client against real receivers on 127.0.0.1 (DNS rebinding,
//! redirects, proxy variables).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use workspace::hooks::ssrf::{Guard, Resolve, SsrfError};

/// DNS as the test says: a fixed map.
struct MapResolver {
    map: HashMap<&'static str, Result<Vec<IpAddr>, String>>,
}

impl MapResolver {
    fn new(entries: &[(&'static str, &[&str])]) -> Self {
        let mut map = HashMap::new();
        for (host, ips) in entries {
            map.insert(*host, Ok(ips.iter().map(|s| s.parse().unwrap()).collect()));
        }
        map.insert("nxdomain.test", Err("no such domain".to_string()));
        Self { map }
    }
}

impl Resolve for MapResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, String>> + Send + 'a>> {
        // `name.` is the absolute spelling of `name`.
        let r = self
            .map
            .get(host.strip_suffix('.').unwrap_or(host))
            .cloned()
            .unwrap_or_else(|| Err(format!("unknown test host {host}")));
        Box::pin(async move { r })
    }
}

fn dns() -> Arc<MapResolver> {
    Arc::new(MapResolver::new(&[
        ("public.test", &["93.184.216.34"]),
        ("v6public.test", &["2606:4700:4700::1111"]),
        ("both.test", &["93.184.216.34", "2606:4700:4700::1111"]),
        ("private.test", &["10.1.2.3"]),
        ("loop.test", &["127.0.0.1"]),
        ("meta.test", &["169.254.169.254"]),
        ("cgnat.test", &["100.100.1.1"]),
        ("mixed.test", &["93.184.216.34", "192.168.1.10"]),
        ("ula.test", &["fd12:3456::1"]),
        ("mapped.test", &["::ffff:10.0.0.1"]),
        ("empty.test", &[]),
    ]))
}

enum Want {
    Allowed,
    /// Refused; the error names this.
    Refused(&'static str),
}
use Want::*;

const TABLE: &[(&str, Want)] = &[
    // Allowed: public addresses, by name and literally.
    ("http://public.test/hook", Allowed),
    ("https://public.test:8443/a?b=c", Allowed),
    ("https://v6public.test/", Allowed),
    ("https://both.test/", Allowed),
    ("http://93.184.216.34/", Allowed),
    ("http://[2606:4700:4700::1111]/", Allowed),
    ("https://PUBLIC.TEST/", Allowed),
    ("http://public.test./trailing-dot", Allowed),
    ("http://8.8.8.8:53/", Allowed),
    ("http://1.1.1.1/", Allowed),
    ("http://[2002:5db8:d822::1]/", Allowed), // 6to4 of a public IPv4
    ("http://[64:ff9b::5db8:d822]/", Allowed), // NAT64 of a public IPv4
    // Schemes, credentials, malformed.
    ("ftp://public.test/", Refused("http or https")),
    ("file:///etc/passwd", Refused("http or https")),
    ("gopher://public.test/", Refused("http or https")),
    ("javascript:alert(1)", Refused("http or https")),
    (
        "http://user:pw@public.test/",
        Refused("user name or password"),
    ),
    ("http://user@public.test/", Refused("user name or password")),
    ("not a url", Refused("not a valid URL")),
    ("http://", Refused("not a valid URL")),
    ("", Refused("not a valid URL")),
    ("http://[::1/", Refused("not a valid URL")),
    // Names that resolve badly.
    ("http://nxdomain.test/", Refused("could not be resolved")),
    ("http://empty.test/", Refused("no addresses")),
    ("http://private.test/", Refused("private (10.0.0.0/8)")),
    ("http://loop.test/", Refused("loopback")),
    ("http://meta.test/latest/meta-data", Refused("link-local")),
    ("http://cgnat.test/", Refused("carrier-grade NAT")),
    ("http://mixed.test/", Refused("private (192.168.0.0/16)")),
    ("http://ula.test/", Refused("unique-local")),
    ("http://mapped.test/", Refused("IPv4-mapped")),
    // IPv4 literals in every range.
    ("http://127.0.0.1/", Refused("loopback")),
    ("http://127.255.255.254/", Refused("loopback")),
    ("http://10.0.0.1/", Refused("private (10.0.0.0/8)")),
    ("http://172.16.0.1/", Refused("private (172.16.0.0/12)")),
    ("http://172.31.255.255/", Refused("private (172.16.0.0/12)")),
    ("http://192.168.0.1/", Refused("private (192.168.0.0/16)")),
    (
        "http://169.254.169.254/latest/meta-data/",
        Refused("link-local"),
    ),
    ("http://100.64.0.1/", Refused("carrier-grade NAT")),
    ("http://100.127.255.254/", Refused("carrier-grade NAT")),
    ("http://0.0.0.0/", Refused("0.0.0.0/8")),
    ("http://192.0.2.1/", Refused("documentation")),
    ("http://198.51.100.7/", Refused("documentation")),
    ("http://203.0.113.9/", Refused("documentation")),
    ("http://198.18.0.1/", Refused("benchmarking")),
    ("http://224.0.0.1/", Refused("multicast")),
    ("http://255.255.255.255/", Refused("reserved")),
    ("http://240.0.0.1/", Refused("reserved")),
    ("http://192.0.0.170/", Refused("IETF protocol")),
    ("http://192.88.99.1/", Refused("6to4 relay")),
    // Odd IPv4 spellings, normalised before the check.
    ("http://2130706433/", Refused("loopback")),
    ("http://0x7f000001/", Refused("loopback")),
    ("http://0x7f.0.0.1/", Refused("loopback")),
    ("http://0177.0.0.1/", Refused("loopback")),
    ("http://017700000001/", Refused("loopback")),
    ("http://127.1/", Refused("loopback")),
    ("http://127.0.1/", Refused("loopback")),
    ("http://0/", Refused("0.0.0.0/8")),
    ("http://0xa9.0xfe.0xa9.0xfe/", Refused("link-local")),
    ("http://2852039166/", Refused("link-local")),
    ("http://012.0.0.1/", Refused("private (10.0.0.0/8)")),
    ("http://%31%32%37.0.0.1/", Refused("loopback")),
    ("http://127.0.0.1.:8080/", Refused("loopback")),
    // IPv6 literals.
    ("http://[::1]/", Refused("loopback")),
    ("http://[::]/", Refused("unspecified")),
    ("http://[fc00::1]/", Refused("unique-local")),
    ("http://[fd00:ec2::254]/", Refused("unique-local")),
    ("http://[fe80::1]/", Refused("link-local")),
    ("http://[fec0::1]/", Refused("site-local")),
    ("http://[ff02::1]/", Refused("multicast")),
    ("http://[2001:db8::1]/", Refused("documentation")),
    ("http://[::ffff:127.0.0.1]/", Refused("IPv4-mapped")),
    ("http://[::ffff:7f00:1]/", Refused("IPv4-mapped")),
    ("http://[::ffff:169.254.169.254]/", Refused("IPv4-mapped")),
    ("http://[::127.0.0.1]/", Refused("IPv4-compatible")),
    ("http://[2002:7f00:1::]/", Refused("6to4")),
    ("http://[2002:a9fe:a9fe::]/", Refused("6to4")),
    ("http://[64:ff9b::7f00:1]/", Refused("NAT64")),
    ("http://[64:ff9b::a9fe:a9fe]/", Refused("NAT64")),
    ("http://[64:ff9b:1::1]/", Refused("local-use NAT64")),
    (
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        Refused("Teredo"),
    ),
    ("http://[100::1]/", Refused("discard")),
    ("http://[::2]/", Refused("IPv4-compatible")),
    ("http://[4000::1]/", Refused("global unicast")),
];

#[tokio::test]
async fn every_url_in_the_table_is_allowed_or_refused_with_its_reason() {
    assert!(TABLE.len() >= 60, "{} URLs", TABLE.len());
    let guard = Guard::new(dns(), false);
    let mut wrong = Vec::new();
    for (url, want) in TABLE {
        let got = guard.check(url).await;
        match (want, &got) {
            (Allowed, Ok(_)) => {}
            (Refused(why), Err(e)) if e.to_string().contains(why) => {}
            _ => wrong.push(format!("{url}: got {got:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn allow_internal_lifts_only_the_range_check() {
    let guard = Guard::new(dns(), true);
    assert!(guard.check("http://127.0.0.1:9/").await.is_ok());
    assert!(guard.check("http://meta.test/").await.is_ok());
    assert!(guard.check("http://[::1]/").await.is_ok());
    // Still: schemes, credentials, resolution.
    assert!(matches!(
        guard.check("file:///etc/passwd").await,
        Err(SsrfError::Scheme(_))
    ));
    assert!(matches!(
        guard.check("http://u:p@loop.test/").await,
        Err(SsrfError::Credentials)
    ));
    assert!(matches!(
        guard.check("http://nxdomain.test/").await,
        Err(SsrfError::Resolve { .. })
    ));
}

/// A resolver that answers differently each time, as a rebinding attacker's DNS does.
struct Rebinding {
    answers: Mutex<Vec<IpAddr>>,
    calls: AtomicUsize,
}

impl Resolve for Rebinding {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, String>> + Send + 'a>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut a = self.answers.lock().unwrap();
        let ip = if a.len() > 1 { a.remove(0) } else { a[0] };
        Box::pin(async move { Ok(vec![ip]) })
    }
}

#[tokio::test]
async fn the_checked_address_is_the_one_connected_to_so_rebinding_fails() {
    // First answer public, every later one loopback: the guard asks once and
    // pins the public address.
    let dns = Arc::new(Rebinding {
        answers: Mutex::new(vec![
            "93.184.216.34".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ]),
        calls: AtomicUsize::new(0),
    });
    let checked = Guard::new(dns.clone(), false)
        .check("http://rebind.test:8080/x")
        .await
        .unwrap();
    assert_eq!(checked.addrs, vec!["93.184.216.34:8080".parse().unwrap()]);
    assert_eq!(dns.calls.load(Ordering::SeqCst), 1);

    // With a real receiver: the client connects to the pinned address even
    // though the "DNS" now says something else, and sends the original Host.
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = receiver.local_addr().unwrap().port();
    let dns = Arc::new(Rebinding {
        answers: Mutex::new(vec![
            "127.0.0.1".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
        ]),
        calls: AtomicUsize::new(0),
    });
    let checked = Guard::new(dns.clone(), true)
        .check(&format!("http://rebind.test:{port}/x"))
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = receiver.accept().await.unwrap();
        let req = read_request(&mut s).await;
        respond(&mut s, "204 No Content", "").await;
        req
    });
    let client = checked.client(Duration::from_secs(5)).unwrap();
    let r = client
        .post(checked.url.clone())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let req = server.await.unwrap();
    assert!(
        req.to_ascii_lowercase()
            .contains(&format!("host: rebind.test:{port}")),
        "{req}"
    );
    assert_eq!(dns.calls.load(Ordering::SeqCst), 1);
}

/// Whatever spelling of the host the URL uses (a trailing dot, upper case,
/// an IDN), the client connects to the address the guard checked and never
/// asks any resolver again. (The client used to be pinned under the name
/// without its trailing dot, so `host.` was resolved afresh by the system.)
#[tokio::test]
async fn every_spelling_of_a_host_connects_to_the_checked_address() {
    // The checked address is 127.0.0.2; a trap listens on 127.0.0.1 at the
    // same port, where the system resolver sends `localhost`.
    let pinned = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = pinned.local_addr().unwrap().port();
    let trap = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let trapped = tokio::spawn(async move { trap.accept().await.is_ok() });
    let spellings = [
        ("http://localhost.:{port}/a", "localhost."),
        ("http://LOCALHOST.:{port}/b", "localhost."),
        ("http://LocalHost:{port}/c", "localhost"),
        ("http://b\u{fc}cher.test.:{port}/d", "xn--bcher-kva.test."),
    ];
    for (raw, normalised) in spellings {
        let raw = raw.replace("{port}", &port.to_string());
        let dns = Arc::new(Rebinding {
            answers: Mutex::new(vec![
                "127.0.0.2".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
            ]),
            calls: AtomicUsize::new(0),
        });
        let checked = Guard::new(dns.clone(), true).check(&raw).await.unwrap();
        assert_eq!(checked.host, normalised);
        let client = checked.client(Duration::from_secs(5)).unwrap();
        let sent = tokio::spawn(client.post(checked.url.clone()).body("{}").send());
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), pinned.accept())
            .await
            .unwrap_or_else(|_| panic!("{raw}: nothing reached the checked address"))
            .unwrap();
        let req = read_request(&mut s).await;
        respond(&mut s, "204 No Content", "").await;
        assert_eq!(sent.await.unwrap().unwrap().status(), 204, "{raw}");
        assert!(
            req.to_ascii_lowercase()
                .contains(&format!("host: {normalised}:{port}")),
            "{raw}: {req}"
        );
        assert_eq!(dns.calls.load(Ordering::SeqCst), 1, "{raw}: resolved again");
    }
    assert!(!trapped.is_finished(), "a request reached the trap");
    trapped.abort();
}

async fn read_request(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

async fn respond(s: &mut tokio::net::TcpStream, status: &str, extra: &str) {
    use tokio::io::AsyncWriteExt;
    let resp =
        format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(resp.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn redirects_are_not_followed_and_proxy_variables_are_ignored() {
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_port = target.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = target.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            read_request(&mut s).await;
            respond(&mut s, "200 OK", "").await;
        }
    });
    // A proxy that would see the request if the client used the environment.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://127.0.0.1:{}", proxy.local_addr().unwrap().port());
    let proxied = Arc::new(AtomicUsize::new(0));
    let p = proxied.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = proxy.accept().await {
            p.fetch_add(1, Ordering::SeqCst);
            respond(&mut s, "502 Bad Gateway", "").await;
        }
    });
    // Only this test in this binary touches the environment.
    std::env::set_var("HTTP_PROXY", &proxy_url);
    std::env::set_var("http_proxy", &proxy_url);
    std::env::set_var("ALL_PROXY", &proxy_url);

    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let first_port = first.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = first.accept().await.unwrap();
        read_request(&mut s).await;
        let loc = format!("Location: http://127.0.0.1:{target_port}/elsewhere\r\n");
        respond(&mut s, "302 Found", &loc).await;
    });
    let checked = Guard::new(dns(), true)
        .check(&format!("http://127.0.0.1:{first_port}/hook"))
        .await
        .unwrap();
    let r = checked
        .client(Duration::from_secs(5))
        .unwrap()
        .post(checked.url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "the proxy variable was used"
    );
}
