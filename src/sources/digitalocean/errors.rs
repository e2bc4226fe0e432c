//! What can go wrong talking to DigitalOcean, said so an on-call engineer knows the next step; and
//! the small pure helpers of URLs and answers (path segments, next-page links, log tails).

use std::time::Duration;

use url::Url;

use super::types::{self, Deployment};

#[derive(Debug, Clone, thiserror::Error)]
pub enum DoError {
    #[error(
        "the DigitalOcean API at {host} rejected the token (HTTP {status} {}); check DIGITALOCEAN_TOKEN and its scopes (app:read, app:update for rollbacks)",
        if *status == 401 { "unauthorized" } else { "forbidden" }
    )]
    Unauthorized { status: u16, host: String },
    #[error("not found on DigitalOcean: {0}")]
    NotFound(String),
    #[error("rate limited by DigitalOcean; next request allowed in {0:?}")]
    RateLimited(Duration),
    #[error("DigitalOcean answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("could not reach the DigitalOcean API: {0}")]
    Transport(String),
    #[error("DigitalOcean did not answer within {0:?}")]
    Timeout(Duration),
    #[error("DigitalOcean sent a response that could not be parsed: {0}")]
    Decode(String),
}

impl DoError {
    pub(super) fn retryable(&self) -> bool {
        match self {
            DoError::Transport(_) | DoError::Timeout(_) => true,
            DoError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

pub(super) fn parse_deployment_envelope(body: &[u8]) -> Result<Deployment, DoError> {
    #[derive(serde::Deserialize)]
    struct Env {
        deployment: Deployment,
    }
    serde_json::from_slice::<Env>(body)
        .map(|e| e.deployment)
        .map_err(|e| DoError::Decode(e.to_string()))
}

/// Percent-encodes one path segment, so an id can never change the path.
/// Percent-encodes one path segment (RFC 3986: everything but unreserved characters), so an id
/// can neither escape the path nor be read as form encoding (a space is `%20`, never `+`).
pub(super) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Pure: where `links.pages.next` points, absolute or relative, refused unless it is on the API
/// base's own origin (the bearer token goes with it).
pub fn next_page_url(base: &Url, next: &str) -> Result<Url, DoError> {
    let u = Url::parse(next)
        .or_else(|_| base.join(next))
        .map_err(|e| DoError::Decode(format!("bad pagination link {next:?}: {e}")))?;
    if u.origin() != base.origin() {
        return Err(DoError::Decode(format!(
            "pagination link points to another host ({}), not the API base {}; not followed",
            u.host_str().unwrap_or("none"),
            base.host_str().unwrap_or("none")
        )));
    }
    Ok(u)
}

/// Pure: the cause of a transport error, from its error chain, and the next step to take.
pub fn transport_cause(chain: &str) -> (&'static str, &'static str) {
    let c = chain.to_ascii_lowercase();
    if c.contains("dns error")
        || c.contains("failed to lookup address")
        || c.contains("name or service not known")
        || c.contains("no such host")
        || c.contains("name resolution")
    {
        (
            "DNS lookup failed",
            "check the host in digitalocean.api_url / DEPLOYWATCH_DO_API_URL and this machine's DNS",
        )
    } else if c.contains("connection refused") {
        (
            "connection refused",
            "check the host and port in digitalocean.api_url / DEPLOYWATCH_DO_API_URL and any proxy or firewall",
        )
    } else if c.contains("certificate") || c.contains("tls") || c.contains("handshake") {
        (
            "TLS handshake failed",
            "check the system clock, any TLS-intercepting proxy, and that the URL is the real API over https",
        )
    } else {
        (
            "network error",
            "check connectivity from this machine to the API host",
        )
    }
}

pub(super) fn describe_transport(host: &str, chain: &str) -> String {
    let (cause, next) = transport_cause(chain);
    format!("{host}: {cause} ({chain}); {next}")
}

/// reqwest errors quote the URL, which for log archives may be pre-signed; keep only the kind.
pub(super) fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

pub(super) fn error_message(body: &[u8]) -> String {
    let parsed: Option<types::ApiErrorBody> = serde_json::from_slice(body).ok();
    match parsed.and_then(|p| p.message) {
        Some(m) => m.chars().take(200).collect(),
        None => {
            let text =
                String::from_utf8_lossy(&body[..body.len().min(120)]).replace(['\n', '\r'], " ");
            if text.trim_start().starts_with('<') {
                "an HTML error page".to_string()
            } else {
                text
            }
        }
    }
}

pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 5), "");
    }

    #[test]
    fn segments_cannot_escape_the_path() {
        assert_eq!(seg("../../v2/account"), "..%2F..%2Fv2%2Faccount");
        assert_eq!(seg("abc-123"), "abc-123");
        assert_eq!(seg("a b"), "a%20b");
        assert_eq!(seg("a+b"), "a%2Bb");
        assert_eq!(seg("a?b#c%d"), "a%3Fb%23c%25d");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn transport_causes_name_the_next_step() {
        let table = [
            (
                "error sending request: client error (Connect): dns error: failed to lookup address information: Name or service not known",
                "DNS lookup failed",
            ),
            (
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                "connection refused",
            ),
            (
                "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer",
                "TLS handshake failed",
            ),
            ("error sending request: connection reset", "network error"),
        ];
        for (chain, want) in table {
            assert_eq!(transport_cause(chain).0, want, "{chain}");
        }
        let e = DoError::Unauthorized {
            status: 401,
            host: "api.digitalocean.com".into(),
        };
        let m = e.to_string();
        assert!(
            m.contains("api.digitalocean.com")
                && m.contains("401 unauthorized")
                && m.contains("check DIGITALOCEAN_TOKEN"),
            "{m}"
        );
    }

    #[test]
    fn next_page_links_absolute_or_relative_on_the_same_origin() {
        let base = Url::parse("http://127.0.0.1:8080").unwrap();
        let table = [
            (
                "http://127.0.0.1:8080/v2/apps?page=2&per_page=200",
                Some("http://127.0.0.1:8080/v2/apps?page=2&per_page=200"),
            ),
            (
                "/v2/apps?page=3",
                Some("http://127.0.0.1:8080/v2/apps?page=3"),
            ),
            ("http://127.0.0.1:9999/v2/apps?page=2", None),
            ("https://127.0.0.1:8080/v2/apps?page=2", None),
            ("https://evil.example/v2/apps?page=2", None),
        ];
        for (next, want) in table {
            let got = next_page_url(&base, next).ok().map(|u| u.to_string());
            assert_eq!(got.as_deref(), want, "{next}");
        }
    }

    #[test]
    fn error_messages_are_short_and_readable() {
        assert_eq!(
            error_message(br#"{"id":"x","message":"API rate limit exceeded."}"#),
            "API rate limit exceeded."
        );
        assert_eq!(
            error_message(b"<html><body>Bad gateway</body></html>"),
            "an HTML error page"
        );
    }
}
