//! `/metrics` rendering for 1,000 apps, 1,000 probes and 100 refs.
//!
//! deploywatch keeps live metric objects that the pollers update when data changes, so a scrape
//! only encodes. The reference is the other common exporter design: rebuild every family from the
//! snapshot with the `prometheus` crate on each scrape, then encode.
//!
//! Run: `cargo bench --bench metrics_render` (criterion), which also prints p50/p99 and bytes.

// Test and benchmark code fails by panicking; that is how a failure is reported here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use deploywatch::domain::Phase;
use deploywatch::telemetry::exposition::Format;
use deploywatch::telemetry::metrics::Metrics;
use prometheus::{Encoder, GaugeVec, IntGaugeVec, Opts, Registry, TextEncoder};

const APPS: usize = 1000;
const PROBES: usize = 1000;
const REFS: usize = 100;

/// The snapshot both designs export.
struct Snapshot {
    apps: Vec<(String, String, Phase, u64)>,
    probes: Vec<(String, String, bool, f64, [f64; 5])>,
    refs: Vec<(String, String, f64)>,
}

fn snapshot() -> Snapshot {
    Snapshot {
        apps: (0..APPS)
            .map(|i| {
                (
                    format!("app-{i}"),
                    format!("id-{i:08x}"),
                    Phase::ALL[i % 9],
                    (i * 7) as u64,
                )
            })
            .collect(),
        probes: (0..PROBES)
            .map(|i| {
                (
                    format!("app-{}", i % APPS),
                    format!("target-{i}"),
                    i % 13 != 0,
                    0.012 + i as f64 * 1e-6,
                    [0.001, 0.002, 0.003, 0.004, 0.0005],
                )
            })
            .collect(),
        refs: (0..REFS)
            .map(|i| {
                (
                    format!("repo-{}", i / 4),
                    format!("branch-{i}"),
                    1_700_000_000.0 + i as f64,
                )
            })
            .collect(),
    }
}

/// deploywatch's way: populate once through the same writers the pollers use, then render per
/// scrape.
fn populate(m: &Metrics, s: &Snapshot) {
    use deploywatch::domain::git::BranchView;
    use deploywatch::domain::probe::{Phases, ProbeResult, Thresholds};
    use deploywatch::domain::{AppView, DeploymentView};
    let mut views = std::collections::BTreeMap::new();
    for (app, id, phase, n) in &s.apps {
        let d = DeploymentView {
            id: format!("{id}-d"),
            phase: *phase,
            cause: None,
            commit: Some("9a4df0b8e1".into()),
            created_at: None,
            ended_at: None,
            trace_id: String::new(),
            steps: Vec::new(),
        };
        views.insert(
            app.clone(),
            AppView {
                id: id.clone(),
                name: app.clone(),
                region: "ams".into(),
                latest: Some(d),
                ..Default::default()
            },
        );
        for (i, o) in deploywatch::domain::Outcome::ALL.iter().enumerate() {
            for k in 0..(*n).min(3) {
                m.record_outcome(&deploywatch::domain::dora::DeploymentOutcome {
                    deployment_id: format!("{id}-{i}-{k}"),
                    app: app.clone(),
                    outcome: *o,
                    duration_seconds: Some(120.0),
                    lead_time_seconds: None,
                    recovery_seconds: None,
                    excluded_from_dora: false,
                    rollback: false,
                    ended_at_ms: 1_700_000_000_000,
                });
            }
        }
    }
    deploywatch::telemetry::metrics::Exporter::default().export(m, &views, true);
    for (app, target, ok, d, phases) in &s.probes {
        let r = ProbeResult {
            ok: *ok,
            reason: None,
            detail: None,
            status: Some(200),
            duration: *d,
            phases: Phases {
                dns: phases[0],
                connect: phases[1],
                tls: phases[2],
                processing: phases[3],
                transfer: phases[4],
            },
            cert_not_after: None,
        };
        m.record_probe(app, target, &r, Thresholds::default());
    }
    for (repo, r, t) in &s.refs {
        m.git_branch(
            repo,
            &BranchView {
                branch: r.clone(),
                commit: "9a4df0b8e1".into(),
                commit_time: chrono::DateTime::from_timestamp(*t as i64, 0).unwrap_or_default(),
                ahead: None,
                behind: None,
            },
        );
    }
}

