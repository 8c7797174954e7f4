//! The live view of a running pipeline: a snapshot with names resolved, taken by
//! the pipeline thread and served by the web page, plus the dependency graph
//! drawn as SVG.

use crate::analysis::edges::ServiceEdgeRow;
use crate::analysis::red::{RedStats, BUCKETS_MS};
use crate::analysis::Anomaly;
use crate::analysis::Outputs;
use crate::model::time::format_rfc3339_us;
use crate::sink::exposition::ExpoFormat;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

#[derive(Serialize, Clone, Debug, Default)]
pub struct Snapshot {
    /// `demo` or `run`.
    pub mode: String,
    pub watermark: String,
    pub totals: Totals,
    /// RED per service, operation and kind, cumulative: the page takes rates and
    /// quantiles over its window from the difference of two snapshots.
    pub red: Vec<RedRow>,
    /// Upper bounds (ms) of the latency buckets of `red` rows (the last is +Inf).
    pub bucket_bounds_ms: Vec<f64>,
    pub edges: Vec<ServiceEdgeRow>,
    /// Calls per second of each service edge over the last [`RATE_WINDOW`].
    pub edge_rates: Vec<EdgeRate>,
    /// Messages reported lost, net of those a late consumer resolved, by
    /// (producer service, destination).
    pub losses: Vec<(String, String, u64)>,
    pub anomaly_counts: BTreeMap<String, u64>,
    /// Anomalies grouped by kind, service and destination, most frequent first.
    pub anomaly_groups: Vec<AnomalyGroup>,
    /// The latest anomalies, newest first, without their evidence
    /// (`/api/anomaly?id=` has it).
    pub anomalies: Vec<AnomalyBrief>,
    pub bad_records: BTreeMap<String, u64>,
    pub recent_errors: Vec<String>,
    /// Where the page links trace ids to (`ui.jaeger_url`); empty: no links.
    pub jaeger_url: String,
    /// The pipeline's series in OpenMetrics (no `# EOF`); the text format is derived
    /// from it when asked for ([`super::exposition::openmetrics_to_text`]).
    #[serde(skip)]
    pub openmetrics: String,
    /// Full documents of the anomalies the page lists, by document id (shared
    /// with the sink: a snapshot copies pointers, not evidence).
    #[serde(skip)]
    pub examples: BTreeMap<String, Arc<Anomaly>>,
}

/// One service edge's rate.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct EdgeRate {
    pub source: String,
    pub target: String,
    /// The target is a virtual node (a peer that sends no spans), not the
    /// traced service that may have the same name.
    #[serde(rename = "virtual", skip_serializing_if = "std::ops::Not::not")]
    pub virtual_node: bool,
    pub per_second: f64,
}

/// An anomaly without its evidence, for lists.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct AnomalyBrief {
    /// The document id (as in Elasticsearch): `/api/anomaly?id=` gives the whole document.
    pub id: String,
    pub kind: String,
    pub trace_id: String,
    pub span_id: String,
    pub service: String,
    pub operation: String,
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl AnomalyBrief {
    fn of(a: &Anomaly) -> Self {
        AnomalyBrief {
            id: super::documents::document_id(a),
            kind: a.kind.to_string(),
            trace_id: a.trace_id.clone(),
            span_id: a.span_id.clone(),
            service: a.service.clone(),
            operation: a.operation.clone(),
            timestamp: a.timestamp.clone(),
            summary: a.summary.clone(),
            destination: a.details.destination.clone(),
            status: a.details.status.map(|s| s.as_str().to_owned()),
        }
    }
}

/// Anomalies of one kind, service and destination.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct AnomalyGroup {
    pub kind: String,
    pub service: String,
    pub destination: String,
    pub count: u64,
    pub latest: AnomalyBrief,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Totals {
    pub records: u64,
    pub spans: u64,
    pub traces: u64,
    pub late_spans: u64,
    pub open_traces: usize,
    pub buffered_spans: usize,
    pub anomalies: u64,
}

/// RED of one service, operation and span kind, cumulative.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct RedRow {
    pub service: String,
    pub operation: String,
    pub span_kind: String,
    /// Calls of real traffic: sampled spans count 1/p ([`crate::model::sampling`]).
    pub calls: f64,
    pub errors: f64,
    pub sum_ms: f64,
    /// Calls per latency bucket (bounds: [`Snapshot::bucket_bounds_ms`]).
    pub buckets: Vec<f64>,
    pub avg_ms: f64,
    pub p95_ms: f64,
}

/// Keeps the latest anomalies for the page, and every anomaly counted by kind,
/// service and destination with the latest of each.
#[derive(Default)]
pub struct RecentAnomalies {
    items: VecDeque<Arc<Anomaly>>,
    groups: BTreeMap<(String, String, String), (u64, Arc<Anomaly>)>,
}

