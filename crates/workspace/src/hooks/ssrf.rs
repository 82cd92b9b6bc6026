//! The SSRF guard: may the server send a request to this URL, and where
//! exactly does the connection go?
//!
//! 1. The URL is parsed the way browsers parse it (WHATWG, the `url` crate),
//!    which normalises every IPv4 spelling (`2130706433`, `0x7f.1`,
//!    `0177.0.0.1`, `127.1`) to dotted quads before anything is checked.
//!    Only `http` and `https`; no credentials in the URL.
//! 2. The host is resolved **once**. Every resolved address must be public:
//!    [`refusal`] names the range of any that is not (loopback, RFC 1918,
//!    link-local and cloud metadata, CGNAT, unique-local, multicast,
//!    documentation and reserved ranges, and IPv6 forms that embed an IPv4
//!    address: mapped, compatible, 6to4, NAT64, Teredo).
//! 3. [`Checked::client`] builds an HTTP client whose only resolver answers
//!    every name with the checked addresses: there is no second resolution,
//!    whatever spelling of the host the client ends up looking up (a
//!    trailing dot, upper case, an IDN), so DNS rebinding cannot swap them.
//!    It keeps the original Host header and TLS name, follows no redirects
//!    and ignores proxy environment variables.
//!
//! `ALLOW_INTERNAL_HOOKS=true` lifts only step 2's range check.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    #[error("the hook URL is not a valid URL: {0}")]
    Invalid(String),
    #[error("the hook URL must use http or https, not `{0}`")]
    Scheme(String),
    #[error("the hook URL must not contain a user name or password")]
    Credentials,
    #[error("the hook URL has no host")]
    NoHost,
    #[error("the hook host `{host}` could not be resolved: {why}")]
    Resolve { host: String, why: String },
    #[error("the hook host `{0}` has no addresses")]
    NoAddresses(String),
    #[error("the hook URL resolves to {addr}, which is {why}; hooks may only reach public addresses (set ALLOW_INTERNAL_HOOKS=true to allow internal ones)")]
    Refused { addr: IpAddr, why: &'static str },
}

/// Resolves a host name to addresses. Injectable so tests control DNS.
pub trait Resolve: Send + Sync {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, String>> + Send + 'a>>;
}

/// The system resolver (resolv.conf), through hickory.
pub struct SystemResolver(hickory_resolver::TokioResolver);

impl SystemResolver {
    pub fn new() -> Result<Self, String> {
        hickory_resolver::TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .map(Self)
            .map_err(|e| e.to_string())
    }
}

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, String>> + Send + 'a>> {
        Box::pin(async move {
            let found = self.0.lookup_ip(host).await.map_err(|e| dns_failure(&e))?;
            Ok(found.iter().collect())
        })
    }
}

/// Why a lookup failed, as a sentence (hickory's own text is a debug dump
/// of the query); the cause stays in parentheses where it helps.
fn dns_failure(e: &hickory_resolver::net::NetError) -> String {
    use hickory_resolver::net::NetError;
    if e.is_nx_domain() {
        return "the DNS says no such name exists".into();
    }
    if e.is_no_records_found() {
        return "the name has no address in the DNS (no A or AAAA record)".into();
    }
    match e {
        NetError::Timeout => "the DNS server did not answer in time".into(),
        NetError::NoConnections => "no DNS server could be reached (see /etc/resolv.conf)".into(),
        NetError::Io(io) => format!("the DNS server could not be reached ({io})"),
        other => format!("the DNS lookup failed ({other})"),
    }
}

/// A URL that passed the guard, with the addresses to connect to.
#[derive(Debug, Clone)]
pub struct Checked {
    pub url: Url,
    /// The host as the URL parser normalised it (what was resolved).
    pub host: String,
    pub addrs: Vec<SocketAddr>,
}

impl Checked {
    /// An HTTP client that can only reach the checked addresses.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Not `resolve_to_addrs(name, …)`: that pins one spelling of
            // the name, and any other the client looks up (`host.` for
            // `host`) would go to the system resolver again.
            .dns_resolver(Arc::new(Pinned(self.addrs.clone())))
            .build()
    }
}

/// The client's resolver: every name resolves to the checked addresses.
/// (IP-literal URLs are never resolved; they were checked as written.)
struct Pinned(Vec<SocketAddr>);

impl reqwest::dns::Resolve for Pinned {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addrs = self.0.clone();
        Box::pin(async move { Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs) })
    }
}

#[derive(Clone)]
pub struct Guard {
    resolver: Arc<dyn Resolve>,
    allow_internal: bool,
}

impl Guard {
    pub fn new(resolver: Arc<dyn Resolve>, allow_internal: bool) -> Self {
        Self {
            resolver,
            allow_internal,
        }
    }

