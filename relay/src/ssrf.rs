//! Which addresses the relay may call. Internal ranges (loopback, private, link-local, cloud
//! metadata, ...) are refused unless an allow-list opens them. The check runs on the addresses a
//! name resolves to, which are the only ones the HTTP client connects to (see `GuardedResolver`),
//! so a name that resolves to 127.0.0.1 is caught; IP literals in URLs are checked before sending.

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use url::{Host, Url};

const BLOCKED_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
];
const BLOCKED_V6: &[&str] = &["::1/128", "::/128", "fe80::/10", "fc00::/7", "ff00::/8"];

static BLOCKED: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    BLOCKED_V4
        .iter()
        .chain(BLOCKED_V6)
        .filter_map(|net| net.parse().ok())
        .collect()
});

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("{0} is an internal address (use --allow-cidr to permit it)")]
    Address(IpAddr),
    #[error("{0} resolves only to internal addresses (use --allow-cidr to permit them)")]
    Name(String),
    #[error("only https:// URLs are allowed (--https-only)")]
    Scheme,
    #[error("invalid URL: {0}")]
    Url(String),
}

/// The name did not resolve at all.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve {name}: {source}")]
pub struct LookupFailed {
    pub name: String,
    pub source: std::io::Error,
}

impl Refusal {
    pub fn error_class(&self) -> &'static str {
        match self {
            Refusal::Address(_) | Refusal::Name(_) => "refused_address",
            Refusal::Scheme => "refused_scheme",
            Refusal::Url(_) => "invalid_url",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    pub allowed: Vec<IpNet>,
    pub https_only: bool,
}

/// The IPv4 address an IPv6 address wraps: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
/// NAT64 (64:ff9b::a.b.c.d) or 6to4 (2002:aabb:ccdd::).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let last32 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] => Some(last32()),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(last32()),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

fn is_internal(ip: IpAddr) -> bool {
    if BLOCKED.iter().any(|net| net.contains(&ip)) {
        return true;
    }
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).is_some_and(|v4| is_internal(IpAddr::V4(v4))),
        IpAddr::V4(_) => false,
    }
}

impl AddressPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&ip)) || !is_internal(ip)
    }

    /// Checks what can be checked before connecting: the scheme and an IP-literal host.
    pub fn check_url(&self, url: &str) -> Result<Url, Refusal> {
        let parsed = Url::parse(url).map_err(|e| Refusal::Url(e.to_string()))?;
        if self.https_only && parsed.scheme() != "https" {
            return Err(Refusal::Scheme);
        }
        let literal = match parsed.host() {
            Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        match literal {
            Some(ip) if !self.permits(ip) => Err(Refusal::Address(ip)),
            _ => Ok(parsed),
        }
    }
}

/// A DNS resolver for the HTTP client that drops internal addresses from every answer.
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| LookupFailed {
                    name: host.clone(),
                    source,
                })?;
            let permitted: Vec<SocketAddr> =
                resolved.filter(|addr| policy.permits(addr.ip())).collect();
            if permitted.is_empty() {
                return Err(
                    Box::new(Refusal::Name(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuses(url: &str) -> bool {
        matches!(
            AddressPolicy::default().check_url(url),
            Err(Refusal::Address(_))
        )
    }

    #[test]
    fn refuses_the_literal_forms_from_the_notes() {
        for url in [
            "http://127.0.0.1/",
            "http://[::1]:9876/",
            "http://1:2@[::1]:9876/",
            "http://[::ffff:7f00:1]/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:7f00:1::]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://[::]/",
            "http://[ff02::1]/",
        ] {
            assert!(refuses(url), "{url} was not refused");
        }
    }

    #[test]
    fn refuses_other_spellings_of_loopback() {
        // URL parsing reads all of these as 127.0.0.1, so the literal check sees through them
        for url in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
        ] {
            assert!(refuses(url), "{url} was not refused");
        }
    }

    #[test]
    fn names_are_left_to_the_resolver() {
        // `localhost` is checked on the addresses it resolves to (see the resolver test)
        assert!(AddressPolicy::default()
            .check_url("http://localhost:9876/")
            .is_ok());
    }

    #[test]
    fn every_blocked_range_parses() {
        // a typo would otherwise drop a range silently and leave it open
        assert_eq!(BLOCKED.len(), BLOCKED_V4.len() + BLOCKED_V6.len());
    }

    #[test]
    fn permits_public_addresses() {
        for url in [
            "http://93.184.216.34/",
            "https://[2606:2800:220:1::]/",
            "https://example.com/",
        ] {
            assert!(
                AddressPolicy::default().check_url(url).is_ok(),
                "{url} was refused"
            );
        }
    }

    #[test]
    fn the_allow_list_opens_a_range() {
        let policy = AddressPolicy {
            allowed: vec!["127.0.0.0/8".parse().expect("cidr")],
            https_only: false,
        };
        assert!(policy.check_url("http://127.0.0.1:8080/").is_ok());
        assert!(policy.check_url("http://10.0.0.1/").is_err());
    }

    #[test]
    fn https_only_refuses_plain_http() {
        let policy = AddressPolicy {
            allowed: vec![],
            https_only: true,
        };
        assert_eq!(
            policy.check_url("http://example.com/").err(),
            Some(Refusal::Scheme)
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        let resolver = GuardedResolver {
            policy: Arc::new(AddressPolicy::default()),
        };
        let name: Name = "localhost".parse().expect("a name");
        let error = resolver.resolve(name).await.err().expect("refused");
        assert_eq!(
            error.to_string(),
            "localhost resolves only to internal addresses (use --allow-cidr to permit them)"
        );
    }
}
