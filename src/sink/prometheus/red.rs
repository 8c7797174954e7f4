//! RED series under the names and labels of the OpenTelemetry span-metrics
//! connector, which Jaeger's Monitor tab (SPM) queries: see
//! [`crate::analysis::red`] for what they count.

use crate::analysis::red::{Latency, Red, RedKey, BUCKETS_MS};
use crate::model::Interner;
use crate::sink::exposition::{Exposition, Float, HistogramSample, Kind};

pub const CALLS_METRIC: &str = "traces_span_metrics_calls_total";
pub const DURATION_METRIC: &str = "traces_span_metrics_duration_milliseconds";

/// `latency` for exposition with `bounds` in a unit of `us_per_unit` microseconds.
pub fn histogram<'a>(latency: &'a Latency, bounds: &'a [f64], us_per_unit: f64) -> HistogramSample<'a> {
    HistogramSample {
        bounds,
        counts: &latency.buckets,
        // Divided, as before, so replay files stay byte for byte the same.
        sum: latency.sum_us / us_per_unit,
        exemplars: Some(&latency.exemplars),
        unit_per_us: 1.0 / us_per_unit,
    }
}

/// The `status_code` label of a span.
pub fn status_code(error: bool) -> &'static str {
    if error {
        "STATUS_CODE_ERROR"
    } else {
        "STATUS_CODE_UNSET"
    }
}

/// RED's own labels: a dimension may not take one.
pub const LABELS: [&str; 4] = ["service_name", "span_name", "span_kind", "status_code"];

/// The label of dimension `key`: Prometheus allows letters, digits and `_`
/// (`deployment.environment` → `deployment_environment`).
pub fn dimension_label(key: &str) -> String {
    let mut label: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if label.starts_with(|c: char| c.is_ascii_digit()) {
        label.insert(0, '_');
    }
    label
}

/// Every series, sorted, with trace-id exemplars where the format has them.
pub fn render(red: &Red, names: &Interner, e: &mut Exposition) {
    let sorted = red.sorted(names);
    let dimensions: Vec<String> = names.dimensions().iter().map(|k| dimension_label(k)).collect();
    let labels = |k: &RedKey| {
        let mut l = vec![
            (LABELS[0], names.resolve(k.service)),
            (LABELS[1], names.resolve(k.operation)),
            (LABELS[2], k.kind.otlp_name()),
            (LABELS[3], status_code(k.error)),
        ];
        // Values in key order; a span without one (or the overflow series) has "".
        let mut values = names.resolve(k.dimensions).split(crate::model::DIMENSION_SEPARATOR);
        for d in &dimensions {
            l.push((d.as_str(), values.next().unwrap_or("")));
        }
        l
    };
    e.family(CALLS_METRIC, Kind::Counter, "Spans per service, operation, span kind and status.");
    for (k, s) in &sorted {
        e.sample(CALLS_METRIC, &labels(k), Float(s.calls));
    }
    e.family(DURATION_METRIC, Kind::Histogram, "Span durations in milliseconds.");
    for (k, s) in &sorted {
        e.histogram(DURATION_METRIC, &labels(k), &histogram(&s.latency, &BUCKETS_MS, 1e3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Span, SpanKind};
    use crate::sink::exposition::ExpoFormat;

    #[test]
    fn renders_spm_compatible_series() {
        let mut names = Interner::new();
        let mut red = Red::default();
        let mut s = Span {
            service: names.intern("frontend"),
            operation: names.intern("HTTP GET \"/dispatch\""),
            kind: SpanKind::Server,
            duration_us: 3_000,
            ..Span::default()
        };
        red.observe(&s, 1.0);
        s.error = true;
        s.duration_us = 20_000_000;
        red.observe(&s, 1.0);
        let mut e = Exposition::new(ExpoFormat::Text);
        render(&red, &names, &mut e);
        let out = e.finish();
        assert!(out.contains(
            "traces_span_metrics_calls_total{service_name=\"frontend\",span_name=\"HTTP GET \\\"/dispatch\\\"\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_ERROR\"} 1"
        ), "{out}");
        assert!(out.contains("status_code=\"STATUS_CODE_UNSET\",le=\"4\"} 1"), "{out}");
        assert!(out.contains("status_code=\"STATUS_CODE_UNSET\",le=\"2\"} 0"), "{out}");
        assert!(out.contains("status_code=\"STATUS_CODE_ERROR\",le=\"15000\"} 0"), "{out}");
        assert!(out.contains("status_code=\"STATUS_CODE_ERROR\",le=\"+Inf\"} 1"), "{out}");
        assert_eq!(red.total_calls(), 2.0);
    }
}
