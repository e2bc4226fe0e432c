//! What a running app looks like to App Platform: component health, the monitoring matrices
//! (restarts, CPU, memory per instance), instances, job invocations (PRE_DEPLOY / POST_DEPLOY
//! jobs) and a paged, filtered deployment listing.
//!
//! Tolerant like the rest of `types/`: every field is optional, a number may come as a string, a
//! point or series that does not parse is dropped (and counted), never the whole answer. Pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::deployment::{Deployment, Links};
use super::time::de_time;
use crate::domain::verification::InstanceSeries;

/// A number sent as a JSON number or as a numeric string; anything else (or a non-finite value)
/// reads as unset.
fn de_num<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let raw: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(raw.as_ref().and_then(num).filter(|v| v.is_finite()))
}

fn num(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// A count sent as a number or a string; negative or fractional counts read as unset.
fn de_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = de_num(d)?;
    Ok(v.filter(|v| *v >= 0.0 && v.fract() == 0.0 && *v < 1e15)
        .map(|v| v as i64))
}

/// A string field that may be absent, null or another type (read as unset).
fn de_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(raw.and_then(|v| v.as_str().map(str::to_string)))
}

/// `GET /v2/apps/{id}/health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AppHealth {
    pub components: Vec<ComponentHealth>,
}

/// One component's health: its state and how many replicas are ready of those desired.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ComponentHealth {
    #[serde(default, deserialize_with = "de_str")]
    pub name: Option<String>,
    /// `HEALTHY`, `UNHEALTHY`, `UNKNOWN`, as sent.
    #[serde(default, deserialize_with = "de_str")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "de_num")]
    pub cpu_usage_percent: Option<f64>,
    #[serde(default, deserialize_with = "de_num")]
    pub memory_usage_percent: Option<f64>,
    #[serde(default, deserialize_with = "de_count")]
    pub replicas_desired: Option<i64>,
    #[serde(default, deserialize_with = "de_count")]
    pub replicas_ready: Option<i64>,
}

impl ComponentHealth {
    pub fn is_healthy(&self) -> bool {
        self.state
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HEALTHY"))
    }
}

/// Parses the health answer: the spec's example puts `components` at the top, the schema wraps
/// it in `app_health`; both are read. A component that does not parse is dropped.
pub fn parse_app_health(body: &[u8]) -> Result<AppHealth, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    let list = v
        .get("app_health")
        .and_then(|h| h.get("components"))
        .or_else(|| v.get("components"))
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    Ok(AppHealth {
        components: list
            .into_iter()
            .filter_map(|c| serde_json::from_value(c).ok())
            .collect(),
    })
}

/// The three App Platform monitoring series deploywatch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppMetric {
    RestartCount,
    CpuPercentage,
    MemoryPercentage,
}

impl AppMetric {
    pub const ALL: [AppMetric; 3] = [
        AppMetric::RestartCount,
        AppMetric::CpuPercentage,
        AppMetric::MemoryPercentage,
    ];

    /// The last segment of `/v2/monitoring/metrics/apps/{…}`.
    pub fn path(self) -> &'static str {
        match self {
            AppMetric::RestartCount => "restart_count",
            AppMetric::CpuPercentage => "cpu_percentage",
            AppMetric::MemoryPercentage => "memory_percentage",
        }
    }
}

/// One instance's series of a monitoring answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricSeries {
    /// `app_component` label.
    pub component: Option<String>,
    /// `app_component_instance` label.
    pub instance: Option<String>,
    /// Every label as sent.
    pub labels: std::collections::BTreeMap<String, String>,
    /// (time, value), oldest first; points that did not parse are left out.
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// A monitoring answer: a Prometheus-style matrix, one series per instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricMatrix {
    pub series: Vec<MetricSeries>,
    /// Points or series dropped as unparseable.
    pub dropped: usize,
}

/// A sample timestamp: Unix seconds as a number (possibly fractional) or a numeric string.
fn point_time(v: &serde_json::Value) -> Option<DateTime<Utc>> {
    let secs = num(v).filter(|s| s.is_finite() && *s > 0.0 && *s < 1e11)?;
    DateTime::from_timestamp_millis((secs * 1000.0).round() as i64)
}

