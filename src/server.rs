//! Starting and stopping `serve`: the store, the startup checks, the background loops and the HTTP
//! listener, with a graceful, bounded shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{App, AppState};
use crate::checks::app_migrations::AppMigrationCheck;
use crate::checks::{Check, SchemaCheck, run_check};
use crate::config::Config;
use crate::sources::digitalocean::client::Client;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

/// A running server; dropping it does not stop it, call [`Running::shutdown`].
pub struct Running {
    pub app: Arc<App>,
    /// Keeps a second process off the same SQLite file while this one runs.
    _sqlite_lock: Option<crate::store::sqlite_file::InstanceLock>,
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    /// True once the schema is migrated and checked (the same signal the loops start on).
    schema: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    http: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded), stops the loops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.http).await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.app.store.close().await;
    }

    /// Waits until the schema is in place, at most `limit`; whether it is.
    pub async fn schema_ready(&self, limit: Duration) -> bool {
        let mut rx = self.schema.clone();
        matches!(
            tokio::time::timeout(limit, rx.wait_for(|ok| *ok)).await,
            Ok(Ok(_))
        )
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Options that `serve` and tests set beyond the config file.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Test-only: trust these extra CA certificates when probing.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

fn log_sources(config: &Config, addr: SocketAddr) {
    if let Some(w) = crate::http::access::exposure_warning(addr, &config.webhook.tokens) {
        tracing::warn!(risk = "unauthenticated_network_access", "WARNING: {w}");
    }
    if config.digitalocean.token.is_none() {
        tracing::info!(
            source = "digitalocean",
            "source off: no DIGITALOCEAN_TOKEN set (try `deploywatch demo` for simulated data)"
        );
    } else {
        tracing::info!(source = "digitalocean", api = %config.digitalocean.api_url, "source on");
    }
    let discover = config.health.discover && config.digitalocean.token.is_some();
    if config.health.targets.is_empty() && !discover {
        tracing::info!(
            source = "health",
            "source off: no [[health.targets]] configured and discovery needs the DigitalOcean source"
        );
    } else {
        tracing::info!(
            source = "health",
            targets = config.health.targets.len(),
            discover,
            "source on"
        );
    }
    if config.git.repos.is_empty() {
        tracing::info!(source = "git", "source off: no [[git.repos]] configured");
    } else {
        tracing::info!(source = "git", repos = config.git.repos.len(), "source on");
    }
    if config.migration_checks.is_empty() {
        tracing::info!(
            source = "migrations",
            "source off: no [[migration_checks]] configured"
        );
    } else {
        tracing::info!(
            source = "migrations",
            checks = config.migration_checks.len(),
            "source on"
        );
    }
}

/// Binds the listener first (so `/health/live` answers at once), then brings up everything else.
pub async fn start(
    config: Config,
    listener: TcpListener,
    opts: ServeOptions,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::new());
    let sqlite_lock = match crate::store::sqlite_file::path(config.database_url.expose_secret()) {
        Some(db) => Some(crate::store::sqlite_file::lock(&db)?),
        None => None,
    };
    let store = Store::connect(&config.database_url, Duration::from_secs(3)).await?;
    log_sources(&config, addr);
    for e in crate::sources::enabled(&config) {
        metrics.source_enabled(e.source, e.on);
    }
    let app = Arc::new(App::new(config, store, metrics));
    let (tx, rx) = watch::channel(false);

    let state = AppState(app.clone());
    let limits = app.config.http.clone();
    let budget = crate::http::limits::BodyBudget::new(
        limits.max_body_bytes_in_flight,
        crate::http::limits::BODY_LIMIT,
    );
    let router = crate::http::router(state)
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            budget,
            crate::http::limits::admit,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        }));
    let http = tokio::spawn(serve_http(listener, router, limits, rx.clone()));

    let mut tasks = Vec::new();
    // Own schema first: migrate (unless told not to), then the check every replica runs.
    app.checks.expect("schema", true);
    for c in &app.config.migration_checks {
        app.checks.expect(c.name.as_str(), false);
        let owner = c.app.as_ref().unwrap_or(&c.name);
        app.metrics
            .migration_check_info(c.name.as_str(), owner.as_str());
    }
    app.checks.set_grace(app.config.startup.grace);
    // Nothing but the startup sequence touches the store until the schema is in place: the loops
    // start once it is (the poller once raced migrations: "no such table: leases").
    let (schema_tx, schema) = watch::channel(false);
    let mut schema_rx = schema.clone();
    {
        let app = app.clone();
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            startup_sequence(app, &mut rx, schema_tx).await;
        }));
    }
    {
        let app = app.clone();
        let rx = rx.clone();
        let mut stop = rx.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                r = schema_rx.wait_for(|ok| *ok) => if r.is_err() { return; },
                _ = stop.wait_for(|s| *s) => return,
            }
            // One git pass first (bounded), so the first deployments counted find their commit
            // times (DORA lead time); the git loop refreshes again on its own schedule.
            if !app.config.git.repos.is_empty() {
                let mut exported = std::collections::HashSet::new();
                let _ = tokio::time::timeout(
                    Duration::from_secs(30),
                    crate::sources::git::refresh(&app, &mut exported),
                )
                .await;
            }
            let loops = start_loops(&app, &rx, &opts);
            for t in loops {
                let _ = t.await;
            }
        }));
    }
    Ok(Running {
        app,
        _sqlite_lock: sqlite_lock,
        addr,
        shutdown: tx,
        schema,
        tasks,
        http,
    })
}

