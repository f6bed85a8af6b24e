//! Workers behind a reverse proxy (the one terminating TLS, typically): whose
//! `X-Forwarded-For` (or `Forwarded`) to believe, and what it says.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An address or a network (`10.0.0.1`, `10.0.0.0/8`, `fd00::/8`).
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a server listening on
/// `[::]` sees of an IPv4 peer) match as the IPv4 address they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    net: IpAddr,
    prefix: u8,
}

/// Why a `--trusted-proxy` value was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or a network like 10.0.0.0/8")]
pub struct AddrRangeError(String);

impl FromStr for AddrRange {
    type Err = AddrRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddrRangeError(s.to_owned());
        let text = s.trim();
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (text, None),
        };
        let net = ip.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= bits)
                .ok_or_else(bad)?,
            None => bits,
        };
        Ok(AddrRange { net, prefix })
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl AddrRange {
    /// Whether `ip` is in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // The top `prefix` bits of a `bits`-bit address.
        let top = |v: u128, bits: u32| match u32::from(self.prefix) {
            0 => 0,
            p => v >> (bits - p),
        };
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                top(u32::from(n).into(), 32) == top(u32::from(a).into(), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => top(n.into(), 128) == top(a.into(), 128),
            _ => false,
        }
    }
}

/// What the per-address limits and bans count: an IPv4 address (also when
/// it arrives IPv4-mapped), or an IPv6 address's /64 network. One IPv6 host
/// is usually given a whole /64 and can take any address in it, so counting
/// single IPv6 addresses would let it open connections, and come back after
/// a ban, without limit.
pub(crate) fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// The worker's address: the peer's, or, when the peer is a trusted proxy,
/// the right-most address the proxies forwarded that is not itself a trusted
/// proxy (each proxy appends the address it heard from, so entries further
/// left could be forged by the client). The port is the peer's.
///
/// The addresses come from `X-Forwarded-For` or, when a proxy sends none,
/// from the `for=` parameters of `Forwarded` (RFC 7239). An entry may carry
/// a port (`203.0.113.7:4711`, `[2001:db8::1]:4711`, as some proxies write
/// it); anything else where an address belongs (`unknown`, an obfuscated
/// name) stops the walk: what lies left of it is not the proxies' word.
pub(crate) fn client_addr(
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[AddrRange],
) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer.ip()) {
        return peer;
    }
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
    };
    let xff = headers.contains_key("x-forwarded-for");
    let forwarded =
        values("x-forwarded-for").chain(values("forwarded").filter(|_| !xff).map(forwarded_for));
    for entry in forwarded.rev() {
        match node_ip(entry) {
            Some(ip) if is_trusted(ip) => continue,
            Some(ip) => return SocketAddr::new(ip.to_canonical(), peer.port()),
            None => break,
        }
    }
    peer
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.1;proto=https`),
/// or "" (no address) if it has none.
fn forwarded_for(element: &str) -> &str {
    element
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
        .map_or("", |(_, value)| value.trim().trim_matches('"'))
}

/// The address of one forwarded entry: `a.b.c.d`, an IPv6 address, either
/// with a port, or an IPv6 address in brackets.
fn node_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn limits_count_ipv4_addresses_and_ipv6_networks() {
        assert_eq!(limit_key(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(limit_key(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            limit_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:3::1")),
            limit_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(limit_key(ip("::1")), ip("::"));
    }

    #[test]
    fn ranges_parse_and_match() {
        let r = |s: &str| s.parse::<AddrRange>().expect(s);
        assert!(r("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!r("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(r("10.0.0.1").contains(ip("10.0.0.1")));
        assert!(!r("10.0.0.1").contains(ip("10.0.0.2")));
        assert!(r("10.0.0.1").contains(ip("::ffff:10.0.0.1")), "IPv4-mapped");
        assert!(r("::ffff:10.0.0.1").contains(ip("10.0.0.1")));
        assert!(r("fd00::/8").contains(ip("fd12::1")));
        assert!(!r("fd00::/8").contains(ip("fe80::1")));
        assert!(!r("fd00::/8").contains(ip("10.0.0.1")));
        assert!(r("0.0.0.0/0").contains(ip("203.0.113.7")));
        assert!(r("::/0").contains(ip("2001:db8::1")));
        assert_eq!(r(" 10.1.2.3/16 ").to_string(), "10.1.2.3/16");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0/8",
            "host",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<AddrRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted = [
            "10.0.0.1".parse().expect("range"),
            "10.1.0.0/16".parse().expect("range"),
        ];
        // Headers in the order received; X-Forwarded-For, or Forwarded.
        let from = |peer: &str, headers: &[(&'static str, &str)]| {
            let mut map = axum::http::HeaderMap::new();
            for &(name, value) in headers {
                map.append(name, value.parse().expect("header"));
            }
            client_addr(SocketAddr::new(ip(peer), 4000), &map, &trusted).ip()
        };
        const XFF: &str = "x-forwarded-for";
        const FWD: &str = "forwarded";
        let worker = "203.0.113.7";
        for (peer, headers, want, why) in [
            (
                "10.0.0.1",
                &[(XFF, "203.0.113.7")][..],
                worker,
                "a trusted proxy",
            ),
            (
                "::ffff:10.0.0.1",
                &[(XFF, "203.0.113.7")],
                worker,
                "an IPv4 proxy seen on [::]",
            ),
            (
                "10.0.0.1",
                &[(XFF, "1.2.3.4, 203.0.113.7")],
                worker,
                "the left is the client's to forge",
            ),
            (
                "10.0.0.1",
                &[(XFF, "203.0.113.7, 10.1.9.9")],
                worker,
                "through two proxies",
            ),
            (
                "10.1.2.3",
                &[(XFF, "203.0.113.7")],
                worker,
                "a proxy in a trusted network",
            ),
            (
                "10.0.0.1",
                &[(XFF, "1.2.3.4"), (XFF, "203.0.113.7")],
                worker,
                "several headers",
            ),
            (
                "10.0.0.1",
                &[(XFF, " 2001:db8::1 ")],
                "2001:db8::1",
                "IPv6, spaces",
            ),
            ("10.0.0.1", &[], "10.0.0.1", "no header: the proxy itself"),
            (
                "10.0.0.1",
                &[(XFF, "203.0.113.7, junk")],
                "10.0.0.1",
                "garbage: nothing further left is read",
            ),
            (
                "198.51.100.9",
                &[(XFF, "203.0.113.7")],
                "198.51.100.9",
                "an untrusted peer's header is ignored",
            ),
            (
                "10.0.0.1",
                &[(XFF, "1.2.3.4, 203.0.113.7:4711")],
                worker,
                "an entry with a port",
            ),
            (
                "10.0.0.1",
                &[(XFF, "[2001:db8::1]:4711")],
                "2001:db8::1",
                "IPv6 with a port",
            ),
            (
                "10.0.0.1",
                &[(XFF, "[2001:db8::1]")],
                "2001:db8::1",
                "IPv6 in brackets",
            ),
            // RFC 7239, read only when there is no X-Forwarded-For.
            ("10.0.0.1", &[(FWD, "for=203.0.113.7")], worker, "Forwarded"),
            (
                "10.0.0.1",
                &[(FWD, "for=1.2.3.4, For=\"203.0.113.7:4711\";proto=https")],
                worker,
                "Forwarded: right-most, quoted, a port, other parameters",
            ),
            (
                "10.0.0.1",
                &[(FWD, "for=\"[2001:db8::1]:4711\", for=10.1.0.5")],
                "2001:db8::1",
                "Forwarded: IPv6 through two proxies",
            ),
            (
                "10.0.0.1",
                &[(FWD, "for=203.0.113.7, for=unknown")],
                "10.0.0.1",
                "Forwarded: an unknown node, nothing further left is read",
            ),
            (
                "10.0.0.1",
                &[(FWD, "proto=https;by=10.0.0.1")],
                "10.0.0.1",
                "Forwarded: no for=",
            ),
            (
                "198.51.100.9",
                &[(FWD, "for=203.0.113.7")],
                "198.51.100.9",
                "Forwarded: an untrusted peer's header is ignored",
            ),
            (
                "10.0.0.1",
                &[(FWD, "for=1.2.3.4"), (XFF, "203.0.113.7")],
                worker,
                "X-Forwarded-For first",
            ),
        ] {
            assert_eq!(from(peer, headers), ip(want), "{why}");
        }
    }
}
