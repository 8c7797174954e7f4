//! Self-tracing: poirot's own work — sink writes, rebalance hand-offs, repartition
//! flushes — as OpenTelemetry spans exported over OTLP/HTTP to a collector (Jaeger
//! takes OTLP natively). Off unless `self_tracing.endpoint` is set; while off, the
//! global tracer is OpenTelemetry's no-op one.
//!
//! No feedback loop: poirot drops input spans of its own `service.name`
//! ([`crate::runtime::Pipeline::ignore_service`]), so even a collector that
//! writes poirot's spans back into the topic poirot reads cannot make it trace
//! the analysis of its own traces.
//!
//! [`health`] is poirot's readiness (`/readyz`); [`process`] the metrics that
//! threads other than the pipeline's update (Kafka, sinks, rebalances).

pub mod events;
pub mod health;
pub mod process;

use crate::config::SelfTracingSection;
use opentelemetry::global::{self, BoxedSpan};
use opentelemetry::trace::{Span as _, Status, Tracer as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("cannot set up self-tracing to {endpoint}: {detail}")]
pub struct SelfTracingError {
    endpoint: String,
    detail: String,
}

/// The running exporter; [`SelfTracing::shutdown`] sends what is left.
pub struct SelfTracing {
    provider: Option<SdkTracerProvider>,
}

impl SelfTracing {
    /// Starts exporting when `config.endpoint` is set.
    pub fn start(config: &SelfTracingSection) -> Result<SelfTracing, SelfTracingError> {
        if config.endpoint.is_empty() {
            return Ok(SelfTracing { provider: None });
        }
        let base = config.endpoint.trim_end_matches('/');
        let url = if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&url)
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| SelfTracingError { endpoint: url.clone(), detail: e.to_string() })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(config.service_name.clone())
                    .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
                    .build(),
            )
            .build();
        global::set_tracer_provider(provider.clone());
        tracing::info!("self-tracing to {url} as {}", config.service_name);
        Ok(SelfTracing { provider: Some(provider) })
    }

    /// Exports the spans still buffered.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                tracing::warn!("self-tracing shutdown: {e}");
            }
        }
    }
}

/// A span of poirot's own work; ends when dropped (or with [`Work::fail`]).
pub struct Work(BoxedSpan);

/// Starts a span named `name` with `attributes`.
pub fn work(name: &'static str, attributes: Vec<KeyValue>) -> Work {
    let mut span = global::tracer("poirot").start(name);
    if !attributes.is_empty() {
        span.set_attributes(attributes);
    }
    Work(span)
}

impl Work {
    pub fn attribute(&mut self, kv: KeyValue) {
        self.0.set_attribute(kv);
    }

    /// Marks the work failed with `detail`.
    pub fn fail(&mut self, detail: impl Into<String>) {
        self.0.set_status(Status::error(detail.into()));
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        self.0.end();
    }
}
