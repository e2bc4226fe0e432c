//! The verification building blocks end to end, over real HTTP on loopback: the DigitalOcean
//! client's runtime calls against the simulator's runtime scripts, the PromQL client against the
//! simulator's fake Prometheus, and what the pure verdict makes of what they read.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deploywatch::domain::Phase;
use deploywatch::domain::verification::{
    ComponentInput, Inputs, Limit, QueryInput, QueryKind, ReasonKind, ReplicaReading, Rules,
    VerdictResult, Window, judge,
};
use deploywatch::sources::digitalocean::client::Client;
use deploywatch::sources::digitalocean::types::AppMetric;
use deploywatch::sources::prometheus::PromClient;
use do_simulator::Script;
use secrecy::SecretString;

use crate::helpers::*;

const OLD: &str = "1111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222";

fn client(sim: &SimHandle) -> Client {
    Client::new(
        url::Url::parse(&sim.url).unwrap(),
        SecretString::from("t".to_string()),
        Duration::from_secs(5),
        None,
    )
}

/// Waits for the deployment to end; returns when it went ACTIVE (or ended).
async fn ended(c: &Client, app_id: &str, dep: &str) -> (Phase, DateTime<Utc>) {
    until("the deployment ends", Duration::from_secs(10), || async {
        let d = c.get_deployment(app_id, dep).await.ok()?;
        matches!(d.phase, Phase::Active | Phase::Error | Phase::Canceled)
            .then(|| (d.phase, d.ended_at().unwrap_or_else(Utc::now)))
    })
    .await
}

/// The component's readings over [active - 1 s, now], as the verdict takes them.
async fn readings(c: &Client, app_id: &str, active: DateTime<Utc>) -> ComponentInput {
    let (start, end) = (active - chrono::Duration::seconds(1), Utc::now());
    let read = |kind| async move {
        c.app_metric(kind, app_id, Some("web"), start, end)
            .await
            .unwrap()
            .instance_series("web")
    };
    let health = c.app_health(app_id).await.unwrap();
    let web = health
        .components
        .iter()
        .find(|h| h.name.as_deref() == Some("web"))
        .unwrap();
    ComponentInput {
        name: "web".into(),
        restarts: read(AppMetric::RestartCount).await,
        memory_percent: read(AppMetric::MemoryPercentage).await,
        cpu_percent: read(AppMetric::CpuPercentage).await,
        replicas: vec![ReplicaReading {
            at: Utc::now(),
            ready: web.replicas_ready.unwrap_or(0),
            desired: web.replicas_desired.unwrap_or(0),
        }],
    }
}

fn open_window(active: DateTime<Utc>) -> Window {
    Window {
        start: active,
        end: active + chrono::Duration::minutes(10),
        now: Utc::now(),
    }
}

fn only(c: ComponentInput, window: Window) -> Inputs {
    Inputs {
        window,
        components: vec![c],
        probes: vec![],
        commits: vec![],
        queries: vec![],
    }
}

#[tokio::test]
async fn a_crash_looping_release_fails_with_crash_loop_and_its_log_says_why() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(30))
        .app("api", OLD)
        .script("api", NEW, Script::CrashLoop)
        .start()
        .await;
    let c = client(&sim);
    let id = sim.app_id("api").unwrap();
    let dep = c.list_deployments(&id, 1).await.unwrap().0[0].id.clone();
    let (phase, active) = ended(&c, &id, &dep).await;
    assert_eq!(phase, Phase::Active);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let health = c.app_health(&id).await.unwrap();
    assert_eq!(health.components[0].state.as_deref(), Some("UNHEALTHY"));
    assert_eq!(
        (
            health.components[0].replicas_ready,
            health.components[0].replicas_desired
        ),
        (Some(0), Some(2))
    );
    let web = readings(&c, &id, active).await;
    let v = judge(&only(web, open_window(active)), &Rules::default());
    assert_eq!(v.result, VerdictResult::Failed, "{v:#?}");
    assert_eq!(v.reasons[0].kind, ReasonKind::CrashLoop, "{v:#?}");

    let log = c.run_restarted_log_tail(&id, 20).await.unwrap();
    assert!(log.contains("panic: runtime error"), "{log}");
    assert!(log.lines().count() <= 20);
    let instances = c.app_instances(&id).await.unwrap();
    assert_eq!(instances.len(), 2);
}

