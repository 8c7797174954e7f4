//! The pipeline's Prometheus series, rendered from operator state at snapshot
//! time: RED (see [`crate::analysis::red`]), the service graph (see
//! [`crate::analysis::service_graph`]), anomaly counters by kind and service,
//! lost messages by producer and destination, and the pipeline's own health.
//! Process metrics that other threads update are in [`crate::telemetry::process`].

pub mod critical;
pub mod graph;
pub mod red;

use super::exposition::{ExpoFormat, Exposition, Kind};
use crate::analysis::AnomalyKind;
use crate::analysis::Outputs;

/// The RED series of `p`, sorted, in text format 0.0.4 (`metrics.prom`).
pub fn render_red(p: &Outputs<'_>) -> String {
    let mut e = Exposition::new(ExpoFormat::Text);
    red::render(p.red, p.names, &mut e);
    e.finish()
}

/// Every pipeline series in `format`, without the OpenMetrics `# EOF` (the
/// process metrics follow).
pub fn render(p: &Outputs<'_>, format: ExpoFormat) -> String {
    let mut e = Exposition::new(format);
    render_into(p, &mut e);
    e.into_body()
}

fn counter(e: &mut Exposition, name: &str, help: &str, v: u64) {
    e.family(name, Kind::Counter, help);
    e.sample(name, &[], v);
}

fn gauge(e: &mut Exposition, name: &str, help: &str, v: impl std::fmt::Display) {
    e.family(name, Kind::Gauge, help);
    e.sample(name, &[], v);
}