impl RecentAnomalies {
    pub const KEEP: usize = 50;
    /// Groups kept; past it, anomalies of new groups count in their kind only.
    pub const MAX_GROUPS: usize = 500;

    pub fn push(&mut self, a: Anomaly) {
        // What the anomaly is about beyond its service: the destination of a lost
        // message, the callee of repeated calls.
        let about = match (&a.details.destination, &a.details.callee_service) {
            (Some(d), _) => d.clone(),
            (None, Some(s)) => format!("{s}:{}", a.details.callee_operation.as_deref().unwrap_or_default()),
            (None, None) => String::new(),
        };
        let key = (a.kind.to_string(), a.service.clone(), about);
        let a = Arc::new(a);
        if self.groups.len() < Self::MAX_GROUPS || self.groups.contains_key(&key) {
            let g = self.groups.entry(key).or_insert_with(|| (0, a.clone()));
            g.0 += 1;
            g.1 = a.clone();
        }
        if self.items.len() == Self::KEEP {
            self.items.pop_back();
        }
        self.items.push_front(a);
    }

    fn resolve(&mut self, r: &crate::analysis::Resolution) {
        for a in self.items.iter_mut().chain(self.groups.values_mut().map(|g| &mut g.1)) {
            if r.resolves(a) {
                r.apply(Arc::make_mut(a));
            }
        }
    }
}

/// How far back the page's edge rates look.
pub const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Calls of each (source, target, to a virtual node) service edge.
pub type EdgeKey = (String, String, bool);
type EdgeCalls = BTreeMap<EdgeKey, u64>;

/// Service edge call counts as they were at earlier publishes, for rates.
#[derive(Default)]
struct EdgeHistory {
    samples: VecDeque<(std::time::Instant, EdgeCalls)>,
}

