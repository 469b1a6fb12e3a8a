//! The private-address guard: which addresses plugins reach only through an
//! exact grant, and the DNS resolver that enforces it on every connection.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Whether `ip` is an address plugins may reach only through an exact grant:
/// unspecified / "this network" (0.0.0.0/8, `::`), loopback (127/8, `::1`),
/// private (10/8, 172.16/12, 192.168/16), shared CGNAT (100.64/10),
/// link-local (169.254/16 including the cloud metadata service
/// 169.254.169.254, fe80::/10), unique-local (fc00::/7), deprecated
/// site-local (fec0::/10), IETF protocol assignments (192.0.0/24),
/// benchmarking (198.18/15), multicast, reserved (240/4) and broadcast, and
/// the same addresses embedded in IPv6 (IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, and the
/// local-use NAT64 prefix 64:ff9b:1::/48).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_forbidden_v4(ip),
        IpAddr::V6(ip) => is_forbidden_v6(ip),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    // 0.0.0.0/8: Linux connects 0.0.0.0 to the local host.
    a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18)
        || ip.is_multicast()
        // 240.0.0.0/4 reserved, including 255.255.255.255 broadcast.
        || a >= 240
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    let seg = ip.segments();
    let embedded_v4 = || Ipv4Addr::from_bits((ip.to_bits() & 0xffff_ffff) as u32);
    // IPv4-compatible (deprecated) ::a.b.c.d; covers `::` and `::1` too,
    // whose embedded 0.0.0.0 / 0.0.0.1 are forbidden.
    if seg[..6] == [0; 6] {
        return is_forbidden_v4(embedded_v4());
    }
    // NAT64 well-known prefix: the gateway forwards to the embedded address.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_forbidden_v4(embedded_v4());
    }
    ip.is_multicast()
        || (seg[0] & 0xffc0) == 0xfe80
        || (seg[0] & 0xffc0) == 0xfec0
        || (seg[0] & 0xfe00) == 0xfc00
        || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1)
}

/// Why the guarded resolver refused a name. Travels through reqwest's error
/// chain and is recognised again by the client's error mapping.
#[derive(Debug, thiserror::Error)]
pub(super) enum ResolveError {
    #[error("host name resolves only to forbidden addresses")]
    Forbidden,
    #[error("host name does not resolve")]
    NotFound,
}

/// Keeps only the addresses the connection may use. Dropping the forbidden
/// ones (rather than failing when any is present) is safe because hyper
/// connects only to what this returns; a name with *only* forbidden addresses
/// is refused so the plugin gets a clear Denied rather than a vague failure.
fn filter_addrs(addrs: Vec<IpAddr>, allow_forbidden: bool) -> Result<Vec<IpAddr>, ResolveError> {
    if addrs.is_empty() {
        return Err(ResolveError::NotFound);
    }
    if allow_forbidden {
        return Ok(addrs);
    }
    let allowed: Vec<IpAddr> = addrs
        .into_iter()
        .filter(|ip| !is_forbidden_ip(*ip))
        .collect();
    if allowed.is_empty() {
        Err(ResolveError::Forbidden)
    } else {
        Ok(allowed)
    }
}

/// The DNS resolver of the reqwest clients.
///
/// It resolves with tokio (the system resolver) and applies the address
/// rules. Because hyper connects to exactly the addresses a resolver returns,
/// the address checked is the address connected to: a DNS answer that changes
/// between a check and the connect (DNS rebinding) cannot slip through.
/// (IP literals never reach a resolver; [`Policy::check`](super::Policy::check) handles them.)
#[derive(Clone)]
pub(super) struct GuardedResolver {
    /// `true` only in the client used for exactly granted hosts.
    pub(super) allow_forbidden: bool,
    /// Fixed answers that bypass DNS (tests); still subject to the rules.
    pub(super) overrides: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = match this.overrides.get(&name) {
                Some(addrs) => addrs.clone(),
                None => tokio::net::lookup_host((name.as_str(), 0))
                    .await
                    .map_err(|_| ResolveError::NotFound)?
                    .map(|sa| sa.ip())
                    .collect(),
            };
            let addrs = filter_addrs(addrs, this.allow_forbidden)?;
            // Port 0 is replaced by the URL's port by the connector.
            let addrs: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_ip_table() {
        let forbidden = [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "169.254.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:192.168.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
        ];
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "fe00::1",
        ];
        for ip in forbidden {
            assert!(
                is_forbidden_ip(ip.parse().unwrap()),
                "{ip} should be forbidden"
            );
        }
        for ip in allowed {
            assert!(
                !is_forbidden_ip(ip.parse().unwrap()),
                "{ip} should be allowed"
            );
        }
    }

    #[test]
    fn resolver_filter_drops_forbidden_addresses() {
        let ips = |v: &[&str]| {
            v.iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<IpAddr>>()
        };
        assert_eq!(
            filter_addrs(ips(&["127.0.0.1", "93.184.216.34"]), false).unwrap(),
            ips(&["93.184.216.34"])
        );
        assert!(matches!(
            filter_addrs(ips(&["127.0.0.1", "::1"]), false),
            Err(ResolveError::Forbidden)
        ));
        assert_eq!(
            filter_addrs(ips(&["127.0.0.1"]), true).unwrap(),
            ips(&["127.0.0.1"])
        );
        assert!(matches!(
            filter_addrs(Vec::new(), true),
            Err(ResolveError::NotFound)
        ));
    }
}
