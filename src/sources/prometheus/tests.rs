//! The client against a real HTTP server on loopback (axum on port 0): answers as Prometheus
//! sends them, its errors, a slow server and a closed port.

use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{TimeZone, Utc};

use super::*;

async fn serve(router: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Url::parse(&format!("http://{addr}/prom")).unwrap()
}

type Params = Query<std::collections::HashMap<String, String>>;

/// Answers by query: `up` a matrix, `inst` a vector, `one` a scalar, `bad` a 400 error,
/// `html` a proxy's 502 page, `slow` after 2 s; echoes the parameters in a label.
async fn fake(Query(q): Params) -> axum::response::Response {
    let echo = format!(
        "{}|{}|{}",
        q.get("start").cloned().unwrap_or_default(),
        q.get("end").cloned().unwrap_or_default(),
        q.get("step").cloned().unwrap_or_default()
    );
    let json = |v: serde_json::Value| {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            v.to_string(),
        )
            .into_response()
    };
    match q.get("query").map(String::as_str).unwrap_or("") {
        "up" => json(serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"job": "api", "echo": echo}, "values": [[1700000030, "0.2"], [1700000000, "0.1"], [1700000060.5, "NaN"], [1700000090, "+Inf"]]},
            {"metric": {"job": "b"}, "values": [[1700000000, "3"], [1700000030, "bogus"]]}
        ]}})),
        "sum(rate(x[5m])) by (le)" => json(serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [1700000000.123, "0.05"]}
        ]}})),
        "one" => json(serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "42"]}})),
        "bad" => (StatusCode::BAD_REQUEST, serde_json::json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}).to_string()).into_response(),
        "html" => (StatusCode::BAD_GATEWAY, "<html><body>502 Bad Gateway</body></html>").into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            json(serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": []}}))
        }
        "weird" => json(serde_json::json!({"status": "success", "data": {"resultType": "streams", "result": []}})),
        _ => json(serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": []}})),
    }
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).single().unwrap()
}

#[tokio::test]
async fn range_and_instant_queries_read_prometheus_answers() {
    let router = Router::new()
        .route("/prom/api/v1/query_range", get(fake))
        .route("/prom/api/v1/query", get(fake));
    let base = serve(router).await;
    let c = PromClient::new(Duration::from_secs(1));

    let series = c
        .query_range_series(&base, "up", t(0), t(90), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].labels["echo"], "1700000000.000|1700000090.000|30");
    // Sorted by time; an unparseable sample is left out.
    assert_eq!(series[0].samples[0], (t(0), 0.1));
    assert_eq!(series[1].samples.len(), 1);
    let samples = c
        .query_range(&base, "up", t(0), t(90), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        samples,
        vec![0.1, 0.2, f64::INFINITY, 3.0],
        "NaN is no data"
    );

    let v = c
        .query(&base, "sum(rate(x[5m])) by (le)", t(0))
        .await
        .unwrap();
    assert_eq!(v, vec![0.05]);
    assert_eq!(c.query(&base, "one", t(0)).await.unwrap(), vec![42.0]);
    assert!(c.query(&base, "nothing", t(0)).await.unwrap().is_empty());

    // The free function is the same call with its own client.
    let free = query_range(
        &base,
        "up",
        t(0),
        t(90),
        Duration::from_secs(30),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(free.len(), 4);
}

#[tokio::test]
async fn errors_name_the_url_and_the_query() {
    let router = Router::new().route("/prom/api/v1/query_range", get(fake));
    let base = serve(router).await;
    let c = PromClient::new(Duration::from_millis(500));
    let ask = |q: &'static str| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            c.query_range(&base, q, t(0), t(60), Duration::from_secs(15))
                .await
                .unwrap_err()
        }
    };

    let e = ask("bad").await;
    assert!(
        matches!(e, PromError::Query { ref error_type, .. } if error_type == "bad_data"),
        "{e:?}"
    );
    let e = ask("html").await;
    assert!(
        matches!(e, PromError::Http { status: 502, ref message, .. } if message == "an HTML error page"),
        "{e:?}"
    );
    let e = ask("slow").await;
    assert!(matches!(e, PromError::Timeout { .. }), "{e:?}");
    let e = ask("weird").await;
    assert!(matches!(e, PromError::Decode { .. }), "{e:?}");
    for e in [ask("bad").await, ask("slow").await] {
        let m = e.to_string();
        assert!(
            m.contains(&base.as_str().trim_end_matches('/').to_string()),
            "{m}"
        );
        assert!(m.contains("\"bad\"") || m.contains("\"slow\""), "{m}");
    }

    // Nothing listens on a port just released.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = Url::parse(&format!("http://{}", l.local_addr().unwrap())).unwrap();
    drop(l);
    let e = c
        .query_range(&closed, "up", t(0), t(60), Duration::from_secs(15))
        .await
        .unwrap_err();
    assert!(matches!(e, PromError::Transport { .. }), "{e:?}");
    assert!(e.to_string().contains("prometheus_url"), "{e}");

    let e = c
        .query_range(
            &Url::parse("ftp://x").unwrap(),
            "up",
            t(0),
            t(60),
            Duration::from_secs(15),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, PromError::BadUrl { .. }), "{e:?}");
}

#[test]
fn answers_parse_without_a_server() {
    let table: [(u16, &str, Result<usize, &str>); 6] = [
        (
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            Ok(0),
        ),
        (
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"-Inf"]}]}}"#,
            Ok(1),
        ),
        (
            422,
            r#"{"status":"error","errorType":"execution","error":"query timed out"}"#,
            Err("query"),
        ),
        (503, "Service Unavailable", Err("http")),
        (200, "{", Err("decode")),
        (200, r#"{"status":"success"}"#, Err("decode")),
    ];
    for (status, body, want) in table {
        let got = parse_answer(status, body.as_bytes())
            .map(|s| s.len())
            .map_err(|f| match f {
                Fault::Http(..) => "http",
                Fault::Query(..) => "query",
                Fault::Decode(..) => "decode",
            });
        assert_eq!(got, want, "{status} {body}");
    }
    assert_eq!(
        endpoint(&Url::parse("http://h:9090").unwrap(), "api/v1/query")
            .unwrap()
            .as_str(),
        "http://h:9090/api/v1/query"
    );
    assert_eq!(
        endpoint(&Url::parse("http://h/prom?x=1").unwrap(), "api/v1/query")
            .unwrap()
            .as_str(),
        "http://h/prom/api/v1/query"
    );
}