pub fn render_into(p: &Outputs<'_>, e: &mut Exposition) {
    let names = p.names;
    red::render(p.red, names, e);
    graph::render(p.graph, names, e);
    critical::render(p.critical, names, e);

    e.family("poirot_anomalies_total", Kind::Counter, "Anomalies found, by kind and service.");
    for kind in AnomalyKind::ALL {
        // Every kind has a series from the start, so rates and alerts see zeros.
        if !p.counters.by_service.keys().any(|(k, _)| *k == kind) {
            e.sample("poirot_anomalies_total", &[("kind", kind.as_str()), ("service", "")], 0);
        }
    }
    let mut by_service: Vec<_> =
        p.counters.by_service.iter().map(|((k, s), n)| (k.as_str(), names.resolve(*s), *n)).collect();
    by_service.sort();
    for (kind, service, n) in by_service {
        e.sample("poirot_anomalies_total", &[("kind", kind), ("service", service)], n);
    }
    e.family(
        "poirot_message_loss_total",
        Kind::Counter,
        "Messages published and never consumed, by producer service and destination.",
    );
    let mut lost: Vec<_> = p
        .counters
        .message_loss
        .iter()
        .map(|((producer, d), n)| (names.resolve(*producer), names.resolve(*d), *n))
        .collect();
    lost.sort();
    for (producer, destination, n) in lost {
        e.sample(
            "poirot_message_loss_total",
            &[("producer_service", producer), ("destination", destination)],
            n,
        );
    }
    e.family(
        "poirot_message_loss_resolved_total",
        Kind::Counter,
        "Reported message losses whose consumer showed up after all, by producer service and destination: the net loss is poirot_message_loss_total minus this.",
    );
    let mut resolved: Vec<_> = p
        .counters
        .message_loss_resolved
        .iter()
        .map(|((producer, d), n)| (names.resolve(*producer), names.resolve(*d), *n))
        .collect();
    resolved.sort();
    for (producer, destination, n) in resolved {
        e.sample(
            "poirot_message_loss_resolved_total",
            &[("producer_service", producer), ("destination", destination)],
            n,
        );
    }
    let flows = p.flows;
    gauge(
        e,
        "poirot_message_loss_pending",
        "Producer spans nobody consumed yet, waiting for their destination's deadline.",
        flows.pending_producers(),
    );
    gauge(
        e,
        "poirot_closed_traces",
        "Recently closed traces that late spans and links can still join.",
        flows.closed_traces(),
    );
    gauge(e, "poirot_closed_index_bytes", "Memory of the closed-trace index.", flows.closed_bytes());
    gauge(
        e,
        "poirot_links_waiting",
        "References into traces that have not closed yet.",
        flows.waiting_links(),
    );
    gauge(
        e,
        "poirot_applied_links_remembered",
        "Links applied through link records, and producers they consumed, remembered (2 h) so that copies and re-reads count nothing.",
        flows.applied.len(),
    );
    counter(
        e,
        "poirot_applied_links_evicted_total",
        "Applied links forgotten before their 2 hours because 2,000,000 were remembered.",
        flows.applied.evicted,
    );
    let fs = &flows.stats;
    e.family(
        "poirot_cross_trace_references_total",
        Kind::Counter,
        "References into other traces (links), by how they ended: resolved to a span, unresolved (the trace never closed here within the retention), or copy (met again after it was applied: not counted twice).",
    );
    e.sample("poirot_cross_trace_references_total", &[("result", "resolved")], fs.links_resolved);
    e.sample("poirot_cross_trace_references_total", &[("result", "unresolved")], fs.links_unresolved);
    e.sample("poirot_cross_trace_references_total", &[("result", "copy")], fs.link_copies);
    counter(
        e,
        "poirot_evicted_closed_traces_total",
        "Closed traces pushed out of the closed-trace index by assembly.max_closed_bytes before their retention.",
        fs.evicted_closed,
    );

    let stats = p.stats;
    counter(e, "poirot_records_total", "Input records read.", p.input.records);
    counter(
        e,
        "poirot_repartition_records_total",
        "Records read from the repartition topic (spans re-keyed by trace id).",
        p.input.shuffled_records,
    );
    counter(
        e,
        "poirot_link_records_total",
        "Link records read from the repartition topic: references from spans of other processes' traces into this one's.",
        p.input.link_records,
    );
    counter(e, "poirot_spans_decoded_total", "Spans decoded from the input.", p.input.spans);
    e.family("poirot_bad_records_total", Kind::Counter, "Records or spans rejected, by reason.");
    for (reason, n) in &p.input.bad {
        e.sample("poirot_bad_records_total", &[("reason", reason.as_str())], *n);
    }
    counter(e, "poirot_traces_closed_total", "Traces whose session window closed.", stats.traces);
    counter(
        e,
        "poirot_late_spans_total",
        "Spans that arrived after their trace closed (copies excluded); joined to it while it is in the closed-trace index.",
        stats.late_spans,
    );
    counter(
        e,
        "poirot_overflow_spans_total",
        "Spans beyond their trace's span limit (RED only).",
        stats.overflow_spans,
    );
    counter(
        e,
        "poirot_duplicate_spans_total",
        "Re-delivered spans dropped: copies within a trace, or of a span its closed trace already counted.",
        stats.duplicate_spans,
    );
    counter(
        e,
        "poirot_evicted_traces_total",
        "Traces closed early to stay within the span budget.",
        stats.evicted_traces,
    );
    counter(
        e,
        "poirot_sampled_spans_total",
        "Spans of traces that state a sampling probability p below 1: each counts 1/p in RED and the service graph.",
        stats.sampled_spans,
    );
    counter(
        e,
        "poirot_red_overflow_spans_total",
        "Spans counted in the __overflow__ RED series.",
        p.red.overflowed_spans,
    );
    counter(
        e,
        "poirot_replayed_spans_total",
        "Spans of already counted traces dropped when read again.",
        p.input.replayed_spans,
    );
    counter(
        e,
        "poirot_own_spans_dropped_total",
        "Input spans of poirot's own service (self-tracing), not analysed.",
        p.input.own_spans,
    );
    counter(
        e,
        "poirot_overflow_names_total",
        "Lookups of new names (services, operations, destinations) past metrics.max_names, answered __overflow__.",
        names.overflowed(),
    );
    e.family(
        "poirot_truncated_names_total",
        Kind::Counter,
        "Names from input longer than metrics.max_name_bytes, cut with the marker \"…[truncated]\", by kind.",
    );
    for kind in crate::model::NameKind::ALL {
        e.sample("poirot_truncated_names_total", &[("kind", kind.as_str())], names.truncated(kind));
    }
    gauge(e, "poirot_names", "Distinct names held.", names.len());
    gauge(e, "poirot_open_traces", "Traces being assembled.", p.open_traces);
    gauge(e, "poirot_buffered_spans", "Spans held by open traces.", p.buffered_spans);
    gauge(
        e,
        "poirot_state_bytes",
        "Estimated memory of the spans held by open traces.",
        p.buffered_spans * std::mem::size_of::<crate::model::Span>(),
    );
    if p.watermark > i64::MIN {
        gauge(
            e,
            "poirot_watermark_seconds",
            "Event-time watermark, seconds since the epoch.",
            p.watermark as f64 / 1e6,
        );
        let now = crate::dataflow::Clock::now_us(&crate::dataflow::SystemClock);
        gauge(
            e,
            "poirot_watermark_delay_seconds",
            "How far event time lags behind the clock.",
            (now - p.watermark) as f64 / 1e6,
        );
    }
}
