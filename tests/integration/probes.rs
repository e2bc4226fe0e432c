//! Health probes against real HTTP and HTTPS servers on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploywatch::server::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// What a path answers: status, body, extra headers, delay before answering.
#[derive(Clone)]
pub(crate) struct Answer {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
    delay: Duration,
}

pub(crate) fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: body.into(),
        headers: vec![],
        delay: Duration::ZERO,
    }
}

/// A tiny scriptable HTTP/1.1 server (optionally TLS); each path answers from a queue, the last
/// answer repeating.
#[derive(Clone, Default)]
pub(crate) struct Script(Arc<Mutex<HashMap<String, Vec<Answer>>>>);

impl Script {
    pub(crate) fn set(&self, path: &str, answers: Vec<Answer>) {
        self.0.lock().expect("lock").insert(path.into(), answers);
    }
    fn next(&self, path: &str) -> Answer {
        let mut g = self.0.lock().expect("lock");
        match g.get_mut(path) {
            Some(q) if q.len() > 1 => q.remove(0),
            Some(q) => q[0].clone(),
            None => answer(404, "{}"),
        }
    }
}

async fn handle<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S, script: Script) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let a = script.next(&path);
    tokio::time::sleep(a.delay).await;
    let mut resp = format!(
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        a.status,
        a.body.len()
    );
    for (k, v) in &a.headers {
        resp.push_str(&format!("{k}: {v}\r\n"));
    }
    resp.push_str("\r\n");
    resp.push_str(&a.body);
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

async fn http_server(script: Script) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(handle(s, script.clone()));
        }
    });
    format!("http://{addr}")
}

pub(crate) struct Tls {
    pub(crate) url: String,
    pub(crate) ca: rustls::pki_types::CertificateDer<'static>,
    not_after: i64,
}

pub(crate) async fn https_server(script: Script) -> Tls {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let not_after = time_from_unix(chrono::Utc::now().timestamp() + 20 * 86400);
    params.not_after = not_after;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let der = cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key_der)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, script) = (acceptor.clone(), script.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    handle(tls, script).await;
                }
            });
        }
    });
    Tls {
        url: format!("https://localhost:{port}"),
        ca: der,
        not_after: not_after.unix_timestamp(),
    }
}

fn time_from_unix(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(secs).expect("time")
}

fn target(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[health.targets]]\nname = \"{name}\"\napp = \"api\"\nurl = \"{url}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfailure_threshold = 1\n{extra}\n"
    )
}

fn series(m: &str, metric_name: &str, target: &str) -> Option<f64> {
    metric(
        m,
        &format!("{metric_name}{{app=\"api\",target=\"{target}\"}}"),
    )
}

fn reason(m: &str, target: &str) -> Option<String> {
    for r in [
        "dns", "connect", "tls", "timeout", "status", "body", "refused",
    ] {
        if metric(
            m,
            &format!(
                "deploywatch_health_probe_failure{{app=\"api\",reason=\"{r}\",target=\"{target}\"}}"
            ),
        ) == Some(1.0)
        {
            return Some(r.to_string());
        }
    }
    None
}

