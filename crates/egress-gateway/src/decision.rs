//! Whether a connection to `host:port` may go out, and to which addresses.
//!
//! In order: an IP address is refused (the list holds names); a name not
//! on the list is refused; the name is resolved **once**, by the gateway;
//! every address it resolves to must be public by the hook SSRF guard's
//! classifier (`workspace::hooks::ssrf::refusal`), unless it lies in a
//! range the workspace allows (`allowCIDRs`), and never the API server's
//! (whatever those ranges hold). The connection then goes to
//! those addresses, never to a second lookup's, so DNS rebinding cannot
//! swap them.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use workspace::hooks::ssrf::{refusal, Resolve};

use crate::allow_list::{normalize, AllowList};

/// Why a connection was refused; each names the rule that refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{host} is an IP address; the egress gateway lets through host names on this workspace's allow list only (spec.network.egress.allowDomains)")]
    Address { host: String },
    #[error("{host}:{port} is not on this workspace's egress allow list (spec.network.egress.allowDomains)")]
    NotListed { host: String, port: u16 },
    #[error("{host} could not be resolved: {why}")]
    Dns { host: String, why: String },
    #[error("{host} resolves to {addr}, which is {why}; the egress gateway reaches public addresses only (spec.network.egress.allowCIDRs can allow a range)")]
    Private {
        host: String,
        addr: IpAddr,
        why: &'static str,
    },
    #[error("{host} resolves to {addr}, the cluster's API server, which no workspace reaches (whatever spec.network.egress.allowCIDRs says)")]
    ApiServer { host: String, addr: IpAddr },
}

impl Refusal {
    /// The metric label of this refusal (`egress_requests_total{decision}`).
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Address { .. } => "refused_address",
            Refusal::NotListed { .. } => "refused_not_listed",
            Refusal::Dns { .. } => "refused_dns",
            Refusal::Private { .. } => "refused_private_address",
            Refusal::ApiServer { .. } => "refused_api_server",
        }
    }
}

/// Which addresses the gateway may connect to: public ones, those in the
/// ranges the workspace allows although private, never the API server's.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// The Workspace's allowCIDRs.
    pub allow_cidrs: Vec<IpNet>,
    /// The API server's endpoints (its Service's and its real ones).
    pub api_server: Vec<SocketAddr>,
}

impl Reach {
    /// Why `host`'s address `addr` may not be reached on `port` (`None`:
    /// on some port not known yet), if it may not.
    pub fn refusal(&self, host: &str, addr: IpAddr, port: Option<u16>) -> Option<Refusal> {
        let addr = canonical(addr);
        let api_server = self
            .api_server
            .iter()
            .any(|e| canonical(e.ip()) == addr && port.is_none_or(|p| p == e.port()));
        if api_server {
            return Some(Refusal::ApiServer {
                host: host.to_string(),
                addr,
            });
        }
        let why = refusal(addr)?;
        (!self.allow_cidrs.iter().any(|n| n.contains(&addr))).then(|| Refusal::Private {
            host: host.to_string(),
            addr,
            why,
        })
    }
}

/// What the gateway checks against: the list (replaced when its file
/// changes) and the addresses it may reach.
pub struct Policy<'a> {
    pub list: &'a AllowList,
    pub reach: &'a Reach,
}

impl Policy<'_> {
    /// The addresses `host:port` may be reached at, or why not.
    pub async fn check(
        &self,
        resolver: &dyn Resolve,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return Err(Refusal::Address {
                host: host.to_string(),
            });
        }
        let name = normalize(host);
        if self.list.allowing(&name, port).is_none() {
            return Err(Refusal::NotListed { host: name, port });
        }
        public_addresses(resolver, self.reach, &name, port).await
    }
}

