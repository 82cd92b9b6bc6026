//! Any string through the hook-URL parser and the address classifier:
//! never a panic, and an accepted URL is http(s) with a host and no
//! credentials; every literal IP host is classified consistently. The
//! redacted form shown to read-only viewers and in logs never carries
//! the URL's path, query or credentials.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workspace::hooks::redacted;
use workspace::hooks::ssrf::{parse, refusal};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(url) = parse(s) {
        assert!(url.scheme() == "http" || url.scheme() == "https");
        assert!(url.host().is_some());
        assert!(url.username().is_empty() && url.password().is_none());
        if let Some(url::Host::Ipv4(ip)) = url.host() {
            let _ = refusal(std::net::IpAddr::V4(ip));
        }
        // Scheme, host and port, then `/` or `/…`: nothing else.
        let head = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        let shown = redacted(s);
        assert!(shown == format!("{head}/") || shown == format!("{head}/…"), "{shown} for {s}");
    }
    if data.len() == 16 {
        let mut b = [0u8; 16];
        b.copy_from_slice(data);
        let v6 = std::net::Ipv6Addr::from(b);
        // A mapped IPv4 address is never allowed, whatever it embeds.
        if v6.to_ipv4_mapped().is_some() {
            assert!(refusal(std::net::IpAddr::V6(v6)).is_some());
        }
    }
});
