//! HTTP server limits: a slow-loris header and an unfinished body are cut off, an oversized
//! `Content-Length` is refused from the header, and many unfinished bodies do not keep memory.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

const SHORT: &str = "[http]\nheader_timeout = \"500ms\"\nbody_timeout = \"500ms\"\n";

fn addr(app: &TestApp) -> String {
    app.url.trim_start_matches("http://").to_string()
}

/// Reads until the server answers and/or closes; the deadline only keeps a broken build from
/// hanging the suite.
async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the server cut the connection off");
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn a_slow_loris_header_is_cut_off() {
    let app = spawn_app(Kind::Sqlite, SHORT, &[]).await;
    let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let answer = read_until_closed(&mut s).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    // An idle keep-alive connection is closed too.
    let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn an_unfinished_body_is_cut_off_and_a_huge_length_refused_from_the_header() {
    let app = spawn_app(Kind::Sqlite, SHORT, &[]).await;
    let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
    s.write_all(b"POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"version\":")
        .await
        .expect("write");
    let answer = read_until_closed(&mut s).await;
    assert!(!answer.contains(" 200 "), "{answer}");

    let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
    s.write_all(b"POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    app.stop().await;
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn many_unfinished_bodies_do_not_keep_memory() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[http]\nheader_timeout = \"2s\"\nbody_timeout = \"1s\"\n",
    )
    .expect("cfg");
    let db = format!("sqlite://{}", dir.path().join("dw.db").display());
    let child = Deploywatch::serve(dir.path())
        .args(&["--config", &cfg.to_string_lossy()])
        .env_remove("DEPLOYWATCH_WEBHOOK_TOKEN")
        .env("DEPLOYWATCH_DATABASE_URL", &db)
        .spawn("serve.log");
    let pid = child.child.id();
    let port = child.port;
    child.up("/health/live").await;
    let idle = vm_rss_kib(pid);
    assert!(idle > 0, "VmRSS readable");

    let chunk = vec![b'x'; 64 * 1024];
    let mut conns = Vec::new();
    for _ in 0..200 {
        let chunk = chunk.clone();
        let a = format!("127.0.0.1:{port}");
        conns.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(a).await else {
                return None;
            };
            let head = "POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return None;
            }
            // All but the last 64 KiB: the body never completes.
            for _ in 0..15 {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            Some(s)
        }));
    }
    let mut held = Vec::new();
    for c in conns {
        if let Ok(Some(s)) = c.await {
            held.push(s);
        }
    }
    // Still serving, and memory comes back near idle while the attackers' sockets stay open.
    child.up("/health/live").await;
    let bound = idle + 64 * 1024;
    until(
        &format!("VmRSS back under {bound} KiB (idle {idle} KiB)"),
        Duration::from_secs(30),
        || async {
            let now = vm_rss_kib(pid);
            seen(now < bound, format!("{now} KiB"))
        },
    )
    .await;
    let after = vm_rss_kib(pid);
    drop(held);
    drop(child);
    assert!(after < bound, "idle {idle} KiB, after {after} KiB");
}
