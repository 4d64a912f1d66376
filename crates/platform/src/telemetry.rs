//! Logs: human-readable by default, JSON lines with `MILIKI_LOG_FORMAT=json`.
//! Traces: exported over OTLP/HTTP (protobuf) when `MILIKI_OTLP_ENDPOINT` is
//! set, bridging the `tracing` spans; the W3C trace context (`traceparent`,
//! `tracestate`) is taken from incoming requests, passed on by the gateway and
//! carried inside events. With no endpoint none of this is installed: the
//! helpers below return at once and nothing is exported.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Whether spans carry OpenTelemetry contexts in this process.
static TRACING: AtomicBool = AtomicBool::new(false);

/// Where and as whom traces are exported.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`) or its
    /// full traces URL (`.../v1/traces`).
    pub endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

/// Keeps the trace exporter; [`Telemetry::shutdown`] sends what is buffered.
#[must_use = "dropping the handle does not flush buffered spans; call shutdown"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends every finished span now. Blocks: call from a blocking thread.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            if let Err(e) = provider.force_flush() {
                tracing::warn!(error = %e, "trace export failed");
            }
        }
    }

    /// Flushes and stops the exporter. Blocks: call outside async code.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("trace exporter shutdown: {e}");
            }
        }
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides the default filter.
/// Colour only on a terminal: a file or a pipe gets plain text.
pub fn init(format: LogFormat) {
    let _ = install(format, None);
}

/// Like [`init`], and exports traces to `otlp` when given. Must run inside a
/// Tokio runtime when `otlp` is set (the exporter's batch task runs there).
pub fn init_with_otlp(format: LogFormat, otlp: Option<&OtlpConfig>) -> anyhow::Result<Telemetry> {
    install(format, otlp)
}

fn install(format: LogFormat, otlp: Option<&OtlpConfig>) -> anyhow::Result<Telemetry> {
    let colour = std::io::stdout().is_terminal();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,lapin=warn,tower_http=warn"));
    let provider = otlp.map(exporter).transpose()?;
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("miliki"))
            .with_tracked_inactivity(false)
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .json()
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().compact().with_ansi(colour))
            .try_init(),
    };
    if installed.is_ok() && provider.is_some() {
        TRACING.store(true, Ordering::Release);
    }
    Ok(Telemetry { provider })
}

fn exporter(config: &OtlpConfig) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let base = config.endpoint.trim_end_matches('/');
    let endpoint = if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(10))
        .build()?;
    // The batch task runs on the Tokio runtime, where the async reqwest client works.
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

/// Whether trace contexts are tracked (an OTLP endpoint is configured).
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Acquire)
}

struct HeaderExtract<'a>(&'a HeaderMap);

impl Extractor for HeaderExtract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInject<'a>(&'a mut HeaderMap);

impl Injector for HeaderInject<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// A W3C trace context in its header form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

struct Fields<'a>(Option<&'a str>, Option<&'a str>);

impl Extractor for Fields<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.0,
            "tracestate" => self.1,
            _ => None,
        }
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

fn set_parent(span: &tracing::Span, cx: opentelemetry::Context) {
    if cx.span().span_context().is_valid() {
        // Fails only for a span no layer tracks, which then has no trace to join.
        let _ = span.set_parent(cx);
    }
}

/// Makes `span` continue the trace named by the request's `traceparent`
/// header, if any (otherwise it starts a trace of its own).
pub fn continue_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    if !tracing_enabled() || !headers.contains_key("traceparent") {
        return;
    }
    set_parent(
        span,
        TraceContextPropagator::new().extract(&HeaderExtract(headers)),
    );
}

/// Makes `span` continue the trace of a stored context (an event's).
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if !tracing_enabled() || traceparent.is_none() {
        return;
    }
    set_parent(
        span,
        TraceContextPropagator::new().extract(&Fields(traceparent, tracestate)),
    );
}

/// Writes the current span's trace context into outgoing headers,
/// replacing any the caller sent (this process's span is the parent now).
pub fn inject_headers(headers: &mut HeaderMap) {
    if !tracing_enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        headers.remove("traceparent");
        headers.remove("tracestate");
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInject(headers));
    }
}

/// The current span's trace context, to store with work it causes (events).
pub fn current() -> Option<TraceContext> {
    if !tracing_enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut headers = HeaderMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInject(&mut headers));
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Some(TraceContext {
        traceparent: get("traceparent")?,
        tracestate: get("tracestate"),
    })
}

/// The trace id (32 hex digits) of a span, when traces are tracked.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if !tracing_enabled() {
        return None;
    }
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_endpoint_nothing_is_tracked() {
        assert!(!tracing_enabled());
        let span = tracing::info_span!("x");
        let _entered = span.enter();
        assert_eq!(current(), None);
        let mut headers = HeaderMap::new();
        inject_headers(&mut headers);
        assert!(headers.is_empty());
        assert_eq!(trace_id(&span), None);
    }
}
