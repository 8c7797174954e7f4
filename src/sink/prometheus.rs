//! Prometheus text exposition of the pipeline: the RED series (see
//! [`crate::analysis::red`]) and poirot's own counters.

use crate::analysis::AnomalyKind;
use crate::pipeline::Pipeline;
use std::fmt::Write;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the RED series of `p`, sorted, in text format 0.0.4.
pub fn render_red(p: &Pipeline) -> String {
    let mut out = String::with_capacity(4096);
    p.analyzer.red.render_prometheus(&p.names, &mut out);
    out
}

/// Renders the RED series and poirot's own metrics.
pub fn render(p: &Pipeline) -> String {
    let mut out = render_red(p);
    let stats = &p.analyzer.stats;

    family(&mut out, "poirot_records_total", "counter", "Input records read.");
    let _ = writeln!(out, "poirot_records_total {}", p.input.records);
    family(&mut out, "poirot_spans_decoded_total", "counter", "Spans decoded from the input.");
    let _ = writeln!(out, "poirot_spans_decoded_total {}", p.input.spans);
    family(&mut out, "poirot_bad_records_total", "counter", "Records or spans rejected, by reason.");
    for (reason, n) in &p.input.bad {
        let _ = writeln!(out, "poirot_bad_records_total{{reason=\"{reason}\"}} {n}");
    }
    family(&mut out, "poirot_traces_closed_total", "counter", "Traces whose session window closed.");
    let _ = writeln!(out, "poirot_traces_closed_total {}", stats.traces);
    family(
        &mut out,
        "poirot_late_spans_total",
        "counter",
        "Spans that arrived after their trace closed (RED only).",
    );
    let _ = writeln!(out, "poirot_late_spans_total {}", stats.late_spans);
    family(
        &mut out,
        "poirot_overflow_spans_total",
        "counter",
        "Spans beyond their trace's span limit (RED only).",
    );
    let _ = writeln!(out, "poirot_overflow_spans_total {}", stats.overflow_spans);
    family(&mut out, "poirot_duplicate_spans_total", "counter", "Re-delivered spans dropped within a trace.");
    let _ = writeln!(out, "poirot_duplicate_spans_total {}", stats.duplicate_spans);
    family(
        &mut out,
        "poirot_evicted_traces_total",
        "counter",
        "Traces closed early to stay within the span budget.",
    );
    let _ = writeln!(out, "poirot_evicted_traces_total {}", stats.evicted_traces);
    family(&mut out, "poirot_anomalies_total", "counter", "Anomalies found, by kind.");
    for kind in AnomalyKind::ALL {
        let n = stats.anomalies.get(&kind).copied().unwrap_or(0);
        let _ = writeln!(out, "poirot_anomalies_total{{kind=\"{kind}\"}} {n}");
    }
    family(
        &mut out,
        "poirot_red_overflow_spans_total",
        "counter",
        "Spans counted in the __overflow__ RED series.",
    );
    let _ = writeln!(out, "poirot_red_overflow_spans_total {}", p.analyzer.red.overflowed_spans);
    family(&mut out, "poirot_open_traces", "gauge", "Traces being assembled.");
    let _ = writeln!(out, "poirot_open_traces {}", p.open_traces());
    family(&mut out, "poirot_buffered_spans", "gauge", "Spans held by open traces.");
    let _ = writeln!(out, "poirot_buffered_spans {}", p.buffered_spans());
    family(&mut out, "poirot_state_bytes", "gauge", "Estimated memory of the spans held by open traces.");
    let _ = writeln!(
        out,
        "poirot_state_bytes {}",
        p.buffered_spans() * std::mem::size_of::<crate::model::Span>()
    );
    if p.watermark() > i64::MIN {
        family(
            &mut out,
            "poirot_watermark_seconds",
            "gauge",
            "Event-time watermark, seconds since the epoch.",
        );
        let _ = writeln!(out, "poirot_watermark_seconds {}", p.watermark() as f64 / 1e6);
        family(
            &mut out,
            "poirot_watermark_delay_seconds",
            "gauge",
            "How far event time lags behind the clock.",
        );
        let now = crate::dataflow::Clock::now_us(&crate::dataflow::SystemClock);
        let _ = writeln!(out, "poirot_watermark_delay_seconds {}", (now - p.watermark()) as f64 / 1e6);
    }
    out
}
