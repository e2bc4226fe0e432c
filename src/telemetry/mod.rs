//! Logging and tracing set-up.
//!
//! Logs go to stderr through `tracing` (text or JSON, filtered by `RUST_LOG`). When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans also go out
//! over OTLP, gRPC or HTTP/protobuf per `OTEL_EXPORTER_OTLP_PROTOCOL`, through a bounded batch queue:
//! a collector that is down drops spans, it never slows a request.

pub mod exposition;
pub mod metrics;

use std::cell::Cell;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracerProvider,
};
use sha2::{Digest, Sha256};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Keeps the tracer provider alive; flush it on shutdown.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes queued spans, bounded by the exporter's own timeout.
    pub fn shutdown(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

thread_local! {
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Lets a deployment's trace id be derived from its id: the SDK takes trace ids only from its
/// generator, so the generator consults a per-thread override set around span creation.
#[derive(Debug, Default)]
pub struct DerivedIdGenerator {
    random: RandomIdGenerator,
}

impl IdGenerator for DerivedIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .with(|c| c.take())
            .unwrap_or_else(|| self.random.new_trace_id())
    }
    fn new_span_id(&self) -> SpanId {
        self.random.new_span_id()
    }
}

/// Runs `f` (which must start a root span synchronously) so that span gets `trace_id`.
pub fn with_trace_id<T>(trace_id: TraceId, f: impl FnOnce() -> T) -> T {
    NEXT_TRACE_ID.with(|c| c.set(Some(trace_id)));
    let out = f();
    NEXT_TRACE_ID.with(|c| c.set(None));
    out
}

/// The trace id of a deployment's trace: a hash of its id, so tasks can link to it before (and
/// regardless of whether) the trace is exported.
pub fn deployment_trace_id(deployment_id: &str) -> TraceId {
    let digest = Sha256::digest(format!("deploywatch/deployment/{deployment_id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    TraceId::from_bytes(b)
}

/// The batch span processor exports from its own thread, outside any Tokio runtime; reqwest needs
/// one. This client hands each export to the application's runtime and awaits the result.
#[derive(Debug)]
struct RuntimeHttpClient {
    client: reqwest::Client,
    rt: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        self.rt
            .spawn(async move {
                let (parts, body) = request.into_parts();
                let url = parts.uri.to_string();
                let resp = client
                    .request(parts.method, url)
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await?;
                let mut out = http::Response::builder().status(resp.status());
                for (k, v) in resp.headers() {
                    out = out.header(k, v);
                }
                let bytes = resp.bytes().await?;
                Ok::<_, opentelemetry_http::HttpError>(out.body(bytes)?)
            })
            .await?
    }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()))
}

fn build_provider(environment: &str) -> Result<SdkTracerProvider, String> {
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "grpc".into());
    let exporter = match protocol.as_str() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_timeout(std::time::Duration::from_secs(5))
            .build(),
        "http/protobuf" => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(RuntimeHttpClient {
                client: reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(5))
                    .build()
                    .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?,
                rt: tokio::runtime::Handle::try_current().map_err(|_| "OTLP over HTTP needs the Tokio runtime".to_string())?,
            })
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(std::time::Duration::from_secs(5))
            .build(),
        other => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported; use \"grpc\" or \"http/protobuf\""
            ));
        }
    }
    .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let service_name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "deploywatch".into());
    let resource = Resource::builder()
        .with_service_name(service_name)
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment.name", environment.to_string()),
        ])
        .build();
    // A bounded queue: when the collector is slow or down, spans are dropped, requests never wait.
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(2048)
                .with_scheduled_delay(std::time::Duration::from_millis(500))
                .build(),
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_id_generator(DerivedIdGenerator::default())
        .with_span_processor(batch)
        .build())
}

/// Installs the global subscriber (once per process) and, when configured, the OTLP pipeline.
pub fn init(format: LogFormat, environment: &str) -> Result<TelemetryGuard, String> {
    let (targets, warning) = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    if let Some(w) = warning {
        eprintln!("deploywatch: {w}");
    }
    let filter = || targets.clone();
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let provider = if otlp_configured() {
        Some(build_provider(environment)?)
    } else {
        None
    };
    let otel_layer = provider.as_ref().map(|p| {
        global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer().with_tracer(p.tracer("deploywatch"))
    });
    let registry = tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter()))
        .with(otel_layer.map(|l| l.with_filter(filter())));
    // Tests call init more than once per process; only the first wins, which is fine.
    let _ = registry.try_init();
    Ok(TelemetryGuard { provider })
}

