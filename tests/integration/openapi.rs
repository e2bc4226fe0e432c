//! `docs/openapi.json` (served at `/api/v1/openapi.json`) against the running server, with
//! schemathesis: generated requests, positive and negative, must never get a 5xx, and every answer
//! must match the document (status codes, content types, response schemas, auth).

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::Deploywatch;

/// `scripts/test.sh` installs schemathesis into this venv (pinned version).
fn schemathesis() -> PathBuf {
    let p = std::env::var("DEPLOYWATCH_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/schemathesis-venv/bin/schemathesis")
        });
    assert!(
        p.exists(),
        "schemathesis is needed at {} (scripts/test.sh installs it: python3 -m venv target/schemathesis-venv && \
         target/schemathesis-venv/bin/pip install schemathesis==4.32.5)",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_matches_the_running_server() {
    let st = schemathesis();
    let dir = tempfile::tempdir().expect("tmp");
    let server = Deploywatch::serve(dir.path())
        .env("DEPLOYWATCH_WEBHOOK_TOKEN", "openapi-test-token")
        .env_remove("DIGITALOCEAN_TOKEN")
        .spawn("serve.log");
    let url = server.url.clone();
    let c = reqwest::Client::new();
    server.up("/health/ready").await;

    // The served document is the one in the repository, behind the token like every API route.
    let anon = c
        .get(format!("{url}/api/v1/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(anon.status(), 401);
    let served: serde_json::Value = c
        .get(format!("{url}/api/v1/openapi.json"))
        .bearer_auth("openapi-test-token")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let file: serde_json::Value = serde_json::from_str(include_str!("../../docs/openapi.json"))
        .expect("docs/openapi.json is JSON");
    assert_eq!(served, file);

    // schemathesis keeps a cache in its working directory: a temporary one, not the repository.
    let work = tempfile::tempdir().expect("tmp");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(work.path())
            .args([
                "run",
                &format!("{url}/api/v1/openapi.json"),
                "-H",
                "Authorization: Bearer openapi-test-token",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,ignored_auth,missing_required_header,\
                 unsupported_method",
                "--max-examples",
                "40",
                "--seed",
                "7",
                "--no-color",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .expect("schemathesis runs")
    })
    .await
    .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(
        text.contains("Tested: 15"),
        "every operation was exercised:\n{text}"
    );
}