#[tokio::test]
async fn a_leaking_release_fails_with_oom_and_a_healthy_one_passes() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(30))
        .app("api", OLD)
        .app("ok", OLD)
        .script("api", NEW, Script::MemoryLeak)
        .script("ok", NEW, Script::Success)
        .start()
        .await;
    let c = client(&sim);
    let (api, ok) = (sim.app_id("api").unwrap(), sim.app_id("ok").unwrap());
    let leak_dep = c.list_deployments(&api, 1).await.unwrap().0[0].id.clone();
    let ok_dep = c.list_deployments(&ok, 1).await.unwrap().0[0].id.clone();
    let (_, leak_active) = ended(&c, &api, &leak_dep).await;
    let (_, ok_active) = ended(&c, &ok, &ok_dep).await;
    // Past the first OOM kill (six steps after ACTIVE).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let leak = readings(&c, &api, leak_active).await;
    let peak = leak
        .memory_percent
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    assert!(peak >= 90.0, "memory climbs towards its limit: {peak}");
    let v = judge(&only(leak, open_window(leak_active)), &Rules::default());
    assert_eq!(v.result, VerdictResult::Failed, "{v:#?}");
    assert_eq!(
        v.reasons.iter().map(|r| r.kind).collect::<Vec<_>>(),
        vec![ReasonKind::Oom],
        "{v:#?}"
    );
    let log = c.run_restarted_log_tail(&api, 5).await.unwrap();
    assert!(log.contains("OOMKilled"), "{log}");

    let healthy = readings(&c, &ok, ok_active).await;
    let mut closed = open_window(ok_active);
    closed.end = Utc::now();
    closed.now = Utc::now() + chrono::Duration::seconds(1);
    let v = judge(&only(healthy, closed), &Rules::default());
    assert_eq!(
        (v.result, v.reasons.len()),
        (VerdictResult::Passed, 0),
        "{v:#?}"
    );
    assert_eq!(c.run_restarted_log_tail(&ok, 5).await.unwrap(), "");
}

#[tokio::test]
async fn a_latency_regression_shows_through_prometheus_and_fails_the_verdict() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(30))
        .app("api", OLD)
        .script("api", NEW, Script::LatencyRegression)
        .start()
        .await;
    let query = "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{app=\"api\"}[1m])))";
    sim.script_query_on_regression(query, "api", 0.12, 0.31);
    let c = client(&sim);
    let id = sim.app_id("api").unwrap();
    let dep = c.list_deployments(&id, 1).await.unwrap().0[0].id.clone();
    let (_, active) = ended(&c, &id, &dep).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Healthy by DigitalOcean's numbers.
    let health = c.app_health(&id).await.unwrap();
    assert!(health.components[0].is_healthy(), "{health:?}");

    let prom = PromClient::new(Duration::from_secs(2));
    let base = url::Url::parse(&sim.url).unwrap();
    let step = Duration::from_millis(100);
    let baseline = prom
        .query_range(
            &base,
            query,
            active - chrono::Duration::seconds(2),
            active - chrono::Duration::milliseconds(1),
            step,
        )
        .await
        .unwrap();
    let current = prom
        .query_range(&base, query, active, Utc::now(), step)
        .await
        .unwrap();
    assert!(
        baseline.len() >= 8 && current.len() >= 8,
        "{} {}",
        baseline.len(),
        current.len()
    );
    let inputs = Inputs {
        window: open_window(active),
        components: vec![],
        probes: vec![],
        commits: vec![],
        queries: vec![QueryInput {
            name: "p95".into(),
            kind: QueryKind::Latency,
            limit: Limit::Max(0.25),
            baseline,
            current,
        }],
    };
    let v = judge(&inputs, &Rules::default());
    assert_eq!(v.result, VerdictResult::Failed, "{v:#?}");
    assert_eq!(v.reasons[0].kind, ReasonKind::LatencyRegression);
    assert!(
        v.reasons[0].summary().contains("Mann-Whitney"),
        "{}",
        v.reasons[0].summary()
    );

    // A query Prometheus refuses is an error naming the URL and the query.
    let e = prom
        .query_range(&base, "", active, Utc::now(), step)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(sim.url.as_str()) && e.contains("bad_data"),
        "{e}"
    );
}