impl EdgeHistory {
    /// Notes the counts of now; returns each edge's rate since the oldest sample
    /// within the window.
    fn rates(&mut self, edges: &[ServiceEdgeRow]) -> Vec<EdgeRate> {
        let now = std::time::Instant::now();
        let mut counts = EdgeCalls::new();
        for e in edges {
            *counts.entry((e.source.clone(), e.target.clone(), e.virtual_node)).or_default() += e.stats.calls;
        }
        while self.samples.len() > 1 && self.samples.get(1).is_some_and(|s| now - s.0 >= RATE_WINDOW) {
            self.samples.pop_front();
        }
        let rates = match self.samples.front() {
            Some((then, before)) if (now - *then).as_secs_f64() >= 1.0 => {
                let secs = (now - *then).as_secs_f64();
                counts
                    .iter()
                    .map(|(key, n)| EdgeRate {
                        source: key.0.clone(),
                        target: key.1.clone(),
                        virtual_node: key.2,
                        per_second: n.saturating_sub(before.get(key).copied().unwrap_or(0)) as f64 / secs,
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        if self.samples.back().is_none_or(|s| now - s.0 >= std::time::Duration::from_secs(1)) {
            self.samples.push_back((now, counts));
        }
        rates
    }
}

/// The live page's sink: keeps the latest anomalies and hands a fresh
/// [`Snapshot`] to `publish` every [`SNAPSHOT_EVERY`] (and at the end).
pub struct LivePage {
    mode: &'static str,
    recent: RecentAnomalies,
    history: EdgeHistory,
    jaeger_url: String,
    last: Option<std::time::Instant>,
    publish: Box<dyn FnMut(Snapshot) + Send>,
}

impl LivePage {
    pub fn new(mode: &'static str, publish: impl FnMut(Snapshot) + Send + 'static) -> Self {
        LivePage {
            mode,
            recent: RecentAnomalies::default(),
            history: EdgeHistory::default(),
            jaeger_url: String::new(),
            last: None,
            publish: Box::new(publish),
        }
    }

    /// Links trace ids on the page to this Jaeger UI (`ui.jaeger_url`).
    pub fn with_jaeger_url(mut self, url: &str) -> Self {
        self.jaeger_url = url.trim_end_matches('/').to_owned();
        self
    }
}

impl super::Sink for LivePage {
    fn name(&self) -> &'static str {
        "live page"
    }

    fn write(
        &mut self,
        round: &super::Round<'_>,
        _stop: &std::sync::atomic::AtomicBool,
    ) -> Result<super::Written, super::SinkError> {
        for a in round.anomalies {
            self.recent.push(a.clone());
        }
        for r in round.resolutions {
            self.recent.resolve(r);
        }
        if round.last.is_some() || self.last.is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY) {
            let mut snapshot = take(self.mode, &round.outputs, &self.recent);
            snapshot.edge_rates = self.history.rates(&snapshot.edges);
            snapshot.jaeger_url = self.jaeger_url.clone();
            (self.publish)(snapshot);
            self.last = Some(std::time::Instant::now());
        }
        Ok(super::Written::Acknowledged)
    }
}

/// Estimates a quantile from histogram buckets as Prometheus' `histogram_quantile` does.
pub fn quantile_ms(stats: &RedStats, q: f64) -> f64 {
    if stats.calls <= 0.0 {
        return 0.0;
    }
    let rank = q * stats.calls;
    let mut cumulative = 0.0;
    for (i, n) in stats.latency.buckets.iter().enumerate() {
        let below = cumulative;
        cumulative += n;
        if cumulative >= rank && *n > 0.0 {
            let lower = if i == 0 { 0.0 } else { BUCKETS_MS[i - 1] };
            let Some(&upper) = BUCKETS_MS.get(i) else { return lower };
            return lower + (upper - lower) * ((rank - below) / *n);
        }
    }
    BUCKETS_MS[BUCKETS_MS.len() - 1]
}

/// How often a running command publishes a snapshot for the page and `/metrics`.
pub const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

pub fn take(mode: &str, p: &Outputs<'_>, recent: &RecentAnomalies) -> Snapshot {
    let mut grouped: BTreeMap<(String, String, String), RedStats> = BTreeMap::new();
    let mut errors: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for (k, s) in p.red.series() {
        let key = (
            p.names.resolve(k.service).to_owned(),
            p.names.resolve(k.operation).to_owned(),
            k.kind.otlp_name().trim_start_matches("SPAN_KIND_").to_ascii_lowercase(),
        );
        let g = grouped.entry(key.clone()).or_default();
        g.calls += s.calls;
        g.latency.sum_us += s.latency.sum_us;
        for (a, b) in g.latency.buckets.iter_mut().zip(s.latency.buckets.iter()) {
            *a += b;
        }
        if k.error {
            *errors.entry(key).or_default() += s.calls;
        }
    }
    let red = grouped
        .into_iter()
        .map(|(key, s)| RedRow {
            errors: errors.get(&key).copied().unwrap_or(0.0),
            avg_ms: if s.calls <= 0.0 { 0.0 } else { s.latency.sum_ms() / s.calls },
            p95_ms: quantile_ms(&s, 0.95),
            sum_ms: s.latency.sum_ms(),
            buckets: s.latency.buckets.to_vec(),
            calls: s.calls,
            service: key.0,
            operation: key.1,
            span_kind: key.2,
        })
        .collect();
    let stats = p.stats;
    let edges = p.edges.service_rows(p.names);
    let c = p.counters;
    let losses = c
        .message_loss
        .iter()
        .map(|(&(producer, destination), &n)| {
            let resolved = c.message_loss_resolved.get(&(producer, destination)).copied().unwrap_or(0);
            (
                p.names.resolve(producer).to_owned(),
                p.names.resolve(destination).to_owned(),
                n.saturating_sub(resolved),
            )
        })
        .filter(|l| l.2 > 0)
        .collect();
    let mut anomaly_groups: Vec<AnomalyGroup> = recent
        .groups
        .iter()
        .map(|((kind, service, destination), (count, latest))| AnomalyGroup {
            kind: kind.clone(),
            service: service.clone(),
            destination: destination.clone(),
            count: *count,
            latest: AnomalyBrief::of(latest),
        })
        .collect();
    anomaly_groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)));
    let examples = recent
        .items
        .iter()
        .chain(recent.groups.values().map(|g| &g.1))
        .map(|a| (super::documents::document_id(a), Arc::clone(a)))
        .collect();
    Snapshot {
        mode: mode.to_owned(),
        watermark: if p.watermark == i64::MIN { String::new() } else { format_rfc3339_us(p.watermark) },
        totals: Totals {
            records: p.input.records,
            spans: stats.spans,
            traces: stats.traces,
            late_spans: stats.late_spans,
            open_traces: p.open_traces,
            buffered_spans: p.buffered_spans,
            anomalies: stats.anomalies.values().sum(),
        },
        red,
        bucket_bounds_ms: BUCKETS_MS.iter().copied().chain([f64::INFINITY]).map(finite).collect(),
        edges,
        edge_rates: Vec::new(),
        losses,
        anomaly_counts: stats.anomalies.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        anomaly_groups,
        anomalies: recent.items.iter().map(|a| AnomalyBrief::of(a)).collect(),
        examples,
        jaeger_url: String::new(),
        bad_records: p.input.bad.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        recent_errors: p.recent_errors.iter().rev().map(|e| e.to_string()).collect(),
        openmetrics: super::prometheus::render(p, ExpoFormat::OpenMetrics),
    }
}

/// JSON has no infinity: the last bucket's bound is written as -1 (+Inf).
fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        -1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut s = RedStats { calls: 10.0, ..RedStats::default() };
        s.latency.buckets[5] = 10.0; // all in (10, 50] ms
        let p50 = quantile_ms(&s, 0.5);
        assert!((p50 - 30.0).abs() < 1e-9, "{p50}");
    }
}