/// Where logging starts when `RUST_LOG` is unset or unreadable: deploywatch at info, the
/// libraries' chatter at warn.
const DEFAULT_LOG: &str = "info,sqlx=warn,h2=warn,tower=warn,hyper=warn,reqwest=warn";

/// The log filter for a `RUST_LOG` value, and what to tell the operator when the value cannot be
/// used. `RUST_LOG` is read as comma-separated `target=level` directives and bare levels (the
/// form most values take); span and field filters are not read, a regex engine for them cost the
/// release build about 28 s. Pure.
fn log_filter(var: Option<&str>) -> (Targets, Option<String>) {
    let default = || DEFAULT_LOG.parse::<Targets>().unwrap_or_default();
    match var.map(str::trim).filter(|v| !v.is_empty()) {
        None => (default(), None),
        Some(v) => match v.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (
                default(),
                Some(format!(
                    "RUST_LOG={v:?} cannot be read ({e}); logging with {DEFAULT_LOG:?}. Write \
                     comma-separated target=level directives, e.g. \"info,deploywatch::webhook=debug\""
                )),
            ),
        },
    }
}

/// The tracer for deploywatch's own spans (deployment traces, probe spans).
pub fn tracer() -> global::BoxedTracer {
    global::tracer("deploywatch")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_is_read_or_refused_with_a_warning() {
        use tracing::Level;
        // (RUST_LOG, target, level, enabled, warns)
        let table: &[(Option<&str>, &str, Level, bool, bool)] = &[
            (None, "deploywatch::webhook", Level::INFO, true, false),
            (None, "deploywatch::webhook", Level::DEBUG, false, false),
            (None, "sqlx::query", Level::INFO, false, false),
            (None, "sqlx::query", Level::WARN, true, false),
            (Some(""), "deploywatch", Level::INFO, true, false),
            (Some("warn"), "deploywatch", Level::INFO, false, false),
            (Some("WARN"), "deploywatch", Level::WARN, true, false),
            (
                Some("info,deploywatch::webhook=debug"),
                "deploywatch::webhook",
                Level::DEBUG,
                true,
                false,
            ),
            (
                Some("info,deploywatch::webhook=debug"),
                "deploywatch::store",
                Level::DEBUG,
                false,
                false,
            ),
            (
                Some("deploywatch=trace"),
                "hyper",
                Level::ERROR,
                false,
                false,
            ),
            (Some("off"), "deploywatch", Level::ERROR, false, false),
            (
                Some("deploywatch=loud"),
                "deploywatch",
                Level::INFO,
                true,
                true,
            ),
            (
                Some("[span{x=1}]=debug"),
                "deploywatch",
                Level::INFO,
                true,
                true,
            ),
        ];
        for &(var, target, level, enabled, warns) in table {
            let (t, w) = log_filter(var);
            assert_eq!(
                t.would_enable(target, &level),
                enabled,
                "{var:?} {target} {level}"
            );
            assert_eq!(w.is_some(), warns, "{var:?}: {w:?}");
            if let Some(w) = w {
                assert!(w.contains("RUST_LOG=") && w.contains("target=level"), "{w}");
            }
        }
    }

    #[test]
    fn deployment_trace_ids_are_stable_and_distinct() {
        let a = deployment_trace_id("b6bdf840-2854-4f87-a36c-5f231c617c84");
        assert_eq!(
            a,
            deployment_trace_id("b6bdf840-2854-4f87-a36c-5f231c617c84")
        );
        assert_ne!(
            a,
            deployment_trace_id("3aa4d20e-5527-4c00-b496-601fbd22520a")
        );
        assert_ne!(a, TraceId::INVALID);
    }

    #[test]
    fn the_generator_uses_the_override_once() {
        let g = DerivedIdGenerator::default();
        let want = deployment_trace_id("x");
        let got = with_trace_id(want, || g.new_trace_id());
        assert_eq!(got, want);
        assert_ne!(g.new_trace_id(), want);
    }
}
