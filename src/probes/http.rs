//! One HTTP(S) probe, timed phase by phase the way blackbox_exporter does: DNS, connect, TLS,
//! processing (request sent to first response byte) and transfer (the body). Redirects are not
//! followed (a 3xx is a status failure unless accepted), and every resolved address is checked
//! against the safety rules, so neither a redirect nor a DNS answer can pivot a probe elsewhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use super::safety::{self, Verdict};
use crate::domain::probe::{FailureReason, Phases, ProbeResult};

/// What to probe and what counts as healthy.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub url: url::Url,
    pub timeout: Duration,
    pub accepted_status: Vec<u16>,
    pub body_checks: Vec<crate::config::BodyCheck>,
    pub expect_active_commit: Option<String>,
    pub allow_link_local: bool,
}

const BODY_LIMIT: usize = 1024 * 1024;

/// A TLS configuration trusting the web PKI roots; tests add their own CA.
#[allow(
    clippy::expect_used,
    reason = "aws-lc-rs always supports the default protocol versions"
)]
pub fn tls_config(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for r in extra_roots {
        let _ = roots.add(r.clone());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

struct Failure(FailureReason, String);

/// Runs one probe. Never returns an error: a failure is a result with a reason.
pub async fn probe(
    spec: &ProbeSpec,
    active_commit: Option<&str>,
    tls: Arc<rustls::ClientConfig>,
) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();
    let mut status = None;
    let mut cert = None;
    let run = run_phases(
        spec,
        active_commit,
        tls,
        &mut phases,
        &mut status,
        &mut cert,
    );
    let outcome = match tokio::time::timeout(spec.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(Failure(
            FailureReason::Timeout,
            format!("no complete answer within {:?}", spec.timeout),
        )),
    };
    let (ok, reason, detail) = match outcome {
        Ok(()) => (true, None, None),
        Err(Failure(r, d)) => (false, Some(r), Some(d)),
    };
    ProbeResult {
        ok,
        reason,
        detail,
        status,
        duration: secs(start.elapsed()),
        phases,
        cert_not_after: cert,
    }
}

async fn run_phases(
    spec: &ProbeSpec,
    active_commit: Option<&str>,
    tls: Arc<rustls::ClientConfig>,
    phases: &mut Phases,
    status_out: &mut Option<u16>,
    cert_out: &mut Option<DateTime<Utc>>,
) -> Result<(), Failure> {
    let url = &spec.url;
    safety::check_url(url, spec.allow_link_local)
        .map_err(|e| Failure(FailureReason::Refused, e))?;
    let host = url
        .host_str()
        .ok_or_else(|| Failure(FailureReason::Dns, "no host".into()))?
        .to_string();
    let https = url.scheme() == "https";
    let port = url
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });

    let t = Instant::now();
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        _ => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Failure(FailureReason::Dns, format!("cannot resolve {host}: {e}")))?
            .collect(),
    };
    phases.dns = secs(t.elapsed());
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| spec.allow_link_local || safety::verdict(a.ip()) == Verdict::Allowed)
        .collect();
    if allowed.is_empty() {
        return Err(Failure(
            FailureReason::Refused,
            format!("{host} resolves only to refused (link-local or metadata) addresses"),
        ));
    }

    let t = Instant::now();
    let mut last_err = String::new();
    let mut tcp = None;
    for a in &allowed {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_err = format!("{a}: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        Failure(
            FailureReason::Connect,
            format!("cannot connect: {last_err}"),
        )
    })?;
    let _ = tcp.set_nodelay(true);
    phases.connect = secs(t.elapsed());

    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let req = http::Request::get(path)
        .header(http::header::HOST, host_header)
        .header(
            http::header::USER_AGENT,
            concat!("deploywatch/", env!("CARGO_PKG_VERSION")),
        )
        .header(http::header::ACCEPT, "application/json, */*")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| Failure(FailureReason::Connect, format!("cannot build request: {e}")))?;

    let (head, body) = if https {
        let t = Instant::now();
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|e| Failure(FailureReason::Tls, format!("bad server name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| Failure(FailureReason::Tls, format!("TLS handshake failed: {e}")))?;
        phases.tls = secs(t.elapsed());
        if let Some(der) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            *cert_out = super::certificate::not_after(der.as_ref());
        }
        exchange(TokioIo::new(stream), req, phases).await?
    } else {
        exchange(TokioIo::new(tcp), req, phases).await?
    };
    let code = head.status.as_u16();
    *status_out = Some(code);
    let accepted = if spec.accepted_status.is_empty() {
        (200..300).contains(&code)
    } else {
        spec.accepted_status.contains(&code)
    };
    if !accepted {
        let where_to = head
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| format!(" (redirect to {l} not followed)"))
            .unwrap_or_default();
        return Err(Failure(
            FailureReason::Status,
            format!("HTTP {code} is not an accepted status{where_to}"),
        ));
    }
    check_body(
        &body,
        &spec.body_checks,
        spec.expect_active_commit.as_deref(),
        active_commit,
    )
    .map_err(|e| Failure(FailureReason::Body, e))
}

