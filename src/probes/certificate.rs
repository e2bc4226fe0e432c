//! The one thing a probe reads from a server's certificate: when it expires (`notAfter`).
//!
//! A small DER walk instead of a full X.509 parser: the probe already trusts rustls to verify the
//! certificate, it only needs one date from it, and a full parser (x509-parser and its ASN.1,
//! big-integer and time crates) cost the release build about 28 s of compile time
//! (docs/BENCHMARKS.md, "Release build"). Pure; any input gives a date or `None`, never a panic.
//!
//! ```text
//! Certificate  ::= SEQUENCE { tbsCertificate TBSCertificate, ... }
//! TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber INTEGER,
//!                               signature AlgorithmIdentifier, issuer Name, validity Validity, ... }
//! Validity ::= SEQUENCE { notBefore Time, notAfter Time }
//! Time ::= UTCTime "YYMMDDHHMMSSZ" | GeneralizedTime "YYYYMMDDHHMMSSZ"      (RFC 5280, 4.1)
//! ```

use chrono::{DateTime, NaiveDate, Utc};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The certificate's `notAfter`, from its DER encoding.
pub fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(cert, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    for want in [INTEGER, SEQUENCE, SEQUENCE] {
        tbs = expect(tbs, want)?.1;
    }
    let (validity, _) = expect(tbs, SEQUENCE)?;
    let (_, _, rest) = element(validity)?;
    let (tag, time, _) = element(rest)?;
    parse_time(tag, time)
}

/// The element at the start of `input` when its tag is `want`: its contents and what follows it.
fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, contents, rest) = element(input)?;
    (tag == want).then_some((contents, rest))
}

/// One DER element at the start of `input`: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits count the length's own bytes; four cover any certificate.
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    (rest.len() >= len).then(|| {
        let (contents, after) = rest.split_at(len);
        (tag, contents, after)
    })
}

fn parse_time(tag: u8, text: &[u8]) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |s: &str| s.parse::<u32>().ok();
    let (year, rest) = match (tag, digits.len()) {
        // RFC 5280: a two-digit year of 50 or more is 19YY, below 50 is 20YY.
        (UTC_TIME, 12) => {
            let yy = num(&digits[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (num(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| num(&rest[i..i + 2]);
    let at = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, field(0)?, field(2)?)?
        .and_hms_opt(field(4)?, field(6)?, field(8)?)?;
    Some(at.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_expiring(unix: i64) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(unix).expect("time");
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn reads_not_after_in_both_time_encodings() {
        // 2049 is written as UTCTime, 2050 and later as GeneralizedTime (RFC 5280).
        for unix in [
            1_800_000_000, // 2027
            2_524_607_999, // 2049-12-31T23:59:59Z
            2_524_608_000, // 2050-01-01T00:00:00Z
            4_102_444_800, // 2100
        ] {
            let der = cert_expiring(unix);
            assert_eq!(
                not_after(&der).map(|t| t.timestamp()),
                Some(unix),
                "expiry {unix}"
            );
        }
    }

    #[test]
    fn times_by_the_table() {
        let table: &[(u8, &str, Option<&str>)] = &[
            (UTC_TIME, "491231235959Z", Some("2049-12-31T23:59:59+00:00")),
            (UTC_TIME, "500101000000Z", Some("1950-01-01T00:00:00+00:00")),
            (
                GENERALIZED_TIME,
                "20500101000000Z",
                Some("2050-01-01T00:00:00+00:00"),
            ),
            (UTC_TIME, "20500101000000Z", None),
            (GENERALIZED_TIME, "500101000000Z", None),
            (UTC_TIME, "491231235959", None),
            (UTC_TIME, "491331235959Z", None),
            (UTC_TIME, "49123123595aZ", None),
            (UTC_TIME, "+9123123595aZ", None),
            (UTC_TIME, "4912312359é9Z", None),
            (SEQUENCE, "491231235959Z", None),
        ];
        for &(tag, text, want) in table {
            assert_eq!(
                parse_time(tag, text.as_bytes()).map(|t| t.to_rfc3339()),
                want.map(str::to_string),
                "{tag:#x} {text:?}"
            );
        }
    }

    #[test]
    fn any_damage_gives_none_or_a_date_never_a_panic() {
        let der = cert_expiring(1_800_000_000);
        for cut in 0..der.len() {
            assert_eq!(not_after(&der[..cut]), None, "truncated at {cut}");
        }
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = der.clone();
            let at = (seed % bad.len() as u64) as usize;
            bad[at] = (seed >> 32) as u8;
            let _ = not_after(&bad);
        }
        for junk in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x80],
        ] {
            assert_eq!(not_after(junk), None);
        }
    }
}
