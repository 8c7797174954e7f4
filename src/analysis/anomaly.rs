//! Anomaly documents: what poirot writes to Elasticsearch (and `anomalies.ndjson`).

use crate::decode::time_fmt::format_rfc3339_us;
use crate::model::{Interner, Span};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    MessageLoss,
    OrphanReference,
    RecursiveChain,
    ReferenceCycle,
    OversizedTrace,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 5] = [
        AnomalyKind::MessageLoss,
        AnomalyKind::OrphanReference,
        AnomalyKind::RecursiveChain,
        AnomalyKind::ReferenceCycle,
        AnomalyKind::OversizedTrace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::MessageLoss => "message_loss",
            AnomalyKind::OrphanReference => "orphan_reference",
            AnomalyKind::RecursiveChain => "recursive_chain",
            AnomalyKind::ReferenceCycle => "reference_cycle",
            AnomalyKind::OversizedTrace => "oversized_trace",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One anomaly. Kind-specific fields are flattened into the document.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub trace_id: String,
    pub span_id: String,
    pub service: String,
    pub operation: String,
    /// Event time: the start of the span the anomaly is about.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub detected_at: String,
    pub summary: String,
    #[serde(flatten)]
    pub details: Details,
    pub evidence: Evidence,
}

/// Fields that only some kinds carry.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Details {
    /// message_loss: where the lost message was published.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub destination: Option<String>,
    /// orphan_reference: the referenced span ids that never arrived.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub missing_span_ids: Option<Vec<String>>,
    /// recursive_chain: services along the causal path, nested spans of one service merged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chain: Option<Vec<String>>,
    /// recursive_chain: the loop of services, starting at its alphabetically first.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cycle: Option<Vec<String>>,
    /// recursive_chain: how often the path re-entered a service it had left.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reentries: Option<u32>,
    /// oversized_trace: spans that arrived, and the limit.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub span_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub span_limit: Option<u64>,
}

/// The spans involved, and a compact snapshot of the trace that outlives Jaeger's retention.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Evidence {
    pub span_ids: Vec<String>,
    pub trace: Vec<SnapshotSpan>,
    /// Spans of the trace left out of the snapshot to keep it small.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub omitted_spans: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct SnapshotSpan {
    pub span_id: String,
    pub service: String,
    pub operation: String,
    pub start_us: i64,
    pub duration_us: u64,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub references: Vec<SnapshotRef>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub error: bool,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub relation: String,
    pub span_id: String,
    /// Only for a reference into another trace.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace_id: Option<String>,
}

/// Most spans a snapshot carries; involved spans always come first.
pub const SNAPSHOT_LIMIT: usize = 200;

impl SnapshotSpan {
    pub fn of(s: &Span, names: &Interner) -> Self {
        SnapshotSpan {
            span_id: s.span_id.to_string(),
            service: names.resolve(s.service).to_owned(),
            operation: names.resolve(s.operation).to_owned(),
            start_us: s.start_us,
            duration_us: s.duration_us,
            references: s
                .refs
                .iter()
                .map(|r| SnapshotRef {
                    relation: r.kind.as_str().to_owned(),
                    span_id: r.span_id.to_string(),
                    trace_id: (r.trace_id != s.trace_id).then(|| r.trace_id.to_string()),
                })
                .collect(),
            error: s.error,
        }
    }
}

/// Builds the evidence for spans `involved` (indices into `spans`).
pub fn evidence(spans: &[Span], involved: &[u32], names: &Interner) -> Evidence {
    let mut order: Vec<usize> = involved.iter().map(|&i| i as usize).collect();
    let mut taken = vec![false; spans.len()];
    for &i in &order {
        if let Some(t) = taken.get_mut(i) {
            *t = true;
        }
    }
    for (i, _) in taken.iter().enumerate().filter(|(_, t)| !**t) {
        if order.len() >= SNAPSHOT_LIMIT {
            break;
        }
        order.push(i);
    }
    order.truncate(SNAPSHOT_LIMIT.max(involved.len()));
    let mut trace: Vec<SnapshotSpan> =
        order.iter().filter_map(|&i| spans.get(i)).map(|s| SnapshotSpan::of(s, names)).collect();
    // Time order reads best; the involved ids are listed separately.
    trace.sort_by(|a, b| (a.start_us, &a.span_id).cmp(&(b.start_us, &b.span_id)));
    Evidence {
        span_ids: involved
            .iter()
            .filter_map(|&i| spans.get(i as usize))
            .map(|s| s.span_id.to_string())
            .collect(),
        omitted_spans: (spans.len() - trace.len()) as u64,
        trace,
    }
}

/// One closed trace as the detectors see it.
pub struct TraceCtx<'a> {
    pub spans: &'a [Span],
    pub names: &'a Interner,
    pub detected_at_us: i64,
}

impl TraceCtx<'_> {
    pub fn name(&self, i: u32) -> &str {
        self.names.resolve(self.spans[i as usize].service)
    }

    /// An anomaly of `kind` about span `at`, with evidence for `involved`.
    pub fn anomaly(
        &self,
        kind: AnomalyKind,
        at: u32,
        summary: String,
        details: Details,
        involved: &[u32],
    ) -> Anomaly {
        let s = &self.spans[at as usize];
        Anomaly {
            kind,
            trace_id: s.trace_id.to_string(),
            span_id: s.span_id.to_string(),
            service: self.names.resolve(s.service).to_owned(),
            operation: self.names.resolve(s.operation).to_owned(),
            timestamp: format_rfc3339_us(s.start_us),
            detected_at: format_rfc3339_us(self.detected_at_us),
            summary,
            details,
            evidence: evidence(self.spans, involved, self.names),
        }
    }
}
