//! Which addresses a probe may connect to. Pure, so it is tested with tables and fuzzed.
//!
//! The cloud metadata service (169.254.169.254, and AWS's fd00:ec2::254) hands out credentials to
//! whoever asks from inside the machine; a prober that follows a redirect or a DNS answer there is
//! an SSRF pivot. Link-local addresses are refused in every spelling unless a target allows them:
//! the `url` crate already normalises numeric spellings (`http://2852039166/`, `0xA9FEA9FE`,
//! `169.254.43518`) to the dotted form; IPv4-mapped and IPv4-compatible IPv6 are unwrapped here.

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

fn v6_verdict(ip: Ipv6Addr) -> Verdict {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_verdict(v4);
    }
    let seg = ip.segments();
    // IPv4-compatible (deprecated ::a.b.c.d), still routed by some stacks.
    if seg[..6].iter().all(|s| *s == 0) && (seg[6] != 0 || seg[7] > 1) {
        let v4 = Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        );
        return v4_verdict(v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96 embedding an IPv4 address.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|s| *s == 0) {
        let v4 = Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        );
        return v4_verdict(v4);
    }
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