#[tokio::test]
async fn success_and_each_failure_reason() {
    let script = Script::default();
    script.set(
        "/health/ready",
        vec![answer(200, r#"{"status":"ok","checks":{"db":"up"}}"#)],
    );
    script.set("/health/down", vec![answer(503, r#"{"status":"failing"}"#)]);
    script.set(
        "/health/slow",
        vec![Answer {
            delay: Duration::from_secs(2),
            ..answer(200, "{}")
        }],
    );
    script.set(
        "/health/wrongbody",
        vec![answer(200, r#"{"status":"degraded"}"#)],
    );
    script.set(
        "/health/redirect",
        vec![Answer {
            headers: vec![(
                "location".into(),
                "http://169.254.169.254/latest/meta-data/".into(),
            )],
            ..answer(302, "")
        }],
    );
    let base = http_server(script.clone()).await;
    let untrusted = https_server(script.clone()).await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let body_check = "[[health.targets.body_checks]]\nfield = \"status\"\nequals = \"ok\"";
    let toml = [
        target(
            "ok",
            &format!("{base}/health/ready"),
            "[[health.targets.body_checks]]\nfield = \"checks.db\"\nequals = \"up\"",
        ),
        target("status", &format!("{base}/health/down"), ""),
        target("timeout", &format!("{base}/health/slow"), ""),
        target("body", &format!("{base}/health/wrongbody"), body_check),
        target("connect", &format!("{closed}/health/live"), ""),
        target("dns", "http://no-such-host.invalid/health/live", ""),
        target("tls", &format!("{}/health/ready", untrusted.url), ""),
        target("metadata", "http://169.254.169.254/latest/meta-data/", ""),
        target(
            "metadata-numeric",
            "http://2852039166/latest/meta-data/",
            "",
        ),
        target("metadata-v6", "http://[::ffff:169.254.169.254]/", ""),
        target("metadata-siit", "http://[::ffff:0:a9fe:a9fe]/", ""),
        target("metadata-6to4", "http://[2002:a9fe:a9fe::1]/", ""),
        target("pivot", &format!("{base}/health/redirect"), ""),
    ]
    .join("\n");
    let app = spawn_app(Kind::Sqlite, &toml, &[]).await;
    let want = [
        ("status", "status"),
        ("timeout", "timeout"),
        ("body", "body"),
        ("connect", "connect"),
        ("dns", "dns"),
        ("tls", "tls"),
        ("metadata", "refused"),
        ("metadata-numeric", "refused"),
        ("metadata-v6", "refused"),
        ("metadata-siit", "refused"),
        ("metadata-6to4", "refused"),
        ("pivot", "status"),
    ];
    until(
        "probe \"ok\" succeeding and a failure reason for every other target",
        Duration::from_secs(15),
        || async {
            let m = app.metrics().await;
            let ok = series(&m, "deploywatch_health_probe_success", "ok");
            let reasons: Vec<(&str, Option<String>)> =
                want.iter().map(|(t, _)| (*t, reason(&m, t))).collect();
            seen(
                ok == Some(1.0) && reasons.iter().all(|(_, r)| r.is_some()),
                (ok, reasons),
            )
        },
    )
    .await;
    let m = app.metrics().await;
    for (t, r) in want {
        assert_eq!(reason(&m, t).as_deref(), Some(r), "target {t}");
        assert_eq!(
            series(&m, "deploywatch_health_probe_success", t),
            Some(0.0),
            "target {t}"
        );
    }
    assert_eq!(
        series(&m, "deploywatch_health_probe_status_code", "ok"),
        Some(200.0)
    );
    assert_eq!(
        series(&m, "deploywatch_health_probe_status_code", "pivot"),
        Some(302.0),
        "the redirect was not followed"
    );
    assert_eq!(reason(&m, "ok"), None);
    assert!(metric(&m, "deploywatch_health_probe_phase_duration_seconds{app=\"api\",phase=\"connect\",target=\"ok\"}").is_some());
    let st: serde_json::Value = app.get("/api/v1/status").await.json().await.expect("json");
    let pivot = st["apps"][0]["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .find(|p| p["target"] == "pivot")
        .cloned()
        .expect("pivot");
    assert!(
        pivot["last_result"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not followed"),
        "{pivot}"
    );
    app.stop().await;
}

#[tokio::test]
async fn tls_expiry_is_reported_for_a_trusted_certificate() {
    let script = Script::default();
    script.set("/health/live", vec![answer(200, "{}")]);
    let tls = https_server(script).await;
    let toml = target("secure", &format!("{}/health/live", tls.url), "");
    let app = spawn_app_on(
        sqlite_db(),
        &toml,
        &[],
        ServeOptions {
            extra_roots: vec![tls.ca.clone()],
        },
    )
    .await;
    app.until_metric(
        "deploywatch_health_probe_success{app=\"api\",target=\"secure\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    let m = app.metrics().await;
    assert_eq!(
        series(
            &m,
            "deploywatch_health_probe_tls_cert_expiry_timestamp_seconds",
            "secure"
        ),
        Some(tls.not_after as f64)
    );
    assert!(metric(&m, "deploywatch_health_probe_phase_duration_seconds{app=\"api\",phase=\"tls\",target=\"secure\"}").is_some_and(|v| v > 0.0));
    app.stop().await;
}

#[tokio::test]
async fn thresholds_absorb_a_single_blip() {
    let script = Script::default();
    // ok, one failure, ok forever; then (after we flip it) failures forever.
    script.set(
        "/health/ready",
        vec![
            answer(200, "{}"),
            answer(200, "{}"),
            answer(503, "{}"),
            answer(200, "{}"),
        ],
    );
    let base = http_server(script.clone()).await;
    let toml = format!(
        "[[health.targets]]\nname = \"blippy\"\napp = \"api\"\nurl = \"{base}/health/ready\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nfailure_threshold = 3\nsuccess_threshold = 2\n"
    );
    let app = spawn_app(Kind::Sqlite, &toml, &[]).await;
    let mut saw_blip = false;
    for _ in 0..30 {
        let m = app.metrics().await;
        if metric(
            &m,
            "deploywatch_health_probes_total{app=\"api\",result=\"failure\",target=\"blippy\"}",
        ) == Some(1.0)
        {
            saw_blip = true;
        }
        assert_ne!(
            series(&m, "deploywatch_health_probe_success", "blippy"),
            Some(0.0),
            "one blip never flips health"
        );
        // Time must pass: health must hold at every sample across the blip, not reach a state.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_blip, "the blip was probed");
    script.set("/health/ready", vec![answer(503, "{}")]);
    app.until_metric(
        "deploywatch_health_probe_success{app=\"api\",target=\"blippy\"}",
        0.0,
        Duration::from_secs(5),
    )
    .await;
    let m = app.metrics().await;
    assert!(
        series(
            &m,
            "deploywatch_health_probe_consecutive_failures",
            "blippy"
        )
        .unwrap_or(0.0)
            >= 3.0
    );
    script.set("/health/ready", vec![answer(200, "{}")]);
    app.until_metric(
        "deploywatch_health_probe_success{app=\"api\",target=\"blippy\"}",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn the_commit_check_catches_a_stale_deployment_and_discovery_finds_spec_paths() {
    let active = "9a4df0b8e161e323bc3cdf1dc71878080fe144fa";
    let sim = SimBuilder::new()
        .step(Duration::from_millis(100))
        .app("api", active)
        .start()
        .await;
    let (base, live) = (&sim.url, sim.health_url("api", "ready"));
    let toml = format!(
        "[digitalocean]\napi_url = \"{base}\"\npoll_interval = \"200ms\"\n\n[health]\ndiscover = true\n\n[[health.targets]]\nname = \"api-commit\"\napp = \"api\"\nurl = \"{live}\"\ninterval = \"150ms\"\ntimeout = \"100ms\"\nfailure_threshold = 1\nexpect_active_commit = \"commit\"\n"
    );
    let app = spawn_app(Kind::Sqlite, &toml, &[("DIGITALOCEAN_TOKEN", "sim-token")]).await;
    until(
        "probes api-commit, api-live and api-ready all succeeding",
        Duration::from_secs(15),
        || async {
            let m = app.metrics().await;
            let got = ["api-commit", "api-live", "api-ready"]
                .map(|t| (t, series(&m, "deploywatch_health_probe_success", t)));
            seen(got.iter().all(|(_, v)| *v == Some(1.0)), got)
        },
    )
    .await;
    // The app serves an old build: the commit in its health body no longer matches ACTIVE.
    sim.set_health("api", 200, Some("54d4a727f45723106243989b6c8b2ad4e4a9b3bb"));
    until(
        "api-commit to fail for reason \"body\"",
        Duration::from_secs(5),
        || async {
            let r = reason(&app.metrics().await, "api-commit");
            seen(r.as_deref() == Some("body"), r)
        },
    )
    .await;
    let m = app.metrics().await;
    assert_eq!(
        series(&m, "deploywatch_health_probe_success", "api-commit"),
        Some(0.0)
    );
    assert_eq!(
        series(
            &m,
            "deploywatch_health_probe_last_attempt_success",
            "api-live"
        ),
        Some(1.0),
        "other probes are unaffected"
    );
    app.stop().await;
}