#[tokio::test]
async fn a_failing_pre_deploy_job_is_read_from_job_invocations() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(30))
        .app("api", OLD)
        .script("api", NEW, Script::FailingPreDeployJob)
        .start()
        .await;
    let c = client(&sim);
    let id = sim.app_id("api").unwrap();
    let dep = c.list_deployments(&id, 1).await.unwrap().0[0].id.clone();
    let (phase, _) = ended(&c, &id, &dep).await;
    assert_eq!(phase, Phase::Error);
    let d = c.get_deployment(&id, &dep).await.unwrap();
    let failed = d.failed_step().unwrap();
    assert_eq!(failed.component.as_deref(), Some("migrate"), "{failed:?}");
    assert_eq!(failed.reason_code.as_deref(), Some("PreDeployJobFailed"));

    let jobs = c.job_invocations(&id, Some(&dep)).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(
        jobs[0].failed() && jobs[0].job_name.as_deref() == Some("migrate"),
        "{jobs:?}"
    );
    let inv = jobs[0].id.clone().unwrap();
    assert!(c.job_invocation(&id, &inv).await.unwrap().failed());
    assert!(
        c.job_invocations(&id, Some("other"))
            .await
            .unwrap()
            .is_empty()
    );
    let log = c.deployment_log_tail(&id, &dep, "DEPLOY", 5).await.unwrap();
    assert!(log.contains("relation \"match_records\""), "{log}");
}

#[tokio::test]
async fn a_stuck_deployment_is_canceled_and_a_burst_is_listed_across_pages() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(5))
        .app("api", OLD)
        .start()
        .await;
    let c = client(&sim);
    let id = sim.app_id("api").unwrap();
    for i in 0..24 {
        sim.deploy("api", &format!("{i:040x}"), Script::Success);
    }
    sim.deploy_with_cause("api", NEW, Script::Success, "MANUAL");
    let stuck = sim.deploy("api", NEW, Script::Stuck).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let d = c.cancel_deployment(&id, &stuck).await.unwrap();
    assert_eq!(d.phase, Phase::Canceled);
    let again = c.cancel_deployment(&id, &stuck).await.unwrap_err();
    assert!(
        again
            .to_string()
            .contains("only a pending or running deployment"),
        "{again}"
    );

    // The unpaged call sees one page; the paged one sees the whole burst.
    assert_eq!(c.list_deployments(&id, 20).await.unwrap().0.len(), 20);
    let all = c.list_deployments_paged(&id, &[], None, 20).await.unwrap();
    assert_eq!(all.deployments.len(), 27);
    assert!(all.incomplete.is_none());
    let manual = c
        .list_deployments_paged(&id, &["MANUAL"], None, 20)
        .await
        .unwrap();
    assert_eq!(manual.deployments.len(), 1);
    let pushes = c
        .list_deployments_paged(&id, &["DEPLOY_ON_PUSH"], None, 10)
        .await
        .unwrap();
    assert_eq!(
        pushes.deployments.len(),
        26,
        "the initial one, the burst and the stuck one"
    );
    assert!(sim.requests_to("/v2/apps/{id}/deployments") >= 3 + 1 + 3);

    // `since` stops paging at the first page reaching back before it.
    let since = Utc::now() - chrono::Duration::milliseconds(1);
    let recent = c
        .list_deployments_paged(&id, &[], Some(since), 10)
        .await
        .unwrap();
    assert_eq!(
        recent.deployments.len(),
        10,
        "one page: its oldest is already before `since`"
    );
}
