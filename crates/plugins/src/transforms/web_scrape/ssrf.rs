//! SSRF defences for `web_scrape` (the reference's three tiers): a URL is
//! fetched only if its scheme is http(s), it names a host, and **every**
//! address the host resolves to passes — always-blocked ranges (link-local
//! and cloud metadata, multicast, broadcast) whatever the allowlist, then
//! the allowlist, then the private/loopback blocklist. The address that was
//! checked is the one connected to (the caller pins it), so a second DNS
//! answer cannot rebind the request.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use ipnet::IpNet;

/// Which addresses may be fetched besides public ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AllowedHosts {
    PublicOnly,
    /// Everything but the always-blocked ranges.
    AllowPrivate,
    Ranges(Vec<IpNet>),
}

const ALWAYS_BLOCKED: [&str; 7] = [
    "169.254.0.0/16",
    "::ffff:169.254.0.0/112",
    "fe80::/10",
    "255.255.255.255/32",
    "224.0.0.0/4",
    "ff00::/8",
    "fd00:ec2::254/128",
];

const BLOCKED: [&str; 11] = [
    "0.0.0.0/8",
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "::ffff:0:0/96",
];

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().filter_map(|n| n.parse().ok()).collect()
}

impl AllowedHosts {
    /// `public_only`, `allow_private`, or a list of CIDRs (a bare address
    /// is one host).
    #[allow(clippy::wildcard_enum_match_arm, reason = "serde_json::Value: every other shape is refused with its text")]
    pub(crate) fn parse(value: &serde_json::Value) -> Result<AllowedHosts, String> {
        match value {
            serde_json::Value::String(s) if s == "public_only" => Ok(AllowedHosts::PublicOnly),
            serde_json::Value::String(s) if s == "allow_private" => Ok(AllowedHosts::AllowPrivate),
            serde_json::Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|item| {
                    let text = item.as_str().ok_or_else(|| format!("allowed_hosts: {item} is not a CIDR string"))?;
                    text.parse::<IpNet>()
                        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| format!("allowed_hosts: {text:?} is not a CIDR or an IP address"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(AllowedHosts::Ranges),
            other => Err(format!("allowed_hosts must be public_only, allow_private or a non-empty list of CIDRs, not {other}")),
        }
    }

    /// Whether `ip` may be connected to; the error says why not.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), String> {
        if nets(&ALWAYS_BLOCKED).iter().any(|n| n.contains(&ip)) {
            return Err(format!("{ip} is link-local, metadata, multicast or broadcast: always refused"));
        }
        let allowed = match self {
            AllowedHosts::PublicOnly => false,
            AllowedHosts::AllowPrivate => true,
            AllowedHosts::Ranges(ranges) => ranges.iter().any(|n| n.contains(&ip)),
        };
        if allowed {
            return Ok(());
        }
        if nets(&BLOCKED).iter().any(|n| n.contains(&ip)) {
            return Err(format!("{ip} is a private, loopback or reserved address (not in allowed_hosts)"));
        }
        Ok(())
    }
}

/// A URL that passed the checks, with the address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) url: url::Url,
    pub(crate) host: String,
    pub(crate) pinned: SocketAddr,
}

/// Checks a URL and resolves its host; every resolved address must pass.
/// The pinned address is the first IPv4 one (else the first).
pub(crate) fn check_url(text: &str, allowed: &AllowedHosts) -> Result<Checked, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: only http and https URLs are fetched"));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("{text:?} names no host"))?.to_owned();
    let port = url.port_or_known_default().filter(|p| *p != 0).ok_or_else(|| format!("{text:?} has no usable port"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (bare, port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}: {e}"))?.collect(),
    };
    if addresses.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    for address in &addresses {
        allowed.check(address.ip()).map_err(|why| format!("{text:?} is refused: {why}"))?;
    }
    let pinned = addresses.iter().find(|a| a.is_ipv4()).copied().unwrap_or(addresses[0]);
    Ok(Checked { url, host, pinned })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn the_three_tiers() {
        let public = AllowedHosts::PublicOnly;
        assert!(public.check(ip("93.184.216.34")).is_ok());
        for private in ["127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "100.64.0.1", "::1", "fd12::1", "::ffff:10.0.0.1"] {
            assert!(public.check(ip(private)).is_err(), "{private}");
        }
        let loopback = AllowedHosts::parse(&serde_json::json!(["127.0.0.0/8"])).unwrap_or_else(|e| panic!("{e}"));
        assert!(loopback.check(ip("127.0.0.1")).is_ok());
        assert!(loopback.check(ip("10.0.0.1")).is_err(), "only the listed range");
        let private = AllowedHosts::AllowPrivate;
        assert!(private.check(ip("10.0.0.1")).is_ok());
        for never in ["169.254.169.254", "fe80::1", "224.0.0.1", "255.255.255.255", "::ffff:169.254.169.254"] {
            assert!(private.check(ip(never)).is_err(), "{never} is refused even with allow_private");
            let everything = AllowedHosts::parse(&serde_json::json!(["0.0.0.0/0", "::/0"])).unwrap_or_else(|e| panic!("{e}"));
            assert!(everything.check(ip(never)).is_err(), "{never} is refused whatever the allowlist");
        }
    }

    #[test]
    fn urls_are_checked_before_anything_is_sent() {
        let public = AllowedHosts::PublicOnly;
        assert!(check_url("ftp://example.com/x", &public).expect_err("refused").contains("only http"));
        assert!(check_url("http://127.0.0.1:8080/", &public).expect_err("refused").contains("private, loopback"));
        assert!(check_url("http://169.254.169.254/latest/meta-data", &AllowedHosts::AllowPrivate)
            .expect_err("refused")
            .contains("always"));
        assert!(check_url("http://localhost/", &public).is_err(), "a name that resolves to loopback");
        let allowed = AllowedHosts::parse(&serde_json::json!(["127.0.0.1"])).unwrap_or_else(|e| panic!("{e}"));
        let checked = check_url("http://127.0.0.1:8200/a?b=1", &allowed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(checked.pinned, "127.0.0.1:8200".parse().unwrap_or_else(|e| panic!("{e}")));
        assert!(AllowedHosts::parse(&serde_json::json!([])).is_err());
        assert!(AllowedHosts::parse(&serde_json::json!(["not-a-net"])).is_err());
    }
}
