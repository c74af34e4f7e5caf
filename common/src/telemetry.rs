//! Logs and traces. Logs go to stderr (plain or JSON, `log.format`); spans go to an OTLP/gRPC
//! collector when `telemetry.otlp_endpoint` is set. Trace ids exist either way, so log lines
//! inside a call carry one. W3C trace context crosses gRPC through metadata: [`inject`] on the
//! client side, [`extract`] on the server side.
//!
//! A collector that is down never blocks or slows calls: spans wait in a bounded queue, a failed
//! export drops its batch after a short timeout, and dropped spans are counted
//! ([`spans_dropped`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat};

/// Export timeout: a collector slower than this loses the batch (counted).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

static SPANS_DROPPED: AtomicU64 = AtomicU64::new(0);
static SPANS_EXPORTED: AtomicU64 = AtomicU64::new(0);

/// Spans lost because the collector refused them, was unreachable or too slow.
pub fn spans_dropped() -> u64 {
    SPANS_DROPPED.load(Ordering::Relaxed)
}

pub fn spans_exported() -> u64 {
    SPANS_EXPORTED.load(Ordering::Relaxed)
}

/// An exporter that counts what it delivers and what it loses.
#[derive(Debug)]
struct Counting<E>(E);

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.0.export(batch).await;
        match &result {
            Ok(()) => SPANS_EXPORTED.fetch_add(n, Ordering::Relaxed),
            Err(_) => SPANS_DROPPED.fetch_add(n, Ordering::Relaxed),
        };
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource)
    }
}

/// Flushes spans when dropped (at the end of `main`).
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT);
    }
}

/// The OTLP exporter could not be built from `telemetry.otlp_endpoint`.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: {0}")]
pub struct TelemetryError(pub String);

/// Installs logging and tracing. Needs a tokio runtime when an OTLP endpoint is configured.
/// `RUST_LOG`, when set, overrides `log.level`.
pub fn init(cfg: &Config, default_service_name: &str) -> Result<Telemetry, TelemetryError> {
    let t = &cfg.telemetry;
    let service_name = if t.service_name.is_empty() {
        default_service_name.to_string()
    } else {
        t.service_name.clone()
    };
    let mut provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            t.sampling_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.clone())
                .build(),
        );
    let exporting = !t.otlp_endpoint.is_empty();
    if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(t.otlp_endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TelemetryError(e.to_string()))?;
        provider = provider.with_batch_exporter(Counting(exporter));
    }
    let provider = provider.build();
    let tracer = provider.tracer(service_name);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| f.parse::<EnvFilter>().ok())
        .unwrap_or_else(|| EnvFilter::new(&cfg.log.level));
    let fmt = match cfg.log.format {
        LogFormat::Plain => tracing_subscriber::fmt::layer()
            .with_target(false)
            // Colours only on a terminal: a container's log, a file or a pipe gets plain text
            // (`reason=media session lost`, not escape codes), and NO_COLOR is honoured.
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
                    traced(meta, exporting)
                })),
        )
        .try_init();
    Ok(Telemetry { provider })
}

/// What becomes part of a trace: our own spans and events at INFO and above. The libraries'
/// debug events (ezk dumps every message it parses) are not recorded into spans: at load that
/// formatting was the largest cost on signaling's answer path, whatever `log.level` said.
/// Without an exporter only the spans are (they carry the trace ids of the log lines and of the
/// gRPC calls to media): a span keeps each event recorded into it until it ends, so a call's log
/// lines would stay in memory for the whole call, to be thrown away.
fn traced(meta: &tracing::Metadata<'_>, exporting: bool) -> bool {
    meta.target().starts_with("milliwatt")
        && *meta.level() <= tracing::Level::INFO
        && (exporting || meta.is_span())
}

/// The trace id of the current span, as 32 hex digits (for log fields).
pub fn current_trace_id(span: &tracing::Span) -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.context().span().span_context().trace_id().to_string()
}

struct MetadataInjector<'a>(&'a mut http::HeaderMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct MetadataExtractor<'a>(&'a http::HeaderMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the current span's trace context (W3C `traceparent`) into outgoing gRPC headers.
pub fn inject(headers: &mut http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(headers))
    });
}

/// Makes `span` a child of the trace context in incoming gRPC headers, if any.
pub fn extract(headers: &http::HeaderMap, span: &tracing::Span) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(headers)));
    let _ = span.set_parent(cx);
}

/// A tonic interceptor that carries the caller's trace context in request metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut headers = std::mem::take(req.metadata_mut()).into_headers();
        inject(&mut headers);
        *req.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        Ok(req)
    }
}
