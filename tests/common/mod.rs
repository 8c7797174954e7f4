//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod http;
pub mod servers;

use poirot::analysis::{Anomaly, DetectedAt};
use poirot::config::Config;
use poirot::dataflow::SystemClock;
use poirot::model::{Interner, RefKind, Span, SpanId, SpanKind, SpanRef, TraceId};
use poirot::runtime::{Input, Pipeline};
use std::sync::Arc;

pub const T0: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z in µs

/// A pipeline as `poirot replay` builds it, with `config`.
pub fn pipeline_with(config: &Config) -> Pipeline {
    let mut pc = poirot::cli::pipeline_config(config, DetectedAt::TraceClose);
    pc.watermark.idle_timeout_us = i64::MAX;
    Pipeline::new(pc, Arc::new(SystemClock))
}

pub fn pipeline() -> Pipeline {
    pipeline_with(&Config::default())
}

/// Builds the spans of one trace by hand.
pub struct TraceBuilder<'a> {
    pub names: &'a mut Interner,
    pub trace_id: TraceId,
    pub spans: Vec<Span>,
}

impl<'a> TraceBuilder<'a> {
    pub fn new(names: &'a mut Interner, trace: u64) -> Self {
        TraceBuilder { names, trace_id: TraceId::new(0xabc, trace), spans: Vec::new() }
    }

    /// Adds span `id` of `service` at `at_ms` with references to spans `parents`.
    pub fn span(&mut self, id: u64, service: &str, kind: SpanKind, parents: &[(u64, RefKind)]) -> &mut Span {
        let at_ms = self.spans.len() as i64;
        let span = Span {
            trace_id: self.trace_id,
            span_id: SpanId(id),
            start_us: T0 + at_ms * 1000,
            duration_us: 500,
            refs: parents
                .iter()
                .map(|&(p, kind)| SpanRef { trace_id: self.trace_id, span_id: SpanId(p), kind })
                .collect(),
            service: self.names.intern(service),
            operation: self.names.intern(&format!("{service}-op")),
            kind,
            ..Span::default()
        };
        self.spans.push(span);
        self.spans.last_mut().expect("just pushed")
    }

    pub fn child(&mut self, id: u64, service: &str, parent: u64) -> &mut Span {
        self.span(id, service, SpanKind::Internal, &[(parent, RefKind::ChildOf)])
    }
}

/// Runs spans (already in one pipeline's names) to the end; returns the anomalies.
pub fn run_spans(p: &mut Pipeline, spans: Vec<Span>) -> Vec<Anomaly> {
    for s in spans {
        p.push(Input::Span { partition: 0, span: s });
    }
    p.push(Input::End);
    p.drain_anomalies().collect()
}

/// Analyses one hand-built trace with default settings.
pub fn analyse(build: impl FnOnce(&mut TraceBuilder<'_>)) -> (Pipeline, Vec<Anomaly>) {
    analyse_with(&Config::default(), build)
}

pub fn analyse_with(config: &Config, build: impl FnOnce(&mut TraceBuilder<'_>)) -> (Pipeline, Vec<Anomaly>) {
    let mut p = pipeline_with(config);
    let mut b = TraceBuilder::new(p.names_mut(), 1);
    build(&mut b);
    let spans = std::mem::take(&mut b.spans);
    let anomalies = run_spans(&mut p, spans);
    (p, anomalies)
}
