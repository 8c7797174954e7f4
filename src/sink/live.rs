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
use std::fmt::Write;

#[derive(Serialize, Clone, Debug, Default)]
pub struct Snapshot {
    /// `demo` or `run`.
    pub mode: String,
    pub watermark: String,
    pub totals: Totals,
    pub red: Vec<RedRow>,
    pub edges: Vec<ServiceEdgeRow>,
    pub anomaly_counts: BTreeMap<String, u64>,
    /// The latest anomalies, newest first.
    pub anomalies: Vec<Anomaly>,
    pub bad_records: BTreeMap<String, u64>,
    pub recent_errors: Vec<String>,
    /// The pipeline's series in OpenMetrics (no `# EOF`); the text format is derived
    /// from it when asked for ([`super::exposition::openmetrics_to_text`]).
    #[serde(skip)]
    pub openmetrics: String,
    #[serde(skip)]
    pub graph_svg: String,
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

/// RED of one service, operation and span kind.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct RedRow {
    pub service: String,
    pub operation: String,
    pub span_kind: String,
    pub calls: u64,
    pub errors: u64,
    pub avg_ms: f64,
    pub p95_ms: f64,
}

/// Keeps the latest anomalies for the page.
#[derive(Default)]
pub struct RecentAnomalies {
    items: VecDeque<Anomaly>,
}

impl RecentAnomalies {
    pub const KEEP: usize = 50;

    pub fn push(&mut self, a: Anomaly) {
        if self.items.len() == Self::KEEP {
            self.items.pop_back();
        }
        self.items.push_front(a);
    }
}

/// The live page's sink: keeps the latest anomalies and hands a fresh
/// [`Snapshot`] to `publish` every [`SNAPSHOT_EVERY`] (and at the end).
pub struct LivePage {
    mode: &'static str,
    recent: RecentAnomalies,
    last: Option<std::time::Instant>,
    publish: Box<dyn FnMut(Snapshot) + Send>,
}

impl LivePage {
    pub fn new(mode: &'static str, publish: impl FnMut(Snapshot) + Send + 'static) -> Self {
        LivePage { mode, recent: RecentAnomalies::default(), last: None, publish: Box::new(publish) }
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
            if let Some(a) = self.recent.items.iter_mut().find(|a| r.resolves(a)) {
                r.apply(a);
            }
        }
        if round.last.is_some() || self.last.is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY) {
            (self.publish)(take(self.mode, &round.outputs, &self.recent));
            self.last = Some(std::time::Instant::now());
        }
        Ok(super::Written::Acknowledged)
    }
}

/// Estimates a quantile from histogram buckets as Prometheus' `histogram_quantile` does.
pub fn quantile_ms(stats: &RedStats, q: f64) -> f64 {
    if stats.calls == 0 {
        return 0.0;
    }
    let rank = q * stats.calls as f64;
    let mut cumulative = 0u64;
    for (i, n) in stats.latency.buckets.iter().enumerate() {
        let below = cumulative;
        cumulative += n;
        if cumulative as f64 >= rank && *n > 0 {
            let lower = if i == 0 { 0.0 } else { BUCKETS_MS[i - 1] };
            let Some(&upper) = BUCKETS_MS.get(i) else { return lower };
            return lower + (upper - lower) * ((rank - below as f64) / *n as f64);
        }
    }
    BUCKETS_MS[BUCKETS_MS.len() - 1]
}

/// How often a running command publishes a snapshot for the page and `/metrics`.
pub const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

pub fn take(mode: &str, p: &Outputs<'_>, recent: &RecentAnomalies) -> Snapshot {
    let mut grouped: BTreeMap<(String, String, String), RedStats> = BTreeMap::new();
    let mut errors: BTreeMap<(String, String, String), u64> = BTreeMap::new();
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
            errors: errors.get(&key).copied().unwrap_or(0),
            avg_ms: if s.calls == 0 { 0.0 } else { s.latency.sum_ms() / s.calls as f64 },
            p95_ms: quantile_ms(&s, 0.95),
            calls: s.calls,
            service: key.0,
            operation: key.1,
            span_kind: key.2,
        })
        .collect();
    let stats = p.stats;
    let edges = p.edges.service_rows(p.names);
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
        graph_svg: render_svg(&edges),
        edges,
        anomaly_counts: stats.anomalies.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        anomalies: recent.items.iter().cloned().collect(),
        bad_records: p.input.bad.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        recent_errors: p.recent_errors.iter().rev().map(|e| e.to_string()).collect(),
        openmetrics: super::prometheus::render(p, ExpoFormat::OpenMetrics),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Draws the service graph: services in columns by their distance from the
