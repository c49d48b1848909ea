//! Logs, traces and metrics (DESIGN §7–8).
//!
//! - Logs: `tracing` events as text or JSON lines on stderr (stdout is kept
//!   for what the operator must read: the first-start link).
//! - Traces: one span per RPC and per HTTP request, exported over OTLP/gRPC
//!   when the standard `OTEL_EXPORTER_OTLP_*` variables name an endpoint; W3C
//!   trace context is read from incoming requests and written into the
//!   gateway's outgoing gRPC calls.
//! - Metrics: Prometheus text on a port of its own ([`metrics`]).

pub mod grpc;
pub mod http;
pub mod metrics;
pub mod propagation;

use std::time::Duration;

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::Targets,
    fmt::{self, FmtContext, FormatEvent, FormatFields, format::Writer},
    prelude::*,
    registry::LookupSpan,
};

use crate::config::{Config, LogFormat};

/// The spans worth exporting: this crate's, whatever the log filter says, so
/// quiet logs never mean missing traces.
const TRACED_TARGETS: &str = "identity";

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
#[must_use = "dropping the guard without `shutdown` may lose the last spans"]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn exporting_traces(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Sends the spans still buffered; bounded, so a dead collector cannot hold up a stop.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("identity: could not flush traces: {error}");
        }
    }
}

/// Installs the global subscriber. Must run inside a Tokio runtime when OTLP
/// export is configured: the exporter's gRPC channel lives on it.
pub fn init(config: &Config) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|e| anyhow::anyhow!("invalid configuration: `log_filter` {e}"))?;
    let logs = match config.log_format {
        LogFormat::Text => fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .event_format(TraceIds(fmt::format().json().flatten_event(true).with_current_span(true)))
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let tracer_provider = otlp_provider(|name| std::env::var(name).ok())?;
    let traces = tracer_provider.as_ref().map(|provider| {
        let targets: Targets = TRACED_TARGETS.parse().expect("a valid target list");
        tracing_opentelemetry::layer().with_tracer(provider.tracer("identity")).with_filter(targets)
    });
    tracing_subscriber::registry().with(logs).with(traces).try_init()?;
    if tracer_provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing::info!("exporting traces over OTLP");
    }
    Ok(Telemetry { tracer_provider })
}

/// A JSON line formatter that leads each line with the `trace_id` and
/// `span_id` of the exported span it was logged in, so a log search joins the
/// trace and back. Without trace export there are no ids and lines are unchanged.
struct TraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for TraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // Read after formatting: the span's extensions must not be borrowed while the
        // OpenTelemetry layer builds the span's context.
        let context = tracing::Span::current().context();
        let span = context.span();
        let ids = span.span_context();
        match line.strip_prefix('{') {
            Some(rest) if ids.is_valid() => {
                write!(writer, r#"{{"trace_id":"{}","span_id":"{}",{rest}"#, ids.trace_id(), ids.span_id())
            }
            _ => writer.write_str(&line),
        }
    }
}

/// An OTLP/gRPC span exporter when the environment asks for one, following
/// the OpenTelemetry SDK specification's variable names.
fn otlp_provider(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<SdkTracerProvider>> {
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    if !export_requested(&set) {
        return Ok(None);
    }
    if let Some(protocol) = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        && protocol.trim() != "grpc"
    {
        anyhow::bail!(
            "invalid configuration: OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: \
             this build exports traces over OTLP/gRPC only (`grpc`)"
        );
    }
    // The builder reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| anyhow::anyhow!("invalid configuration: cannot set up OTLP trace export: {e}"))?;
    let mut resource = Resource::builder();
    if set("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("identity");
    }
    let resource =
        resource.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build();
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build()))
}

/// An endpoint is named and neither the SDK nor trace export is switched off.
fn export_requested(set: &impl Fn(&str) -> Option<String>) -> bool {
    let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let disabled = set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let exporter_off = set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    endpoint.is_some() && !disabled && !exporter_off
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }

    #[test]
    fn export_needs_an_endpoint_and_no_switch_turning_it_off() {
        let wanted = |pairs| export_requested(&|name: &str| env(pairs)(name).filter(|v| !v.is_empty()));
        assert!(!wanted(&[]));
        assert!(!wanted(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]));
        assert!(wanted(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")]));
        assert!(wanted(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4317")]));
        assert!(!wanted(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"), ("OTEL_SDK_DISABLED", "TRUE")]));
        assert!(!wanted(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"), ("OTEL_TRACES_EXPORTER", "none")]));
        assert!(wanted(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"), ("OTEL_SDK_DISABLED", "false")]));
    }

    #[test]
    fn only_the_grpc_protocol_is_accepted() {
        let Err(error) = otlp_provider(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])) else {
            panic!("http/protobuf is refused")
        };
        assert!(error.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"), "{error}");
        assert!(otlp_provider(env(&[])).expect("nothing asked").is_none());
    }
}