async fn exchange<S>(
    io: TokioIo<S>,
    req: http::Request<Empty<bytes::Bytes>>,
    phases: &mut Phases,
) -> Result<(http::response::Parts, bytes::Bytes), Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| {
            Failure(
                FailureReason::Connect,
                format!("HTTP handshake failed: {e}"),
            )
        })?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let t = Instant::now();
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| Failure(FailureReason::Connect, format!("no HTTP response: {e}")));
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return Err(e);
        }
    };
    phases.processing = secs(t.elapsed());
    let t = Instant::now();
    let (head, body) = resp.into_parts();
    let bytes = Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| Failure(FailureReason::Body, format!("cannot read the body: {e}")));
    phases.transfer = secs(t.elapsed());
    driver.abort();
    Ok((head, bytes?))
}

/// Looks up `a.b.c` in a JSON document.
fn lookup<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(v, |cur, k| match cur {
        serde_json::Value::Object(m) => m.get(k),
        serde_json::Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Body checks: each field equals its value; the commit field matches the ACTIVE deployment's.
pub fn check_body(
    body: &[u8],
    checks: &[crate::config::BodyCheck],
    commit_field: Option<&str>,
    active_commit: Option<&str>,
) -> Result<(), String> {
    if checks.is_empty() && commit_field.is_none() {
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| "the body is not JSON, but body checks are configured".to_string())?;
    for c in checks {
        match lookup(&v, &c.field) {
            Some(got) if *got == c.equals => {}
            Some(got) => return Err(format!("{} is {got}, expected {}", c.field, c.equals)),
            None => return Err(format!("{} is missing from the body", c.field)),
        }
    }
    if let (Some(field), Some(want)) = (commit_field, active_commit) {
        let got = lookup(&v, field)
            .and_then(|x| x.as_str())
            .ok_or_else(|| format!("{field} is missing from the body"))?;
        let (short, long) = if got.len() <= want.len() {
            (got, want)
        } else {
            (want, got)
        };
        if short.len() < 7 || !long.starts_with(short) {
            return Err(format!(
                "{field} is {got} but the ACTIVE deployment is {want}: the app serves a stale version"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BodyCheck;
    use serde_json::json;

    #[test]
    fn body_check_table() {
        let body = br#"{"status":"ok","checks":{"db":{"status":"up"}},"commit":"9a4df0b8e161e323bc3cdf1dc71878080fe144fa"}"#;
        let eq = |f: &str, v: serde_json::Value| BodyCheck {
            field: f.into(),
            equals: v,
        };
        let cases: Vec<(Vec<BodyCheck>, Option<&str>, Option<&str>, bool)> = vec![
            (vec![], None, None, true),
            (vec![eq("status", json!("ok"))], None, None, true),
            (vec![eq("checks.db.status", json!("up"))], None, None, true),
            (vec![eq("status", json!("down"))], None, None, false),
            (vec![eq("missing", json!(1))], None, None, false),
            (
                vec![],
                Some("commit"),
                Some("9a4df0b8e161e323bc3cdf1dc71878080fe144fa"),
                true,
            ),
            (vec![], Some("commit"), Some("9a4df0b"), true),
            (
                vec![],
                Some("commit"),
                Some("54d4a727f45723106243989b6c8b2ad4e4a9b3bb"),
                false,
            ),
            (vec![], Some("commit"), None, true),
            (vec![], Some("version"), Some("9a4df0b"), false),
        ];
        for (checks, field, active, ok) in cases {
            assert_eq!(
                check_body(body, &checks, field, active).is_ok(),
                ok,
                "{checks:?} {field:?} {active:?}"
            );
        }
        assert!(check_body(b"<html>", &[eq("status", json!("ok"))], None, None).is_err());
    }
}
