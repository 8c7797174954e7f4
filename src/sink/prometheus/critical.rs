//! Where end-to-end time goes, across traces: each service's and operation's
//! self time on the traces' critical paths (see [`crate::analysis::critical_path`]).

use super::red::histogram;
use crate::analysis::critical_path::CriticalPaths;
use crate::analysis::red::BUCKETS_MS;
use crate::model::Interner;
use crate::sink::exposition::{Exposition, Kind};

pub const TIME_METRIC: &str = "poirot_critical_path_seconds_total";
pub const SELF_METRIC: &str = "poirot_critical_path_self_seconds";
pub const TRACES_METRIC: &str = "poirot_critical_path_traces_total";
pub const DURATION_METRIC: &str = "poirot_critical_path_trace_seconds_total";

pub fn render(c: &CriticalPaths, names: &Interner, e: &mut Exposition) {
    let mut series: Vec<_> =
        c.series().map(|((s, o), l)| (names.resolve(*s), names.resolve(*o), l)).collect();
    series.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    e.family(
        TIME_METRIC,
        Kind::Counter,
        "Time on the critical path of closed traces (what set their end-to-end latency), by the service and operation whose own work it was.",
    );
    for (service, operation, l) in &series {
        e.sample(TIME_METRIC, &[("service_name", service), ("span_name", operation)], l.sum_us / 1e6);
    }
    e.family(
        SELF_METRIC,
        Kind::Histogram,
        "Self time of a service and operation on one trace's critical path, per trace where it is on the path.",
    );
    let bounds: Vec<f64> = BUCKETS_MS.iter().map(|b| b / 1e3).collect();
    for (service, operation, l) in &series {
        e.histogram(
            SELF_METRIC,
            &[("service_name", service), ("span_name", operation)],
            &histogram(l, &bounds, 1e6),
        );
    }
    e.family(TRACES_METRIC, Kind::Counter, "Traces whose critical path was taken.");
    e.sample(TRACES_METRIC, &[], c.traces);
    e.family(
        DURATION_METRIC,
        Kind::Counter,
        "End-to-end durations of those traces in all (first span's start to last end): the critical-path series add up to it.",
    );
    e.sample(DURATION_METRIC, &[], c.duration_us as f64 / 1e6);
}
