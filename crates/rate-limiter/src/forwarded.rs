//! The client's address: the TCP peer, or, when the peer is a trusted
//! reverse proxy, the address the proxy
//! reports in `X-Forwarded-For` (else `Forwarded: for=`). Only trusted
//! peers are believed, and only the hops they appended: walking the list
//! from the right, the first address that is not itself a trusted proxy is
//! the client (what a client writes at the left cannot spoof it).

use std::net::IpAddr;

use axum::http::HeaderMap;
pub use ipnet::IpNet;

/// The most addresses read from the forwarding headers (a longer chain is
/// cut: its leftmost entries cannot be trusted anyway).
const MAX_HOPS: usize = 32;

/// The client address of a request from `peer` with `headers`, given the
/// reverse proxies whose headers are believed (what the rate-limit layer
/// and the gateway use for every per-IP limit).
///
/// ```
/// use axum::http::HeaderMap;
/// use wsc_rate_limiter::{IpNet, client_address};
/// let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
/// let mut headers = HeaderMap::new();
/// // A client's own claim at the left; the proxy appended the real peer.
/// headers.insert("x-forwarded-for", "1.1.1.1, 203.0.113.7".parse().unwrap());
/// assert_eq!(client_address("10.0.0.2".parse().unwrap(), &headers, &proxies).to_string(), "203.0.113.7");
/// // From anyone else, the header is ignored.
/// assert_eq!(client_address("198.51.100.9".parse().unwrap(), &headers, &proxies).to_string(), "198.51.100.9");
/// ```
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let chain = forwarded_for(headers);
    // From the right: the hop nearest to us first.
    for ip in chain.iter().rev() {
        if !is_trusted(ip) {
            return *ip;
        }
    }
    // Every hop is a proxy of ours (or none was given): the leftmost, or
    // the peer.
    chain.first().copied().unwrap_or(peer)
}

/// The addresses of `X-Forwarded-For` (all its header lines, in order), or
/// if there is none, the `for=` parameters of `Forwarded`. Entries that
/// are not addresses (`unknown`, obfuscated names) end the chain there:
/// nothing left of them is believed.
fn forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let entries: Vec<String> = if xff.is_empty() {
        headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| v.trim().trim_matches('"').to_owned())
                })
            })
            .collect()
    } else {
        xff.into_iter().map(str::to_owned).collect()
    };
    let start = entries.len().saturating_sub(MAX_HOPS);
    let mut out = Vec::new();
    // Parsed right to left, stopping at the first entry that is not an
    // address.
    for entry in entries[start..].iter().rev() {
        match parse_node(entry) {
            Some(ip) => out.push(ip),
            None => break,
        }
    }
    out.reverse();
    out
}

/// An address as a forwarding header writes it: `1.2.3.4`, `1.2.3.4:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse().ok();
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
    }

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            client_address(ip("198.51.100.1"), &h, &proxies()),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(ip("10.1.2.3"), &h, &proxies()),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(ip("10.1.2.3"), &h, &[]),
            ip("10.1.2.3"),
            "none trusted"
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        // The client wrote a fake first entry; our proxies appended theirs.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.5")]);
        assert_eq!(
            client_address(ip("10.0.0.9"), &h, &proxies()),
            ip("203.0.113.7")
        );
        // Several header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.8"),
        ]);
        assert_eq!(
            client_address(ip("10.0.0.9"), &h, &proxies()),
            ip("203.0.113.8")
        );
        // Garbage to the left of a good entry is not believed; garbage at
        // the right stops the chain: the peer.
        let h = headers(&[("x-forwarded-for", "nonsense, 203.0.113.9")]);
        assert_eq!(
            client_address(ip("10.0.0.9"), &h, &proxies()),
            ip("203.0.113.9")
        );
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown")]);
        assert_eq!(
            client_address(ip("10.0.0.9"), &h, &proxies()),
            ip("10.0.0.9")
        );
        // All hops ours.
        let h = headers(&[("x-forwarded-for", "10.0.0.1, 10.0.0.2")]);
        assert_eq!(
            client_address(ip("10.0.0.9"), &h, &proxies()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let h = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711""#,
        )]);
        assert_eq!(
            client_address(ip("fd00::1"), &h, &proxies()),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("forwarded", "for=198.51.100.17:8080")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &h, &proxies()),
            ip("198.51.100.17")
        );
    }

    proptest! {
        /// Whatever a client puts in the headers, the answer is the peer
        /// unless the peer is trusted, and never a trusted proxy's address
        /// when an untrusted hop exists to its right.
        #[test]
        fn any_headers_give_the_peer_or_a_listed_address(
            xff in prop::collection::vec("[0-9a-f:., \\[\\]]{0,40}", 0..4),
            trusted_peer in any::<bool>(),
        ) {
            let pairs: Vec<(&'static str, &str)> = xff.iter().map(|v| ("x-forwarded-for", v.as_str())).collect();
            let h = headers(&pairs);
            let peer = if trusted_peer { ip("10.9.9.9") } else { ip("198.51.100.2") };
            let got = client_address(peer, &h, &proxies());
            if !trusted_peer {
                prop_assert_eq!(got, peer);
            } else {
                let listed = forwarded_for(&h);
                prop_assert!(got == peer || listed.contains(&got));
            }
        }
    }
}