/// services nobody calls, an arrow per service edge labelled with calls and
/// errors (red when there are errors, dashed for follows_from).
pub fn render_svg(edges: &[ServiceEdgeRow]) -> String {
    let mut nodes: Vec<&str> = Vec::new();
    for e in edges {
        for n in [&e.source, &e.target] {
            if !nodes.contains(&n.as_str()) {
                nodes.push(n);
            }
        }
    }
    nodes.sort_unstable();
    let idx = |n: &str| nodes.iter().position(|x| *x == n).unwrap_or(0);
    // Column = shortest distance from a service with no callers (BFS, cycle-safe).
    let mut column = vec![usize::MAX; nodes.len()];
    let mut queue: VecDeque<usize> = VecDeque::new();
    for (i, n) in nodes.iter().enumerate() {
        if !edges.iter().any(|e| e.target == *n && e.source != *n) {
            column[i] = 0;
            queue.push_back(i);
        }
    }
    if queue.is_empty() && !nodes.is_empty() {
        column[0] = 0;
        queue.push_back(0);
    }
    while let Some(i) = queue.pop_front() {
        for e in edges.iter().filter(|e| e.source == nodes[i]) {
            let t = idx(&e.target);
            if column[t] == usize::MAX {
                column[t] = column[i] + 1;
                queue.push_back(t);
            }
        }
    }
    for c in column.iter_mut().filter(|c| **c == usize::MAX) {
        *c = 0;
    }
    let mut rows = vec![0usize; nodes.len()];
    let mut per_column: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 0..nodes.len() {
        let r = per_column.entry(column[i]).or_default();
        rows[i] = *r;
        *r += 1;
    }
    let (w, h, gx, gy) = (170.0, 44.0, 300.0, 90.0);
    let pos = |i: usize| (20.0 + column[i] as f64 * gx, 30.0 + rows[i] as f64 * gy);
    let width = 40.0 + (per_column.keys().max().copied().unwrap_or(0) as f64) * gx + w;
    let height = 60.0 + (per_column.values().max().copied().unwrap_or(1) as f64) * gy;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker>
<marker id="arrow-err" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#c62828"/></marker></defs>
"##
    );
    if nodes.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="20" y="30" fill="#777">no dependencies yet: traces close after the inactivity gap</text>"##
        );
    }
    for e in edges {
        let (s, t) = (idx(&e.source), idx(&e.target));
        let ((sx, sy), (tx, ty)) = (pos(s), pos(t));
        let color = if e.stats.errors > 0 { "#c62828" } else { "#555" };
        let marker = if e.stats.errors > 0 { "arrow-err" } else { "arrow" };
        let dash = if e.relation == "follows_from" { r#" stroke-dasharray="6 4""# } else { "" };
        let (x1, y1, x2, y2, bend) = if tx > sx {
            (sx + w, sy + h / 2.0, tx, ty + h / 2.0, 0.0)
        } else {
            // Back or sideways edge: curve below the boxes.
            (sx + w / 2.0, sy + h, tx + w / 2.0, ty + h, 45.0)
        };
        let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0 + bend);
        let label = if e.stats.errors > 0 {
            format!("{} calls, {} errors", e.stats.calls, e.stats.errors)
        } else {
            format!("{} calls", e.stats.calls)
        };
        let via: Vec<&str> =
            e.destinations.iter().map(|d| d.destination.as_str()).filter(|d| !d.is_empty()).collect();
        let _ = writeln!(
            svg,
            r#"<path d="M {x1} {y1} Q {mx} {qy} {x2} {y2}" fill="none" stroke="{color}" stroke-width="1.6"{dash} marker-end="url(#{marker})"><title>{src} → {dst} ({rel})</title></path>"#,
            qy = my + bend,
            src = xml_escape(&e.source),
            dst = xml_escape(&e.target),
            rel = e.relation,
        );
        let _ = writeln!(
            svg,
            r#"<text x="{mx}" y="{ly}" text-anchor="middle" fill="{color}">{}</text>"#,
            xml_escape(&label),
            ly = my - 4.0 + bend / 2.0
        );
        if !via.is_empty() {
            let _ = writeln!(
                svg,
                r##"<text x="{mx}" y="{ly}" text-anchor="middle" fill="#1565c0" font-size="10">via {}</text>"##,
                xml_escape(&via.join(", ")),
                ly = my + 10.0 + bend / 2.0
            );
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = pos(i);
        let _ = writeln!(
            svg,
            r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="#e3f2fd" stroke="#1565c0"/><text x="{tx}" y="{ty}" text-anchor="middle" font-weight="bold">{}</text>"##,
            xml_escape(n),
            tx = x + w / 2.0,
            ty = y + h / 2.0 + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut s = RedStats { calls: 10, ..RedStats::default() };
        s.latency.buckets[5] = 10; // all in (10, 50] ms
        let p50 = quantile_ms(&s, 0.5);
        assert!((p50 - 30.0).abs() < 1e-9, "{p50}");
    }
}
