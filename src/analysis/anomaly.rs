//! Anomaly documents: what poirot writes to Elasticsearch (and `anomalies.ndjson`).

use crate::model::text::{self, TRUNCATION_MARKER};
use crate::model::time::format_rfc3339_us;
use crate::model::{Interner, Span};
use serde::{Deserialize, Serialize};
use std::fmt;

mod resolution;
pub use resolution::{ConsumerRef, Resolution};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    MessageLoss,
    OrphanReference,
    RecursiveChain,
    ReferenceCycle,
    OversizedTrace,
    RepeatedCalls,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 6] = [
        AnomalyKind::MessageLoss,
        AnomalyKind::OrphanReference,
        AnomalyKind::RecursiveChain,
        AnomalyKind::ReferenceCycle,
        AnomalyKind::OversizedTrace,
        AnomalyKind::RepeatedCalls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::MessageLoss => "message_loss",
            AnomalyKind::OrphanReference => "orphan_reference",
            AnomalyKind::RecursiveChain => "recursive_chain",
            AnomalyKind::ReferenceCycle => "reference_cycle",
            AnomalyKind::OversizedTrace => "oversized_trace",
            AnomalyKind::RepeatedCalls => "repeated_calls",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One anomaly. Kind-specific fields are flattened into the document.
///
/// Every document is bounded ([`DocLimits`]): lists, the summary and the evidence
/// are capped, and what a cap cut is counted in `truncated`, which is present
/// only when something was cut.
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
    #[serde(skip_serializing_if = "Truncated::is_empty", default)]
    pub truncated: Truncated,
}

/// Fields that only some kinds carry.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Details {
    /// message_loss: where the lost message was published.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub destination: Option<String>,
    /// message_loss: `lost` when reported, `resolved` once a consumer showed up after all.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<LossStatus>,
    /// message_loss, resolved: when the consumer was found.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resolved_at: Option<String>,
    /// message_loss, resolved: the span that consumed the message.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consumer: Option<ConsumerRef>,
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
    /// repeated_calls: what was called again and again (the server side when it is traced).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub callee_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub callee_operation: Option<String>,
    /// repeated_calls: how many calls, one after another.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub calls: Option<u64>,
    /// repeated_calls: the first of the calls (it names the document with the caller).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_call_span_id: Option<String>,
    /// repeated_calls: the calls' durations added up.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub calls_duration_us: Option<u64>,
    /// repeated_calls: the longest call, what one batched or parallel call would take.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub batched_duration_us: Option<u64>,
}

/// Whether a reported message loss still stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossStatus {
    Lost,
    Resolved,
}

impl LossStatus {
    /// The name documents carry (`status`).
    pub fn as_str(self) -> &'static str {
        match self {
            LossStatus::Lost => "lost",
            LossStatus::Resolved => "resolved",
        }
    }
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

/// What the caps of [`DocLimits`] cut from one document, so a reader knows the
/// lists are not whole. Serialized only when something was cut, and then only
/// the non-zero counts.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Truncated {
    /// Involved spans not listed in `evidence.span_ids`.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub evidence_spans: u64,
    /// Missing span ids not listed in `missing_span_ids`.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub missing_span_ids: u64,
    /// Services left out of `chain` (its start: the chain keeps its end).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub chain: u64,
    /// Services left out of `cycle` (its end).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub cycle: u64,
    /// References of snapshot spans left out of their `references`.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub references: u64,
    /// Bytes cut from the end of `summary`.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub summary_bytes: u64,
}

impl Truncated {
    pub fn is_empty(&self) -> bool {
        *self == Truncated::default()
    }
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

/// The default of [`DocLimits::max_evidence_spans`]: most spans a snapshot
/// carries (involved spans always come first) and most involved span ids listed.
pub const SNAPSHOT_LIMIT: usize = 200;

/// Caps on one anomaly document (`[anomalies]` in the configuration). With the
/// defaults a document is at most 64 KiB of JSON whatever the trace: one span
/// with a million references gives a document of a few KB.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DocLimits {
    /// Most involved span ids listed (`evidence.span_ids`), and most spans in the
    /// snapshot (`evidence.trace`), involved ones first.
    pub max_evidence_spans: usize,
    /// Most entries of `missing_span_ids`, `chain` and `cycle`, and most
    /// references shown per snapshot span.
    pub max_list_entries: usize,
    /// Longest `summary`, in bytes, the cut marker included.
    pub max_summary_bytes: usize,
    /// Largest document, in bytes of JSON: the snapshot takes spans only while the
    /// document stays within it (the spans left out count in `omitted_spans`).
    pub max_document_bytes: usize,
}