/// The reference: a fresh registry filled from the snapshot and encoded, on every scrape.
fn render_afresh(s: &Snapshot) -> Vec<u8> {
    let reg = Registry::new();
    let g = |n: &str, l: &[&str]| {
        let v = IntGaugeVec::new(Opts::new(n, "h"), l).expect("valid");
        reg.register(Box::new(v.clone())).expect("register");
        v
    };
    let f = |n: &str, l: &[&str]| {
        let v = GaugeVec::new(Opts::new(n, "h"), l).expect("valid");
        reg.register(Box::new(v.clone())).expect("register");
        v
    };
    let info = g("deploywatch_app_info", &["app", "app_id", "region"]);
    let phase = g("deploywatch_deployment_phase", &["app", "phase"]);
    let total = g("deploywatch_deployments_total", &["app", "outcome"]);
    let dur = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("deploywatch_deployment_duration_seconds", "h"),
        &["app", "outcome"],
    )
    .expect("h");
    reg.register(Box::new(dur.clone())).expect("register");
    let inprog = g("deploywatch_deployment_in_progress", &["app"]);
    let pinned = g("deploywatch_pinned_deployment", &["app"]);
    let last = f(
        "deploywatch_deployment_last_success_timestamp_seconds",
        &["app"],
    );
    let ps = g("deploywatch_health_probe_success", &["app", "target"]);
    let pd = f(
        "deploywatch_health_probe_duration_seconds",
        &["app", "target"],
    );
    let pc = g("deploywatch_health_probe_status_code", &["app", "target"]);
    let pp = f(
        "deploywatch_health_probe_phase_duration_seconds",
        &["app", "target", "phase"],
    );
    let rt = f(
        "deploywatch_git_ref_commit_timestamp_seconds",
        &["repo", "ref"],
    );
    for (app, id, ph, n) in &s.apps {
        info.with_label_values(&[app, id, "ams"]).set(1);
        for p in Phase::ALL {
            phase
                .with_label_values(&[app, p.as_str()])
                .set((p == *ph) as i64);
        }
        for o in ["success", "failure", "canceled"] {
            total.with_label_values(&[app, o]).set(*n as i64);
        }
        dur.with_label_values(&[app, "success"]).observe(120.0);
        inprog.with_label_values(&[app]).set(0);
        pinned.with_label_values(&[app]).set(0);
        last.with_label_values(&[app]).set(1.7e9);
    }
    for (app, target, ok, d, phases) in &s.probes {
        let l = [app.as_str(), target.as_str()];
        ps.with_label_values(&l).set(*ok as i64);
        pd.with_label_values(&l).set(*d);
        pc.with_label_values(&l).set(200);
        for (p, v) in ["dns", "connect", "tls", "processing", "transfer"]
            .iter()
            .zip(phases)
        {
            pp.with_label_values(&[app.as_str(), target.as_str(), p])
                .set(*v);
        }
    }
    for (repo, r, t) in &s.refs {
        rt.with_label_values(&[repo, r]).set(*t);
    }
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut buf)
        .expect("encode");
    buf
}

fn percentiles(mut f: impl FnMut() -> usize) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(300);
    let mut bytes = 0;
    for _ in 0..300 {
        let t = Instant::now();
        bytes = f();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    (times[times.len() / 2], times[times.len() * 99 / 100], bytes)
}

fn bench(c: &mut Criterion) {
    let s = snapshot();
    let m = Metrics::new();
    populate(&m, &s);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A render after a change (the cost the render thread pays once per change: gather, encode,
    // compress), its parts, and a scrape with no change since (served from the cached render).
    let (p50, p99, bytes) = percentiles(|| m.exposition.render_now().text.plain.len());
    let (cp50, cp99, cbytes) =
        percentiles(|| rt.block_on(m.exposition.scrape(Format::Text, true)).len);
    let (rp50, rp99, rbytes) = percentiles(|| render_afresh(&s).len());
    let r = m.exposition.render_now();
    println!(
        "metrics_render: deploywatch render p50 {p50:.2} ms, p99 {p99:.2} ms, {bytes} bytes ({} gzip)",
        r.text.deflate.len()
    );
    println!(
        "metrics_render: deploywatch cached scrape (no change since) p50 {cp50:.3} ms, p99 {cp99:.3} ms, {cbytes} gzip bytes"
    );
    println!(
        "metrics_render: rebuild-afresh reference p50 {rp50:.2} ms, p99 {rp99:.2} ms, {rbytes} bytes"
    );
    let mut g = c.benchmark_group("metrics_1000apps_1000probes_100refs");
    g.sample_size(30);
    g.bench_function("deploywatch_render", |b| {
        b.iter(|| black_box(m.exposition.render_now()))
    });
    g.bench_function("deploywatch_cached_scrape_gzip", |b| {
        b.iter(|| black_box(rt.block_on(m.exposition.scrape(Format::Text, true)).len))
    });
    g.bench_function("rebuild_afresh_reference", |b| {
        b.iter(|| black_box(render_afresh(&s)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