/// Parses `{"status": "success", "data": {"resultType": "matrix", "result": [...]}}`. A
/// `status: "error"` is an error naming Prometheus' own message; values are strings ("5.01…",
/// "NaN") and only finite ones are kept.
pub fn parse_metric_matrix(body: &[u8]) -> Result<MetricMatrix, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if let Some(s) = v.get("status").and_then(|s| s.as_str())
        && s != "success"
    {
        let msg = v
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("no message");
        return Err(format!("status {s:?}: {msg}"));
    }
    let data = v.get("data").unwrap_or(&serde_json::Value::Null);
    let result = data
        .get("result")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out = MetricMatrix::default();
    for s in result {
        let labels: std::collections::BTreeMap<String, String> = s
            .get("metric")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        // A matrix series has `values`; a vector sample has one `value`.
        let raw: Vec<serde_json::Value> = match (s.get("values"), s.get("value")) {
            (Some(serde_json::Value::Array(vs)), _) => vs.clone(),
            (None, Some(one @ serde_json::Value::Array(_))) => vec![one.clone()],
            _ => {
                out.dropped += 1;
                continue;
            }
        };
        let mut points = Vec::with_capacity(raw.len());
        for p in raw {
            let parsed = p.as_array().filter(|a| a.len() == 2).and_then(|a| {
                let t = point_time(&a[0])?;
                let v = num(&a[1]).filter(|v| v.is_finite())?;
                Some((t, v))
            });
            match parsed {
                Some(pt) => points.push(pt),
                None => out.dropped += 1,
            }
        }
        points.sort_by_key(|(t, _)| *t);
        out.series.push(MetricSeries {
            component: labels.get("app_component").cloned(),
            instance: labels.get("app_component_instance").cloned(),
            labels,
            points,
        });
    }
    Ok(out)
}

impl MetricMatrix {
    /// The series of one component (all when the answer carries no component label).
    pub fn of_component<'a>(
        &'a self,
        component: &'a str,
    ) -> impl Iterator<Item = &'a MetricSeries> {
        self.series
            .iter()
            .filter(move |s| s.component.as_deref().is_none_or(|c| c == component))
    }
}

impl MetricMatrix {
    /// One component's series as the verdict takes them (named by instance; an unnamed one by
    /// its position).
    pub fn instance_series(&self, component: &str) -> Vec<InstanceSeries> {
        self.of_component(component)
            .enumerate()
            .map(|(i, s)| InstanceSeries {
                instance: s
                    .instance
                    .clone()
                    .unwrap_or_else(|| format!("{component}-{i}")),
                points: s.points.clone(),
            })
            .collect()
    }
}

/// `GET /v2/apps/{id}/instances`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct AppInstance {
    #[serde(default, deserialize_with = "de_str")]
    pub component_name: Option<String>,
    #[serde(default, deserialize_with = "de_str")]
    pub instance_name: Option<String>,
    #[serde(default, deserialize_with = "de_str")]
    pub instance_alias: Option<String>,
    #[serde(default, deserialize_with = "de_str")]
    pub component_type: Option<String>,
}

pub fn parse_instances(body: &[u8]) -> Result<Vec<AppInstance>, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    Ok(v.get("instances")
        .and_then(|i| i.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|i| serde_json::from_value(i.clone()).ok())
                .collect()
        })
        .unwrap_or_default())
}

/// One run of a job component. PRE_DEPLOY / POST_DEPLOY is the job's `kind` in the app spec; the
/// invocation names the job and its deployment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct JobInvocation {
    #[serde(default, deserialize_with = "de_str")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "de_str")]
    pub job_name: Option<String>,
    #[serde(default, deserialize_with = "de_str")]
    pub deployment_id: Option<String>,
    /// `PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED`, `CANCELED`, `SKIPPED`, `UNKNOWN`, as sent.
    #[serde(default, deserialize_with = "de_str")]
    pub phase: Option<String>,
    #[serde(default, deserialize_with = "de_time")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    pub completed_at: Option<DateTime<Utc>>,
    /// An object per the schema, a list in the spec's single-invocation example: kept as sent.
    #[serde(default)]
    pub trigger: Option<serde_json::Value>,
}

impl JobInvocation {
    pub fn failed(&self) -> bool {
        self.phase
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("FAILED"))
    }

    /// The trigger's `type`, from the object or the first element of a list.
    pub fn trigger_type(&self) -> Option<&str> {
        let t = self.trigger.as_ref()?;
        let obj = match t {
            serde_json::Value::Array(a) => a.first()?,
            other => other,
        };
        obj.get("type")?.as_str()
    }
}