impl Default for DocLimits {
    fn default() -> Self {
        DocLimits {
            max_evidence_spans: SNAPSHOT_LIMIT,
            max_list_entries: 64,
            max_summary_bytes: 1024,
            max_document_bytes: 64 << 10,
        }
    }
}

/// Room kept for counts that grow after the document was measured (the
/// snapshot's cut references): `,"truncated":{"references":<20 digits>}` and more.
const COUNT_SLACK: usize = 64;

impl SnapshotSpan {
    /// The snapshot of `s`, with at most `max_refs` references (0: all of them);
    /// also how many references were left out.
    pub fn of(s: &Span, names: &Interner, max_refs: usize) -> (Self, u64) {
        let shown = if max_refs == 0 { s.refs.len() } else { s.refs.len().min(max_refs) };
        let snapshot = SnapshotSpan {
            span_id: s.span_id.to_string(),
            service: names.resolve(s.service).to_owned(),
            operation: names.resolve(s.operation).to_owned(),
            start_us: s.start_us,
            duration_us: s.duration_us,
            references: s.refs[..shown]
                .iter()
                .map(|r| SnapshotRef {
                    relation: r.kind.as_str().to_owned(),
                    span_id: r.span_id.to_string(),
                    trace_id: (r.trace_id != s.trace_id).then(|| r.trace_id.to_string()),
                })
                .collect(),
            error: s.error,
        };
        (snapshot, (s.refs.len() - shown) as u64)
    }
}

/// Bytes of `v` as compact JSON, without building the text.
pub fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail, and these types always serialize.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Keeps the first `max` entries of `v` (0: all); returns how many went.
fn keep_first<T>(v: &mut Vec<T>, max: usize) -> u64 {
    let cut = if max == 0 { 0 } else { v.len().saturating_sub(max) };
    v.truncate(v.len() - cut);
    cut as u64
}

/// Keeps the last `max` entries of `v` (0: all); returns how many went.
fn keep_last<T>(v: &mut Vec<T>, max: usize) -> u64 {
    let cut = if max == 0 { 0 } else { v.len().saturating_sub(max) };
    v.drain(..cut);
    cut as u64
}

/// Cuts `a.summary` to at most `max` bytes (marker included), counting the bytes
/// of the original summary that went into `truncated.summary_bytes`.
fn cut_summary(a: &mut Anomaly, max: usize) {
    if a.summary.len() <= max {
        return;
    }
    // Bytes of the original summary still held (the marker of an earlier cut is not one).
    let held = match a.summary.strip_suffix(TRUNCATION_MARKER) {
        Some(rest) if a.truncated.summary_bytes > 0 => rest.len(),
        _ => a.summary.len(),
    };
    let original = held as u64 + a.truncated.summary_bytes;
    let (cut, kept) = if max < 2 * TRUNCATION_MARKER.len() {
        (String::new(), 0)
    } else {
        let (cut, kept) = text::truncate(&a.summary, max);
        (cut.into_owned(), kept.min(held))
    };
    a.summary = cut;
    a.truncated.summary_bytes = original - kept as u64;
}

/// Last resort when a document is over its byte budget even with an empty
/// snapshot (names full of characters JSON escapes six-fold, or caps configured
/// far above the budget): halves one list, else the summary. False when nothing
/// is left to cut.
fn shrink(a: &mut Anomaly) -> bool {
    let half = |n: usize| n.div_ceil(2);
    let t = &mut a.truncated;
    if let Some(c) = a.details.chain.as_mut().filter(|c| !c.is_empty()) {
        // The chain keeps its end, where the loop closed.
        let n = half(c.len());
        c.drain(..n);
        t.chain += n as u64;
        return true;
    }
    for (list, count) in [
        (a.details.cycle.as_mut(), &mut t.cycle),
        (a.details.missing_span_ids.as_mut(), &mut t.missing_span_ids),
        (Some(&mut a.evidence.span_ids), &mut t.evidence_spans),
    ] {
        if let Some(l) = list.filter(|l| !l.is_empty()) {
            let n = half(l.len());
            l.truncate(l.len() - n);
            *count += n as u64;
            return true;
        }
    }
    if !a.summary.is_empty() {
        cut_summary(a, a.summary.len() / 2);
        return true;
    }
    false
}

