//! What the commands share to reach a deploywatch server or to listen: an HTTP client with a
//! bounded timeout, the bearer token from the environment, and a bind whose errors say what to do.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// Binds the listener; the error says what to do about a port in use.
pub async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: the port is in use by another process. Stop it, or pass \
             another address with --listen (or DEPLOYWATCH_LISTEN), e.g. --listen 127.0.0.1:0 for any free port"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {addr}: that address is not on this machine; use 127.0.0.1 or 0.0.0.0"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot listen on {addr}: permission denied (ports below 1024 need privileges); pick a port above 1024"
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    })
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_default()
}

pub fn auth(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match std::env::var("DEPLOYWATCH_WEBHOOK_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        Some(t) => req.bearer_auth(SecretString::from(t).expose_secret()),
        None => req,
    }
}