/// Reads `value` as a list of invocations whether it is a list or a single object.
fn invocations(value: Option<&serde_json::Value>) -> (Vec<JobInvocation>, usize) {
    let items: Vec<serde_json::Value> = match value {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(o @ serde_json::Value::Object(_)) => vec![o.clone()],
        _ => Vec::new(),
    };
    let total = items.len();
    let ok: Vec<JobInvocation> = items
        .into_iter()
        .filter_map(|i| serde_json::from_value(i).ok())
        .collect();
    let skipped = total - ok.len();
    (ok, skipped)
}

/// `GET …/job-invocations`: the invocations, how many were skipped, and the next page's link.
pub fn parse_job_invocations_page(
    body: &[u8],
) -> Result<(Vec<JobInvocation>, usize, Option<String>), serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    let (list, skipped) = invocations(v.get("job_invocations").or(v.get("job_invocation")));
    let next = v
        .get("links")
        .cloned()
        .and_then(|l| serde_json::from_value::<Links>(l).ok())
        .and_then(|l| l.pages)
        .and_then(|p| p.next)
        .filter(|n| !n.is_empty());
    Ok((list, skipped, next))
}

/// `GET …/job-invocations/{id}`: one object per the schema, a one-element list in the example.
pub fn parse_job_invocation(body: &[u8]) -> Result<Option<JobInvocation>, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    Ok(invocations(v.get("job_invocation")).0.into_iter().next())
}

