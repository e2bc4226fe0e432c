//! Which addresses a probe may connect to. Pure, so it is tested with tables and fuzzed.
//!
//! The cloud metadata service (169.254.169.254, and AWS's fd00:ec2::254) hands out credentials to
//! whoever asks from inside the machine; a prober that follows a redirect or a DNS answer there is
//! an SSRF pivot. Link-local addresses are refused in every spelling unless a target allows them:
//! the `url` crate already normalises numeric spellings (`http://2852039166/`, `0xA9FEA9FE`,
//! `169.254.43518`) to the dotted form; every IPv6 form embedding an IPv4 address is unwrapped
//! here (see [`embedded_v4`]) before the check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Link-local or a known metadata address.
    Refused(&'static str),
}

fn v4_verdict(ip: Ipv4Addr) -> Verdict {
    if ip.is_link_local() {
        return Verdict::Refused("link-local address (cloud metadata range 169.254.0.0/16)");
    }
    if ip.is_unspecified() || ip.is_broadcast() {
        return Verdict::Refused("unspecified or broadcast address");
    }
    Verdict::Allowed
}

/// Pure: the IPv4 address an IPv6 address embeds, in every form a stack may route to it:
/// mapped `::ffff:a.b.c.d`, SIIT-translated `::ffff:0:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::/96` and the local-use `64:ff9b:1::/48` (RFC 8215, suffix form), and 6to4
/// `2002:AABB:CCDD::/16`. The check runs on the embedded address so no spelling slips past it.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let tail =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // Mapped ::ffff:a.b.c.d
    if seg[..5].iter().all(|s| *s == 0) && seg[5] == 0xffff {
        return Some(tail(seg[6], seg[7]));
    }
    // SIIT translated ::ffff:0:a.b.c.d
    if seg[..4].iter().all(|s| *s == 0) && seg[4] == 0xffff && seg[5] == 0 {
        return Some(tail(seg[6], seg[7]));
    }
    // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks); not :: or ::1.
    if seg[..6].iter().all(|s| *s == 0) && (seg[6] != 0 || seg[7] > 1) {
        return Some(tail(seg[6], seg[7]));
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|s| *s == 0) {
        return Some(tail(seg[6], seg[7]));
    }
    // NAT64 local-use prefix 64:ff9b:1::/48: the address sits in the last 32 bits.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
        return Some(tail(seg[6], seg[7]));
    }
    // 6to4 2002:AABB:CCDD::/16.
    if seg[0] == 0x2002 {
        return Some(tail(seg[1], seg[2]));
    }
    None
}

fn v6_verdict(ip: Ipv6Addr) -> Verdict {
    if let Some(v4) = embedded_v4(ip) {
        return v4_verdict(v4);
    }
    let seg = ip.segments();
    if (seg[0] & 0xffc0) == 0xfe80 {
        return Verdict::Refused("link-local IPv6 address (fe80::/10)");
    }
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return Verdict::Refused("cloud metadata address fd00:ec2::254");
    }
    if ip.is_unspecified() {
        return Verdict::Refused("unspecified address");
    }
    Verdict::Allowed
}

pub fn verdict(ip: IpAddr) -> Verdict {
    match ip {
        IpAddr::V4(v4) => v4_verdict(v4),
        IpAddr::V6(v6) => v6_verdict(v6),
    }
}

/// The check applied to a configured or discovered URL before any DNS lookup.
pub fn check_url(url: &url::Url, allow_link_local: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme {:?} is not probed; use http or https",
            url.scheme()
        ));
    }
    let host = url.host().ok_or("the URL has no host")?;
    if allow_link_local {
        return Ok(());
    }
    let ip = match host {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(d) => {
            // "metadata.google.internal" and friends resolve to the metadata service.
            let d = d.to_ascii_lowercase();
            if d == "metadata.google.internal"
                || d.ends_with(".metadata.google.internal")
                || d == "metadata"
            {
                return Err("refused: cloud metadata host name".into());
            }
            return Ok(());
        }
    };
    match verdict(ip) {
        Verdict::Allowed => Ok(()),
        Verdict::Refused(why) => Err(format!(
            "refused: {why}; set allow_link_local on the target to probe it anyway"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_spellings_of_the_metadata_service_are_refused() {
        let refused = [
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0xA9FEA9FE/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[::169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://0.0.0.0/",
            "file:///etc/passwd",
            "gopher://127.0.0.1/",
        ];
        for u in refused {
            let url = url::Url::parse(u).expect("parses");
            assert!(check_url(&url, false).is_err(), "{u} should be refused");
        }
        let allowed = [
            "http://127.0.0.1:8080/health/live",
            "https://api.example.com/health/ready",
            "http://[::1]:9/",
            "http://10.0.0.5/",
        ];
        for u in allowed {
            let url = url::Url::parse(u).expect("parses");
            assert!(check_url(&url, false).is_ok(), "{u} should be allowed");
        }
        let opt_in = url::Url::parse("http://169.254.169.254/").expect("parses");
        assert!(check_url(&opt_in, true).is_ok());
    }

    #[test]
    fn every_ipv6_spelling_of_the_metadata_address_is_refused() {
        let spellings = [
            ("::ffff:169.254.169.254", "mapped"),
            ("::ffff:a9fe:a9fe", "mapped, hex"),
            ("::ffff:0:169.254.169.254", "SIIT"),
            ("::ffff:0:a9fe:a9fe", "SIIT, hex"),
            ("::169.254.169.254", "compatible"),
            ("::a9fe:a9fe", "compatible, hex"),
            ("64:ff9b::169.254.169.254", "NAT64"),
            ("64:ff9b::a9fe:a9fe", "NAT64, hex"),
            ("64:ff9b:1::a9fe:a9fe", "NAT64 local-use"),
            ("64:ff9b:1:ffff::a9fe:a9fe", "NAT64 local-use, other subnet"),
            ("2002:a9fe:a9fe::", "6to4"),
            ("2002:a9fe:a9fe::1", "6to4, host 1"),
            ("2002:a9fe:a9fe:ffff:ffff:ffff:ffff:ffff", "6to4, all ones"),
        ];
        for (s, form) in spellings {
            let ip: Ipv6Addr = s.parse().expect(s);
            assert_eq!(
                embedded_v4(ip),
                Some(Ipv4Addr::new(169, 254, 169, 254)),
                "{form}: {s}"
            );
            assert!(
                matches!(verdict(IpAddr::V6(ip)), Verdict::Refused(_)),
                "{form}: {s}"
            );
            let url = url::Url::parse(&format!("http://[{s}]/")).expect("parses");
            assert!(check_url(&url, false).is_err(), "{form}: {s}");
        }
        for (s, ok) in [
            ("::1", true),
            ("::", false),
            ("2001:db8::1", true),
            ("2002:0a00:0005::1", true),
            ("::ffff:10.0.0.5", true),
            ("64:ff9b::8.8.8.8", true),
        ] {
            let ip: IpAddr = s.parse().expect(s);
            assert_eq!(verdict(ip) == Verdict::Allowed, ok, "{s}");
        }
    }

    #[test]
    fn resolved_addresses_are_checked_too() {
        for (ip, ok) in [
            ("169.254.169.254", false),
            ("169.254.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("fe80::abcd", false),
            ("127.0.0.1", true),
            ("::1", true),
            ("93.184.216.34", true),
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(verdict(ip) == Verdict::Allowed, ok, "{ip}");
        }
    }
}