/// Resolves once shutdown is signalled (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Accepts HTTP/1 connections with a header-read timeout (which also closes idle keep-alive
/// connections: hyper starts it when it waits for the next request); stops accepting on shutdown
/// and lets in-flight requests finish.
async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    limits: crate::http::limits::HttpLimits,
    shutdown: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut conns = tokio::task::JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        while conns.try_join_next().is_some() {}
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
        let mut rx = shutdown.clone();
        conns.spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stopped(&mut rx) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// The background loops, started once the schema is in place.
fn start_loops(
    app: &Arc<App>,
    rx: &watch::Receiver<bool>,
    opts: &ServeOptions,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(token) = app.config.digitalocean.token.clone() {
        let client = Client::new(
            app.config.digitalocean.api_url.clone(),
            token,
            app.config.digitalocean.request_timeout,
            Some(app.metrics.clone()),
        );
        let poller = crate::sources::digitalocean::poller::Poller::new(app.clone(), client.clone());
        tasks.push(tokio::spawn(poller.run(rx.clone())));
        // One verifier among replicas; every replica reads its verdicts from the store.
        if !app.config.verification.window.is_zero()
            || app
                .config
                .apps
                .iter()
                .any(|a| a.window.is_some_and(|w| !w.is_zero()))
        {
            let client = client.clone();
            let a = app.clone();
            tasks.push(crate::workers::lease::run_as_leader(
                app.clone(),
                "verification",
                app.config.digitalocean.lease,
                rx.clone(),
                move |stop| {
                    let v = crate::workers::verification::Verifier::new(a.clone(), client.clone());
                    crate::workers::verification::run(v, stop)
                },
            ));
        }
        // One rollback worker among replicas (its tasks are claimed atomically besides).
        let exec = crate::workers::rollback::Executor::new(app.clone(), client);
        tasks.push(crate::workers::lease::run_as_leader(
            app.clone(),
            "rollback",
            app.config.digitalocean.lease,
            rx.clone(),
            move |stop| crate::workers::rollback::run(exec.clone(), stop),
        ));
    }
    let tls = crate::probes::http::tls_config(&opts.extra_roots);
    tasks.push(tokio::spawn(crate::probes::run(
        app.clone(),
        tls,
        rx.clone(),
    )));
    if !app.config.git.repos.is_empty() {
        tasks.push(tokio::spawn(crate::sources::git::run(
            app.clone(),
            rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::workers::lifecycle::run_events(
        app.clone(),
        app.events.subscribe(),
        rx.clone(),
    )));
    // Every replica refreshes the task gauges from the store; one expires task leases.
    let sweeper = crate::workers::lease::spawn(
        app.clone(),
        "sweeper",
        app.config.digitalocean.lease,
        rx.clone(),
    );
    tasks.push(tokio::spawn(crate::workers::sweeper::run_sweeper(
        app.clone(),
        sweeper,
        rx.clone(),
    )));
    // One deploy loop among replicas follows merged deploy tasks (it settles each in one
    // transaction, so a handover never settles one twice).
    let deploys_app = app.clone();
    tasks.push(crate::workers::lease::run_as_leader(
        app.clone(),
        "deploys",
        app.config.digitalocean.lease,
        rx.clone(),
        move |stop| crate::workers::deploys::run(deploys_app.clone(), stop),
    ));
    if !app.config.notifiers.is_empty() {
        let app2 = app.clone();
        tasks.push(crate::workers::lease::run_as_leader(
            app.clone(),
            "outbox",
            app.config.digitalocean.lease,
            rx.clone(),
            move |stop| crate::workers::outbox::run(app2.clone(), stop),
        ));
    }
    tasks
}

/// Migrates and runs the startup checks until they pass, then re-runs the app checks on their
/// interval (and right after a deployment goes ACTIVE).
async fn startup_sequence(
    app: Arc<App>,
    shutdown: &mut watch::Receiver<bool>,
    schema_ready: watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        // A failed migration is itself the check's answer (database unreachable, schema too new).
        let r = if app.config.startup.migrate {
            match app.store.migrate().await {
                Ok(s) => {
                    tracing::info!(applied = s.applied, "schema up to date");
                    run_check(&SchemaCheck {
                        store: app.store.clone(),
                    })
                    .await
                }
                Err(e) => crate::checks::CheckResult::fail(
                    "schema",
                    e.to_string(),
                    serde_json::Value::Null,
                ),
            }
        } else {
            run_check(&SchemaCheck {
                store: app.store.clone(),
            })
            .await
        };
        let ok = r.ok;
        if !ok {
            tracing::warn!(reason = ?r.reason, "startup check `schema` failing");
        }
        app.checks.record(r, &app.metrics);
        if ok {
            let _ = schema_ready.send(true);
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    let _ = crate::app::sync_outcome_metrics(&app).await;
    // Gauges at once; leases are the sweeper lease holder's to expire.
    crate::workers::sweeper::sweep_once(&app, false).await;
    if app.config.migration_checks.is_empty() {
        return;
    }
    let checks: Vec<AppMigrationCheck> = app
        .config
        .migration_checks
        .iter()
        .cloned()
        .map(|cfg| AppMigrationCheck { cfg })
        .collect();
    let mut events = app.events.subscribe();
    let interval = checks
        .iter()
        .map(|c| c.cfg.interval)
        .min()
        .unwrap_or(Duration::from_secs(60));
    loop {
        for c in &checks {
            let r = run_check(c).await;
            let pending = r.details["pending"].as_array().map(Vec::len).unwrap_or(0);
            app.metrics.migrations_pending(c.name(), pending as i64);
            if !r.ok {
                tracing::warn!(check = c.name(), reason = ?r.reason, "migration check failing");
            }
            app.checks.record(r, &app.metrics);
        }
        // The source is up when the checks ran; their verdicts are the check metrics. With no
        // checks configured the source is off and exports no source_up.
        if !checks.is_empty() {
            app.metrics.source_result("migrations", true);
        }
        // Until they pass, retry quickly so startup is not held longer than needed.
        let wait = if app.checks.status().ok {
            interval
        } else {
            Duration::from_secs(2)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            e = events.recv() => {
                if let Ok(e) = e
                    && e.kind != crate::domain::LifecycleKind::Succeeded {
                        continue;
                    }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs every startup check once (for `deploywatch check`).
pub async fn check_once(config: &Config) -> Vec<crate::checks::CheckResult> {
    let mut out = Vec::new();
    // Checking must not create the database it reports on.
    let missing = crate::store::sqlite_file::path(config.database_url.expose_secret())
        .filter(|p| !p.exists());
    if let Some(db) = missing {
        out.push(crate::checks::CheckResult::fail(
            "schema",
            format!(
                "the database file {} does not exist yet, so no migration is applied; \
                 `deploywatch migrate` or `deploywatch serve` creates it",
                db.display()
            ),
            serde_json::Value::Null,
        ));
    } else {
        match Store::connect(&config.database_url, Duration::from_secs(3)).await {
            Ok(store) => {
                out.push(
                    run_check(&SchemaCheck {
                        store: store.clone(),
                    })
                    .await,
                );
                store.close().await;
            }
            Err(e) => out.push(crate::checks::CheckResult::fail(
                "schema",
                e.to_string(),
                serde_json::Value::Null,
            )),
        }
    }
    for cfg in &config.migration_checks {
        out.push(run_check(&AppMigrationCheck { cfg: cfg.clone() }).await);
    }
    out
}
