//! Typed calls on `TestApp` for the routes tests use most (webhook, task queue, status), sending
//! the app's webhook token when it has one. Each answer keeps its status and body, so an assertion
//! on it can print both.

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A status and a body: JSON when the body parses, else the text as a JSON string, `Null` if empty.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    async fn read(r: reqwest::Response) -> Answer {
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer { status, body }
    }

    /// Asserts `status` (naming `what` and showing the body otherwise) and returns the body.
    #[track_caller]
    pub fn expect_status(self, status: u16, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        self.body
    }
}

/// What `POST /api/v1/tasks/claim` answered: a task (200) or none (204).
#[derive(Debug, Clone)]
pub enum Claim {
    Task(Value),
    Empty,
}

impl Claim {
    pub fn task(self) -> Option<Value> {
        match self {
            Claim::Task(t) => Some(t),
            Claim::Empty => None,
        }
    }
}

impl TestApp {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// `GET path` with the app's token.
    pub async fn get_json(&self, path: &str) -> Answer {
        let r = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        Answer::read(r).await
    }

    /// `POST path` with a JSON body and the app's token.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        let r = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        Answer::read(r).await
    }

    /// Delivers an Alertmanager notification to the webhook.
    pub async fn post_alerts(&self, notification: &Value) -> Answer {
        self.post("/webhook/alertmanager", notification).await
    }

    /// Delivers a notification and asserts it was accepted (200).
    pub async fn post_alerts_ok(&self, notification: &Value) {
        let a = self.post_alerts(notification).await;
        assert_eq!(
            a.status, 200,
            "webhook refused the notification: {}",
            a.body
        );
    }

    /// Claims the next task of `queue` for `worker` with a 60-second lease.
    pub async fn claim(&self, queue: &str, worker: &str) -> Claim {
        self.claim_for(queue, worker, 60).await
    }

    /// Claims with a lease of `lease_seconds`; panics on any answer but 200 or 204.
    pub async fn claim_for(&self, queue: &str, worker: &str, lease_seconds: u64) -> Claim {
        let a = self
            .post(
                "/api/v1/tasks/claim",
                &json!({"queue": queue, "worker": worker, "lease_seconds": lease_seconds}),
            )
            .await;
        match a.status {
            200 => Claim::Task(a.body),
            204 => Claim::Empty,
            other => panic!("claim from {queue} as {worker}: {other} {}", a.body),
        }
    }

    pub async fn heartbeat(&self, id: &str, worker: &str, lease_seconds: u64) -> Answer {
        self.post(
            &format!("/api/v1/tasks/{id}/heartbeat"),
            &json!({"worker": worker, "lease_seconds": lease_seconds}),
        )
        .await
    }

    /// Completes a claimed task with `result` (`Value::Null` sends none).
    pub async fn complete(&self, id: &str, worker: &str, result: Value) -> Answer {
        let body = if result.is_null() {
            json!({"worker": worker})
        } else {
            json!({"worker": worker, "result": result})
        };
        self.post(&format!("/api/v1/tasks/{id}/complete"), &body)
            .await
    }

    pub async fn fail(&self, id: &str, worker: &str, reason: &str) -> Answer {
        self.post(
            &format!("/api/v1/tasks/{id}/fail"),
            &json!({"worker": worker, "reason": reason}),
        )
        .await
    }

    /// `GET /api/v1/status`, asserted 200.
    pub async fn status(&self) -> Value {
        self.get_json("/api/v1/status")
            .await
            .expect_status(200, "GET /api/v1/status")
    }

    /// The tasks of one queue, in the API's order.
    pub async fn tasks(&self, queue: &str) -> Vec<Value> {
        self.tasks_where(&format!("queue={queue}")).await
    }

    /// The tasks matching a query string such as `queue=execution&state=queued` (`""`: all).
    pub async fn tasks_where(&self, query: &str) -> Vec<Value> {
        let path = if query.is_empty() {
            "/api/v1/tasks".to_string()
        } else {
            format!("/api/v1/tasks?{query}")
        };
        let v = self
            .get_json(&path)
            .await
            .expect_status(200, &format!("GET {path}"));
        match v["tasks"].as_array() {
            Some(a) => a.clone(),
            None => panic!("GET {path}: no \"tasks\" array in {v}"),
        }
    }

    /// One task by id with its history (`{"task": …, "history": […]}`), asserted 200.
    pub async fn task(&self, id: &str) -> Value {
        self.get_json(&format!("/api/v1/tasks/{id}"))
            .await
            .expect_status(200, &format!("GET /api/v1/tasks/{id}"))
    }
}

impl TestApp {
    /// Waits until the series `series` (as in `metric`) reads `want` in `/metrics`.
    pub async fn until_metric(&self, series: &str, want: f64, limit: std::time::Duration) {
        self.until_metrics(&[(series, want)], limit).await;
    }

    /// Waits until every `(series, value)` reads as given in one `/metrics` scrape; on timeout,
    /// shows what each series read last.
    pub async fn until_metrics(&self, want: &[(&str, f64)], limit: std::time::Duration) {
        let what = want
            .iter()
            .map(|(s, v)| format!("{s} == {v}"))
            .collect::<Vec<_>>()
            .join(" and ");
        super::until(&what, limit, || async {
            let m = self.metrics().await;
            let got: Vec<(&str, Option<f64>)> = want
                .iter()
                .map(|(s, _)| (*s, crate::helpers::metric(&m, s)))
                .collect();
            let done = want.iter().zip(&got).all(|((_, w), (_, g))| *g == Some(*w));
            super::seen(done, got)
        })
        .await;
    }
}
