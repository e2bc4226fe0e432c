//! Probe-target checks: any URL the parser accepts is either refused or, if allowed, does not
//! name a link-local or metadata address in any spelling.
#![no_main]

use deploywatch::probes::safety::{Verdict, check_url, verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(u) = url::Url::parse(s) else { return };
    if check_url(&u, false).is_ok() {
        match u.host() {
            Some(url::Host::Ipv4(ip)) => assert_eq!(verdict(ip.into()), Verdict::Allowed),
            Some(url::Host::Ipv6(ip)) => assert_eq!(verdict(ip.into()), Verdict::Allowed),
            _ => {}
        }
        assert!(matches!(u.scheme(), "http" | "https"));
    }
});