/// `GET …/deployments` with its paging link, each deployment read tolerantly.
pub fn parse_deployments_with_next(
    body: &[u8],
) -> Result<(Vec<Deployment>, usize, Option<String>), serde_json::Error> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        deployments: Vec<serde_json::Value>,
        #[serde(default)]
        links: Option<serde_json::Value>,
    }
    let page: Page = serde_json::from_slice(body)?;
    let total = page.deployments.len();
    let ok: Vec<Deployment> = page
        .deployments
        .into_iter()
        .filter_map(|d| serde_json::from_value(d).ok())
        .collect();
    let next = page
        .links
        .and_then(|l| serde_json::from_value::<Links>(l).ok())
        .and_then(|l| l.pages)
        .and_then(|p| p.next)
        .filter(|n| !n.is_empty());
    let skipped = total - ok.len();
    Ok((ok, skipped, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/do-openapi-examples")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn the_spec_health_example_parses_top_level_or_wrapped() {
        let h = parse_app_health(&fixture("apps_get_health.json")).unwrap();
        assert_eq!(h.components.len(), 1);
        let c = &h.components[0];
        assert_eq!(c.name.as_deref(), Some("sample-expressjs"));
        assert_eq!((c.replicas_ready, c.replicas_desired), (Some(2), Some(1)));
        assert_eq!(c.cpu_usage_percent, Some(5.555));
        assert!(c.is_healthy());
        let wrapped = br#"{"app_health": {"components": [
            {"name": "web", "state": "UNHEALTHY", "replicas_ready": "0", "replicas_desired": 2,
             "memory_usage_percent": "NaN"},
            {"name": 7},
            "nonsense"]}}"#;
        let h = parse_app_health(wrapped).unwrap();
        assert_eq!(h.components.len(), 2, "{h:?}");
        assert_eq!(h.components[0].replicas_ready, Some(0));
        assert_eq!(h.components[0].memory_usage_percent, None);
        assert!(!h.components[0].is_healthy());
        assert_eq!(h.components[1].name, None);
        assert!(parse_app_health(b"{}").unwrap().components.is_empty());
        assert!(parse_app_health(b"<html>").is_err());
    }

    #[test]
    fn the_spec_memory_example_parses_to_one_series_per_instance() {
        let m = parse_metric_matrix(&fixture("monitoring_get_app_memory_percentage.json")).unwrap();
        assert_eq!(m.series.len(), 1);
        let s = &m.series[0];
        assert_eq!(s.component.as_deref(), Some("sample-application"));
        assert_eq!(s.instance.as_deref(), Some("sample-application-0"));
        assert_eq!(s.points.len(), 4);
        assert_eq!(s.points[0].0.timestamp(), 1634052360);
        assert!((s.points[0].1 - 5.016600450090265).abs() < 1e-12);
        assert!((s.points[3].1 - 32.016214285714285).abs() < 1e-12);
        assert_eq!(m.of_component("sample-application").count(), 1);
        assert_eq!(m.of_component("other").count(), 0);
        let v = m.instance_series("sample-application");
        assert_eq!(v[0].instance, "sample-application-0");
        assert_eq!(v[0].points.len(), 4);
    }

    #[test]
    fn odd_matrices_drop_points_not_answers() {
        let table: [(&[u8], Result<(usize, usize, usize), ()>); 6] = [
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"NaN"],[3,"+Inf"],["4","2.5"],[5,null],[6]]}]}}"#,
                Ok((1, 2, 4)),
            ),
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                Ok((0, 0, 0)),
            ),
            (br#"{"data":{"result":[{"metric":{}}]}}"#, Ok((0, 0, 1))),
            (
                br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1634052360.5,"3"]}]}}"#,
                Ok((1, 1, 0)),
            ),
            (br#"{"status":"error","error":"bad query"}"#, Err(())),
            (b"not json", Err(())),
        ];
        for (body, want) in table {
            let got = parse_metric_matrix(body).map(|m| {
                (
                    m.series.len(),
                    m.series.first().map_or(0, |s| s.points.len()),
                    m.dropped,
                )
            });
            assert_eq!(
                got.map_err(|_| ()),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_spec_instances_example_parses() {
        let i = parse_instances(&fixture("apps_get_instances.json")).unwrap();
        assert_eq!(i.len(), 4);
        assert_eq!(i[0].component_name.as_deref(), Some("sample-golang"));
        assert_eq!(i[3].instance_alias.as_deref(), Some("sample-php-1"));
        assert_eq!(i[0].component_type.as_deref(), Some("SERVICE"));
    }

    #[test]
    fn job_invocations_parse_as_list_or_object() {
        let (list, skipped, next) =
            parse_job_invocations_page(&fixture("apps_list_job_invocations.json")).unwrap();
        assert_eq!((list.len(), skipped, next), (1, 0, None));
        let j = &list[0];
        assert_eq!(j.job_name.as_deref(), Some("good-job"));
        assert_eq!(
            j.deployment_id.as_deref(),
            Some("c020763f-ddb7-4112-a0df-7f01c69fc00b")
        );
        assert_eq!(j.phase.as_deref(), Some("SUCCEEDED"));
        assert!(!j.failed());
        assert_eq!(j.trigger_type(), Some("SCHEDULE"));
        assert!(j.completed_at.is_some());

        // The single-invocation example wraps the object in a list and its trigger too.
        let one = parse_job_invocation(&fixture("apps_get_job_invocation.json"))
            .unwrap()
            .unwrap();
        assert_eq!(
            one.id.as_deref(),
            Some("ba32b134-569c-4c0c-ba02-8ffdb0492ece")
        );
        assert_eq!(one.trigger_type(), Some("SCHEDULED"));
        let obj = br#"{"job_invocation": {"id": "x", "job_name": "migrate", "phase": "FAILED", "started_at": "0001-01-01T00:00:00Z"}}"#;
        let one = parse_job_invocation(obj).unwrap().unwrap();
        assert!(one.failed());
        assert_eq!(one.started_at, None);
        assert_eq!(one.trigger_type(), None);

        let odd = br#"{"job_invocations": [{"id": 1}, {"id": "ok", "phase": 3}],
            "links": {"pages": {"next": "/v2/apps/a/job-invocations?page=2"}}}"#;
        let (list, skipped, next) = parse_job_invocations_page(odd).unwrap();
        assert_eq!(list.len(), 2, "a bad field drops the field: {list:?}");
        assert_eq!(list[0].id, None);
        assert_eq!(list[1].phase, None);
        assert_eq!(skipped, 0);
        assert_eq!(next.as_deref(), Some("/v2/apps/a/job-invocations?page=2"));
        assert!(parse_job_invocations_page(b"{}").unwrap().0.is_empty());
    }

    #[test]
    fn deployment_pages_keep_their_next_link() {
        let (d, skipped, next) =
            parse_deployments_with_next(&fixture("apps_list_deployments.json")).unwrap();
        assert!(!d.is_empty());
        assert_eq!(skipped, 0);
        let _ = next;
        let body = br#"{"deployments": [{"id": "a"}, {"phase": "ACTIVE"}],
            "links": {"pages": {"next": "http://x/v2/apps/1/deployments?page=2"}}}"#;
        let (d, skipped, next) = parse_deployments_with_next(body).unwrap();
        assert_eq!((d.len(), skipped), (1, 1));
        assert_eq!(
            next.as_deref(),
            Some("http://x/v2/apps/1/deployments?page=2")
        );
    }

    #[test]
    fn metric_paths() {
        let paths: Vec<&str> = AppMetric::ALL.iter().map(|m| m.path()).collect();
        assert_eq!(
            paths,
            ["restart_count", "cpu_percentage", "memory_percentage"]
        );
    }
}