/// `name` resolved once, every address one `reach` allows on `port` (0:
/// on any port; a model provider's is not known when its name is looked
/// up): the address half of the checks, also for model providers, whose
/// names the cluster's administrator chose rather than the allow list.
pub async fn public_addresses(
    resolver: &dyn Resolve,
    reach: &Reach,
    name: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Refusal> {
    let addrs = resolver.resolve(name).await.map_err(|why| Refusal::Dns {
        host: name.to_string(),
        why,
    })?;
    if addrs.is_empty() {
        return Err(Refusal::Dns {
            host: name.to_string(),
            why: "the name has no address".into(),
        });
    }
    let on = (port != 0).then_some(port);
    if let Some(refused) = addrs.iter().find_map(|a| reach.refusal(name, *a, on)) {
        return Err(refused);
    }
    Ok(addrs
        .into_iter()
        .map(|a| SocketAddr::new(a, port))
        .collect())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so an allowed
/// IPv4 range covers it too (the classifier refuses mapped forms).
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;

    /// DNS as the test says: `name=addr,addr` pairs.
    struct Fixed(Vec<(&'static str, Vec<IpAddr>)>);

    impl Resolve for Fixed {
        fn resolve<'a>(
            &'a self,
            host: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, String>> + Send + 'a>> {
            let found = self
                .0
                .iter()
                .find(|(n, _)| *n == host)
                .map(|(_, a)| a.clone());
            Box::pin(async move { found.ok_or_else(|| "the DNS says no such name exists".into()) })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn each_rule_refuses_with_its_own_reason() {
        let list = AllowList::parse(
            "*.example.com\ncontrol.example.com:6443\nmirror.corp\nrebind.example.org",
        )
        .unwrap();
        let reach = Reach {
            allow_cidrs: vec!["10.20.0.0/16".parse().unwrap()],
            api_server: vec![
                "10.20.0.1:6443".parse().unwrap(),
                "11.0.0.1:443".parse().unwrap(),
            ],
        };
        let policy = Policy {
            list: &list,
            reach: &reach,
        };
        let dns = Fixed(vec![
            ("api.example.com", vec![ip("93.184.215.14")]),
            ("meta.example.com", vec![ip("169.254.169.254")]),
            (
                "mixed.example.com",
                vec![ip("93.184.215.14"), ip("10.0.0.5")],
            ),
            ("mapped.example.com", vec![ip("::ffff:10.20.1.1")]),
            ("mirror.corp", vec![ip("10.20.3.4")]),
            ("control.example.com", vec![ip("10.20.0.1")]),
            (
                "cloud.example.com",
                vec![ip("93.184.215.14"), ip("11.0.0.1")],
            ),
        ]);
        let ok = policy.check(&dns, "API.example.com.", 443).await.unwrap();
        assert_eq!(ok, vec!["93.184.215.14:443".parse().unwrap()]);
        // A private range the workspace allows, also in its mapped form.
        assert!(policy.check(&dns, "mirror.corp", 80).await.is_ok());
        assert!(policy.check(&dns, "mapped.example.com", 443).await.is_ok());

        let refused = |host: &'static str, port: u16| {
            let policy = &policy;
            let dns = &dns;
            async move { policy.check(dns, host, port).await.unwrap_err() }
        };
        let e = refused("93.184.215.14", 443).await;
        assert_eq!(e.label(), "refused_address");
        assert_eq!(
            refused("[2606:4700::1]", 443).await.label(),
            "refused_address"
        );
        let e = refused("example.org", 443).await;
        assert_eq!(e.label(), "refused_not_listed");
        assert!(
            e.to_string()
                .contains("example.org:443 is not on this workspace's egress allow list"),
            "{e}"
        );
        assert_eq!(
            refused("api.example.com", 22).await.label(),
            "refused_not_listed"
        );
        let e = refused("meta.example.com", 443).await;
        assert_eq!(e.label(), "refused_private_address");
        assert!(
            e.to_string()
                .contains("169.254.169.254, which is link-local"),
            "{e}"
        );
        // One private address among public ones is enough to refuse.
        assert_eq!(
            refused("mixed.example.com", 443).await.label(),
            "refused_private_address"
        );
        // The API server, inside an allowed range or at a public address;
        // its host's other ports as the ranges say.
        let e = refused("control.example.com", 6443).await;
        assert_eq!(e.label(), "refused_api_server");
        assert!(
            e.to_string()
                .contains("10.20.0.1, the cluster's API server"),
            "{e}"
        );
        assert_eq!(
            refused("cloud.example.com", 443).await.label(),
            "refused_api_server"
        );
        assert!(policy.check(&dns, "control.example.com", 443).await.is_ok());
        let e = refused("rebind.example.org", 443).await;
        assert_eq!(e.label(), "refused_dns");
        assert!(e.to_string().contains("no such name"), "{e}");
    }
}
