//! RED metrics (rate, errors, duration) per service, operation, span kind and
//! status. [`crate::sink::prometheus::red`] names and labels them as the
//! OpenTelemetry span-metrics connector does,
//! so Jaeger's Monitor tab (SPM) can query them from Prometheus with
//! `metric_namespace: traces_span_metrics`, `normalize_calls: true`,
//! `normalize_duration: true` (unit `ms`):
//!
//! - `traces_span_metrics_calls_total{service_name, span_name, span_kind, status_code}`
//! - `traces_span_metrics_duration_milliseconds_bucket{..., le}` (+ `_sum`, `_count`)
//!
//! `span_kind` is `SPAN_KIND_SERVER` etc.; `status_code` is `STATUS_CODE_ERROR`
//! for error spans and `STATUS_CODE_UNSET` otherwise.

use crate::model::{Interner, Span, SpanKind, Sym, TraceId};
use rustc_hash::FxHashMap;

/// Histogram bucket bounds in milliseconds (the span-metrics connector's defaults).
pub const BUCKETS_MS: [f64; 16] = [
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0, 10000.0,
    15000.0,
];

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RedKey {
    pub service: Sym,
    pub operation: Sym,
    pub kind: SpanKind,
    pub error: bool,
    /// The span's dimension values ([`Span::dimensions`]).
    pub dimensions: Sym,
}

/// Counts are of real traffic: a span of a trace sampled with probability p
/// counts 1/p (its weight, [`crate::analysis::sampling`]), so they are
/// floating point, as Prometheus counters are; unsampled spans count exactly 1.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RedStats {
    pub calls: f64,
    pub latency: Latency,
}

/// A latency histogram over [`BUCKETS_MS`] (RED and the service graph share it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    /// Weighted count per bucket (not cumulative); the last slot is +Inf.
    pub buckets: [f64; BUCKETS_MS.len() + 1],
    /// Weighted sum of the durations, µs.
    pub sum_us: f64,
    /// The latest trace per bucket, for exemplars.
    pub exemplars: [ExemplarSlot; BUCKETS_MS.len() + 1],
}

impl Latency {
    /// Counts `s`'s duration `weight` times; `s` becomes its bucket's exemplar.
    #[inline]
    pub fn observe(&mut self, s: &Span, weight: f64) {
        self.record(s.duration_us, s.trace_id, weight);
    }

    /// Counts a duration of `us` µs `weight` times, with `trace_id` as its
    /// bucket's exemplar.
    #[inline]
    pub fn record(&mut self, us: u64, trace_id: crate::model::TraceId, weight: f64) {
        let b = bucket(us);
        self.buckets[b] += weight;
        self.sum_us += us as f64 * weight;
        self.exemplars[b] = ExemplarSlot { trace_id, value_us: us };
    }

    /// The weighted count.
    pub fn count(&self) -> f64 {
        self.buckets.iter().sum()
    }

    pub fn sum_ms(&self) -> f64 {
        self.sum_us / 1000.0
    }
}

/// The trace that last fell into a histogram bucket: links a latency to a trace.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ExemplarSlot {
    pub trace_id: TraceId,
    /// The observed value, microseconds.
    pub value_us: u64,
}

impl ExemplarSlot {
    pub fn is_set(&self) -> bool {
        !self.trace_id.is_zero()
    }
}

/// The service and operation name of the series that takes every span past the
/// series limit.
pub use crate::model::OVERFLOW;

#[derive(Default, Debug)]
pub struct Red {
    series: FxHashMap<RedKey, RedStats>,
    /// Most series kept (0: no limit); past it, spans of new label sets go to the
    /// overflow series, so hostile span data cannot explode label cardinality.
    max_series: usize,
    overflow: Sym,
    pub overflowed_spans: u64,
}

/// Bucket index of [`BUCKETS_MS`] for a duration in microseconds.
#[inline]
pub fn bucket(duration_us: u64) -> usize {
    let ms = duration_us as f64 / 1000.0;
    BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(BUCKETS_MS.len())
}

impl Red {
    /// RED with at most `max_series` series; `overflow` is the interned [`OVERFLOW`].
    pub fn with_limit(max_series: usize, overflow: Sym) -> Self {
        Red { max_series, overflow, ..Red::default() }
    }

    /// Counts span `s` `weight` times (1: unsampled).
    #[inline]
    pub fn observe(&mut self, s: &Span, weight: f64) {
        let mut key = RedKey {
            service: s.service,
            operation: s.operation,
            kind: s.kind,
            error: s.error,
            dimensions: s.dimensions,
        };
        if self.max_series > 0 && self.series.len() >= self.max_series && !self.series.contains_key(&key) {
            key = RedKey {
                service: self.overflow,
                operation: self.overflow,
                kind: SpanKind::Unspecified,
                error: s.error,
                dimensions: Sym(0),
            };
            self.overflowed_spans += 1;
        }
        let st = self.series.entry(key).or_default();
        st.calls += weight;
        st.latency.observe(s, weight);
    }

    pub fn series(&self) -> impl Iterator<Item = (&RedKey, &RedStats)> {
        self.series.iter()
    }

    pub fn total_calls(&self) -> f64 {
        self.series.values().map(|s| s.calls).sum()
    }

    /// Series sorted by service, operation, kind and status names.
    pub fn sorted<'a>(&'a self, names: &'a Interner) -> Vec<(&'a RedKey, &'a RedStats)> {
        let mut v: Vec<_> = self.series.iter().collect();
        v.sort_by(|(a, _), (b, _)| {
            (
                names.resolve(a.service),
                names.resolve(a.operation),
                a.kind,
                a.error,
                names.resolve(a.dimensions),
            )
                .cmp(&(
                    names.resolve(b.service),
                    names.resolve(b.operation),
                    b.kind,
                    b.error,
                    names.resolve(b.dimensions),
                ))
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_past_the_limit_share_one_overflow_series() {
        let mut names = Interner::new();
        let mut red = Red::with_limit(3, names.intern(OVERFLOW));
        for i in 0..100 {
            red.observe(&Span { service: names.intern(&format!("svc-{i}")), ..Span::default() }, 1.0);
        }
        // Known label sets keep counting in their own series.
        red.observe(&Span { service: names.intern("svc-0"), ..Span::default() }, 1.0);
        let sorted = red.sorted(&names);
        assert_eq!(sorted.len(), 4, "three series and the overflow one");
        assert_eq!(red.total_calls(), 101.0);
        assert_eq!(red.overflowed_spans, 97);
        let overflow =
            sorted.iter().find(|(k, _)| names.resolve(k.service) == OVERFLOW).expect("overflow series");
        assert_eq!(overflow.1.calls, 97.0);
    }
}
