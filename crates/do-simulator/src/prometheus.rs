//! A tiny fake Prometheus on the simulator's listener (`/api/v1/query_range`, `/api/v1/query`,
//! GET or form POST, no token), for the regression a `LatencyRegression` release shows only
//! there. Each scripted query answers one series: its baseline value before a switch time and its
//! regressed value after, with a small deterministic jitter so a rank test sees untied samples.
//! An unscripted query answers an empty result, as Prometheus does for a series it lacks.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::Simulator;
use crate::state::{PromScript, Script, SimState, Switch, lock};

/// Prometheus refuses range queries over this many points per series.
const MAX_POINTS: i64 = 11_000;

impl PromScript {
    fn switch_time(&self, s: &SimState) -> Option<DateTime<Utc>> {
        match self.switch.as_ref()? {
            Switch::At(t) => Some(*t),
            Switch::RegressionActive(app) => {
                let a = s.apps.iter().find(|a| &a.name == app || &a.id == app)?;
                let d = a
                    .deployments
                    .iter()
                    .find(|d| d.script == Script::LatencyRegression)?;
                d.active_since(Utc::now(), s.step)
            }
        }
    }

    fn value_at(&self, t: DateTime<Utc>, switch: Option<DateTime<Utc>>) -> f64 {
        let base = if switch.is_some_and(|sw| t >= sw) {
            self.regressed
        } else {
            self.baseline
        };
        // Deterministic in the sample's time: repeated queries agree.
        let k = (t.timestamp_millis().unsigned_abs() / 1000).wrapping_mul(2_654_435_761) % 1000;
        base * (1.0 + self.jitter * (k as f64 / 500.0 - 1.0))
    }
}

impl Simulator {
    /// Scripts `query`: `baseline` before `switch_at`, `regressed` from it on (`None`: never).
    pub fn script_query(
        &self,
        query: &str,
        baseline: f64,
        regressed: f64,
        switch_at: Option<DateTime<Utc>>,
    ) {
        lock(&self.state).prom_series.insert(
            query.to_string(),
            PromScript {
                baseline,
                regressed,
                switch: switch_at.map(Switch::At),
                jitter: 0.05,
            },
        );
    }

    /// Scripts `query` to regress once `app`'s newest `LatencyRegression` deployment is ACTIVE.
    pub fn script_query_on_regression(
        &self,
        query: &str,
        app: &str,
        baseline: f64,
        regressed: f64,
    ) {
        lock(&self.state).prom_series.insert(
            query.to_string(),
            PromScript {
                baseline,
                regressed,
                switch: Some(Switch::RegressionActive(app.to_string())),
                jitter: 0.05,
            },
        );
    }

    /// The fake Prometheus' value of a scripted query at `t`, as a range query would answer it.
    pub fn query_value(&self, query: &str, t: DateTime<Utc>) -> Option<f64> {
        let s = lock(&self.state);
        let script = s.prom_series.get(query)?;
        Some(script.value_at(t, script.switch_time(&s)))
    }
}

pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/api/v1/query_range", get(range).post(range_form))
        .route("/api/v1/query", get(instant).post(instant_form))
}

type Params = HashMap<String, String>;

fn bad_data(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "error", "errorType": "bad_data", "error": message})),
    )
        .into_response()
}

/// A time as Prometheus takes it: Unix seconds (with a fraction) or RFC 3339.
fn parse_time(v: Option<&String>) -> Option<DateTime<Utc>> {
    let v = v?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return secs
            .is_finite()
            .then(|| DateTime::from_timestamp_millis((secs * 1000.0).round() as i64))
            .flatten();
    }
    DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A step as Prometheus takes it: float seconds or a duration (`500ms`, `15s`, `1m`, `1h`).
fn parse_step_ms(v: Option<&String>) -> Option<i64> {
    let v = v?.trim();
    let ms = if let Ok(secs) = v.parse::<f64>() {
        secs * 1000.0
    } else {
        let split = v.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (n, unit) = v.split_at(split);
        let n: f64 = n.parse().ok()?;
        n * match unit {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        }
    };
    (ms.is_finite() && ms >= 1.0).then_some(ms as i64)
}

fn success(result_type: &str, result: &Value) -> Response {
    axum::Json(json!({"status": "success", "data": {"resultType": result_type, "result": result}}))
        .into_response()
}

fn labels(query: &str) -> Value {
    json!({"__name__": "sim_scripted", "query": query})
}

fn wire(t: DateTime<Utc>) -> Value {
    json!(t.timestamp_millis() as f64 / 1000.0)
}

fn answer_range(sim: &Simulator, q: &Params) -> Response {
    let Some(query) = q.get("query").filter(|s| !s.trim().is_empty()) else {
        return bad_data(
            "invalid parameter \"query\": unknown position: parse error: no expression found in input",
        );
    };
    let (Some(start), Some(end)) = (parse_time(q.get("start")), parse_time(q.get("end"))) else {
        return bad_data(
            "invalid parameter \"start\" or \"end\": cannot parse to a valid timestamp",
        );
    };
    let Some(step) = parse_step_ms(q.get("step")) else {
        return bad_data("invalid parameter \"step\": cannot parse to a valid duration");
    };
    if end < start {
        return bad_data("end timestamp must not be before start time");
    }
    if (end - start).num_milliseconds() / step > MAX_POINTS {
        return bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        );
    }
    let s = lock(&sim.state);
    let Some(script) = s.prom_series.get(query) else {
        return success("matrix", &json!([]));
    };
    let switch = script.switch_time(&s);
    let mut values = Vec::new();
    let mut t = start;
    // Like Prometheus: samples at start, start+step, … up to end, none in the future.
    while t <= end && t <= Utc::now() {
        values.push(json!([wire(t), format!("{}", script.value_at(t, switch))]));
        t += chrono::Duration::milliseconds(step);
    }
    if values.is_empty() {
        return success("matrix", &json!([]));
    }
    success(
        "matrix",
        &json!([{"metric": labels(query), "values": values}]),
    )
}

fn answer_instant(sim: &Simulator, q: &Params) -> Response {
    let Some(query) = q.get("query").filter(|s| !s.trim().is_empty()) else {
        return bad_data("invalid parameter \"query\": no expression found in input");
    };
    let t = match q.get("time") {
        None => Utc::now(),
        Some(_) => match parse_time(q.get("time")) {
            Some(t) => t,
            None => {
                return bad_data("invalid parameter \"time\": cannot parse to a valid timestamp");
            }
        },
    };
    let s = lock(&sim.state);
    let Some(script) = s.prom_series.get(query) else {
        return success("vector", &json!([]));
    };
    let v = script.value_at(t, script.switch_time(&s));
    success(
        "vector",
        &json!([{"metric": labels(query), "value": [wire(t), format!("{v}")]}]),
    )
}

async fn range(State(sim): State<Simulator>, Query(q): Query<Params>) -> Response {
    answer_range(&sim, &q)
}

async fn range_form(State(sim): State<Simulator>, axum::Form(q): axum::Form<Params>) -> Response {
    answer_range(&sim, &q)
}

async fn instant(State(sim): State<Simulator>, Query(q): Query<Params>) -> Response {
    answer_instant(&sim, &q)
}

async fn instant_form(State(sim): State<Simulator>, axum::Form(q): axum::Form<Params>) -> Response {
    answer_instant(&sim, &q)
}