    /// Parse, resolve once, and check every address.
    pub async fn check(&self, raw: &str) -> Result<Checked, SsrfError> {
        let url = parse(raw)?;
        let port = url.port_or_known_default().unwrap_or(80);
        let (host, ips) = match url.host() {
            None => return Err(SsrfError::NoHost),
            Some(Host::Ipv4(ip)) => (ip.to_string(), vec![IpAddr::V4(ip)]),
            Some(Host::Ipv6(ip)) => (ip.to_string(), vec![IpAddr::V6(ip)]),
            Some(Host::Domain(d)) => {
                // Resolved as the parser normalised it (lower case,
                // punycode, a trailing dot kept: `host.` is absolute and
                // gets no search domain, so it may name another host).
                let d = d.to_string();
                let ips = self
                    .resolver
                    .resolve(&d)
                    .await
                    .map_err(|why| SsrfError::Resolve {
                        host: d.clone(),
                        why,
                    })?;
                (d, ips)
            }
        };
        if ips.is_empty() {
            return Err(SsrfError::NoAddresses(host));
        }
        if !self.allow_internal {
            for ip in &ips {
                if let Some(why) = refusal(*ip) {
                    return Err(SsrfError::Refused { addr: *ip, why });
                }
            }
        }
        Ok(Checked {
            host,
            addrs: ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            url,
        })
    }
}

/// Parse a hook URL: WHATWG rules, http(s) only, no credentials.
pub fn parse(raw: &str) -> Result<Url, SsrfError> {
    let url = Url::parse(raw.trim()).map_err(|e| SsrfError::Invalid(e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(SsrfError::Scheme(other.to_string())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SsrfError::Credentials);
    }
    if url.host().is_none() {
        return Err(SsrfError::NoHost);
    }
    Ok(url)
}

/// Why an address may not be reached, or `None` if it is public.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "in 0.0.0.0/8 (this network)"),
        ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT (100.64.0.0/10)"),
        ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
        (
            [169, 254, 0, 0],
            16,
            "link-local, where cloud metadata lives (169.254.0.0/16)",
        ),
        ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
        (
            [192, 0, 0, 0],
            24,
            "IETF protocol assignments (192.0.0.0/24)",
        ),
        ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
        (
            [192, 88, 99, 0],
            24,
            "the 6to4 relay anycast (192.88.99.0/24)",
        ),
        ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
        ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
        ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
        ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
        ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
        ([240, 0, 0, 0], 4, "reserved (240.0.0.0/4, incl. broadcast)"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 address carried in two IPv6 segments.
fn v4_from(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // Forms that carry an IPv4 address: refused outright (mapped,
    // compatible, Teredo) or when the embedded address is refused.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) {
        return Some("an IPv4-mapped IPv6 address (::ffff:0:0/96)");
    }
    if in_v6(ip, [0, 0, 0, 0, 0, 0, 0, 0], 96) {
        return Some("an IPv4-compatible IPv6 address (::/96)");
    }
    if in_v6(ip, [0x2001, 0, 0, 0, 0, 0, 0, 0], 32) {
        return Some("Teredo (2001::/32), which tunnels to an IPv4 address");
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return refusal_v4(v4_from(seg[1], seg[2]))
            .map(|_| "6to4 (2002::/16) embedding a refused IPv4 address");
    }
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return refusal_v4(v4_from(seg[6], seg[7]))
            .map(|_| "NAT64 (64:ff9b::/96) embedding a refused IPv4 address");
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        (
            [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
            48,
            "local-use NAT64 (64:ff9b:1::/48)",
        ),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only (100::/64)"),
        (
            [0x2001, 0x2, 0, 0, 0, 0, 0, 0],
            48,
            "benchmarking (2001:2::/48)",
        ),
        (
            [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
            28,
            "ORCHID (2001:10::/28)",
        ),
        (
            [0x2001, 0x20, 0, 0, 0, 0, 0, 0],
            28,
            "ORCHIDv2 (2001:20::/28)",
        ),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            "documentation (2001:db8::/32)",
        ),
        (
            [0x3fff, 0, 0, 0, 0, 0, 0, 0],
            20,
            "documentation (3fff::/20)",
        ),
        (
            [0x5f00, 0, 0, 0, 0, 0, 0, 0],
            16,
            "segment routing (5f00::/16)",
        ),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local (fc00::/7)"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local (fe80::/10)"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local (fec0::/10)"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast (ff00::/8)"),
    ];
    if let Some((_, _, why)) = RANGES.iter().find(|(net, p, _)| in_v6(ip, *net, *p)) {
        return Some(why);
    }
    // Only the global unicast space is public.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return Some("outside the global unicast range (2000::/3)");
    }
    None
}

#[cfg(test)]
mod tests {
    use hickory_resolver::net::{DnsError, NetError, NoRecords};
    use hickory_resolver::proto::op::{Query, ResponseCode};
    use hickory_resolver::proto::rr::{Name, RecordType};

    use super::dns_failure;

    fn no_records(code: ResponseCode) -> NetError {
        let q = Query::query(Name::from_ascii("x.invalid.").unwrap(), RecordType::AAAA);
        NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(q, code)))
    }

    /// Lookup failures read as sentences, not as a dump of the query.
    #[test]
    fn dns_failures_are_plain_sentences() {
        for (e, says) in [
            (no_records(ResponseCode::NXDomain), "no such name exists"),
            (no_records(ResponseCode::NoError), "no address in the DNS"),
            (NetError::Timeout, "did not answer in time"),
            (NetError::NoConnections, "no DNS server could be reached"),
        ] {
            let text = dns_failure(&e);
            assert!(text.contains(says), "{text}");
            assert!(
                !text.contains("Query {") && !text.contains("query_type"),
                "{text}"
            );
        }
    }
}