/// One closed trace as the detectors see it.
pub struct TraceCtx<'a> {
    pub spans: &'a [Span],
    pub names: &'a Interner,
    pub detected_at_us: i64,
    pub limits: DocLimits,
}

impl TraceCtx<'_> {
    pub fn name(&self, i: u32) -> &str {
        self.names.resolve(self.spans[i as usize].service)
    }

    /// An anomaly of `kind` about span `at`, with evidence for `involved`, cut to
    /// the document limits. `cut` holds what the detector already left out (a
    /// detector that lists only the first entries of a long list says how many
    /// more there were).
    pub fn anomaly(
        &self,
        kind: AnomalyKind,
        at: u32,
        summary: String,
        mut details: Details,
        involved: &[u32],
        mut cut: Truncated,
    ) -> Anomaly {
        let l = self.limits;
        let s = &self.spans[at as usize];
        if let Some(m) = details.missing_span_ids.as_mut() {
            cut.missing_span_ids += keep_first(m, l.max_list_entries);
        }
        if let Some(c) = details.cycle.as_mut() {
            cut.cycle += keep_first(c, l.max_list_entries);
        }
        if let Some(c) = details.chain.as_mut() {
            cut.chain += keep_last(c, l.max_list_entries);
        }
        let listed =
            if l.max_evidence_spans == 0 { involved.len() } else { involved.len().min(l.max_evidence_spans) };
        cut.evidence_spans += (involved.len() - listed) as u64;
        let involved = &involved[..listed];
        let mut a = Anomaly {
            kind,
            trace_id: s.trace_id.to_string(),
            span_id: s.span_id.to_string(),
            service: self.names.resolve(s.service).to_owned(),
            operation: self.names.resolve(s.operation).to_owned(),
            timestamp: format_rfc3339_us(s.start_us),
            detected_at: format_rfc3339_us(self.detected_at_us),
            summary,
            details,
            evidence: Evidence {
                span_ids: involved
                    .iter()
                    .filter_map(|&i| self.spans.get(i as usize))
                    .map(|s| s.span_id.to_string())
                    .collect(),
                trace: Vec::new(),
                // Measured at its largest: the final count is at most this.
                omitted_spans: self.spans.len() as u64,
            },
            truncated: cut,
        };
        cut_summary(&mut a, l.max_summary_bytes);
        self.fill_snapshot(&mut a, involved);
        a
    }

    /// Fills `a.evidence.trace` with the involved spans, then the others in trace
    /// order, up to `max_evidence_spans` and while the document stays within
    /// `max_document_bytes`; then lists the snapshot in time order.
    fn fill_snapshot(&self, a: &mut Anomaly, involved: &[u32]) {
        let l = self.limits;
        let budget = if l.max_document_bytes == 0 { usize::MAX } else { l.max_document_bytes };
        let mut size = json_len(a);
        while size.saturating_add(COUNT_SLACK) > budget && shrink(a) {
            size = json_len(a);
        }
        let mut room = budget.saturating_sub(size.saturating_add(COUNT_SLACK));
        let max_spans = if l.max_evidence_spans == 0 { self.spans.len() } else { l.max_evidence_spans };
        let mut taken = vec![false; self.spans.len()];
        let mut order: Vec<usize> = Vec::new();
        for &i in involved {
            if let Some(t) = taken.get_mut(i as usize).filter(|t| !**t) {
                *t = true;
                order.push(i as usize);
            }
        }
        let others = (0..self.spans.len()).filter(|&i| !taken[i]);
        let mut trace: Vec<SnapshotSpan> = Vec::new();
        for i in order.into_iter().chain(others).take(max_spans) {
            let (snapshot, refs_cut) = SnapshotSpan::of(&self.spans[i], self.names, l.max_list_entries);
            let len = json_len(&snapshot) + usize::from(!trace.is_empty());
            if len > room {
                break;
            }
            room -= len;
            a.truncated.references += refs_cut;
            trace.push(snapshot);
        }
        // Time order reads best; the involved ids are listed separately.
        trace.sort_by(|a, b| (a.start_us, &a.span_id).cmp(&(b.start_us, &b.span_id)));
        a.evidence.omitted_spans = (self.spans.len() - trace.len()) as u64;
        a.evidence.trace = trace;
    }
}
