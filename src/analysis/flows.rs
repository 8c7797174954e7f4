//! Message flows past a trace's close and across traces.
//!
//! A trace is analysed when it closes, but what references its spans may come
//! later: a span that arrives after the trace closed (late, or a copy delivered
//! again), and spans of other traces that link to it (a batch consumer, a
//! consumer that starts its own trace). [`Flows`] carries a trace past its close
//! with four pieces of bounded state, all timed in event time:
//!
//! - the **closed-trace index**: per recently closed trace, its span ids with
//!   service, operation and start ([`INDEXED_SPAN_BYTES`] a span), kept for
//!   `closed_retention` after the trace closed and within `max_closed_bytes`
//!   (oldest first out, counted). A late span is joined through it: a copy is
//!   dropped, its references are edges, and it consumes producers;
//! - **pending producers**: a producer span that no span consumed when its trace
//!   closed waits for its destination's deadline ([`DeadlineConfig`]) before it is
//!   reported as `message_loss`;
//! - **reported losses**, for `closed_retention` after the report: a consumer that
//!   still shows up resolves the loss ([`Resolution`]);
//! - **links waiting** for the trace they name: a reference into a trace that has
//!   not closed yet is applied when it closes, or counted unresolved when it
//!   never does within the retention.
//!
//! Every piece is keyed by trace id, so the owner of a trace holds all of them:
//! a link is routed to the owner of the trace it names.

use super::anomaly::{ConsumerRef, Resolution};
use super::edges::{Callee, Caller, Edges};
use crate::dataflow::{EventTime, TimerQueue};
use crate::model::time::format_rfc3339_us;
use crate::model::{Interner, RefKind, Span, SpanId, SpanKind, SpanRef, Sym, TraceId};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// How long a producer may wait for a consumer, per destination.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadlineConfig {
    /// The least deadline: a destination never seen consumed, or consumed fast.
    pub min_us: i64,
    /// The largest deadline the observed latency may set.
    pub max_us: i64,
    /// The deadline is this multiple of the destination's observed 99th
    /// percentile producer → consumer latency (within `min_us..=max_us`).
    pub latency_factor: f64,
    /// Deadlines set by hand, per destination name: the observed latency is not used.
    pub fixed: Vec<(String, i64)>,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        DeadlineConfig { min_us: 120_000_000, max_us: 3_600_000_000, latency_factor: 4.0, fixed: Vec::new() }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FlowConfig {
    /// How long a closed trace stays joinable (event time after it closed), and
    /// how long a reported loss stays resolvable.
    pub closed_retention_us: i64,
    /// Most bytes the closed-trace index holds; past it the oldest traces leave.
    pub max_closed_bytes: usize,
    /// Most links waiting for their trace; past it the oldest are counted unresolved.
    pub max_waiting_links: usize,
    pub deadlines: DeadlineConfig,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            closed_retention_us: 300_000_000,
            max_closed_bytes: 64 << 20,
            max_waiting_links: 100_000,
            deadlines: DeadlineConfig::default(),
        }
    }
}

/// A reference from a span to a span of another trace, sent to the owner of
/// the referenced trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// The referenced span and the relation.
    pub to: SpanRef,
    pub from_trace: TraceId,
    pub from_span: SpanId,
    /// The referencing span's side of the call.
    pub caller: Caller,
    /// From a trace an earlier owner already analysed and wrote (read again
    /// after a rebalance or a crash): it consumes, but its edge counts only if
    /// the trace it names was not written by that owner too.
    pub replayed: bool,
}

impl Link {
    /// The links of `s`: its references to spans of other traces.
    pub fn of(s: &Span) -> impl Iterator<Item = Link> + '_ {
        s.refs.iter().filter(move |r| r.trace_id != s.trace_id && !r.trace_id.is_zero()).map(move |r| Link {
            to: *r,
            from_trace: s.trace_id,
            from_span: s.span_id,
            caller: Caller::of(s),
            replayed: false,
        })
    }
}

/// One span of a closed trace, as what comes later needs it: 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IndexedSpan {
    id_hi: u32,
    id_lo: u32,
    /// Its (service, operation, destination), numbered by the index ([`Pairs`]).
    pair: u32,
    /// Start, µs after the trace entry's base (at most 35 minutes), and in the
    /// top bit whether it is a producer span.
    start: u32,
}

/// Bytes one span takes in the closed-trace index.
pub const INDEXED_SPAN_BYTES: usize = std::mem::size_of::<IndexedSpan>();
/// Bytes a closed trace takes in the index besides its spans: the map entry
/// (key, entry, control byte, at the table's most common load) and its expiry record.
pub const INDEXED_TRACE_BYTES: usize =
    (std::mem::size_of::<TraceId>() + std::mem::size_of::<ClosedEntry>() + 1) * 4 / 3
        + std::mem::size_of::<(EventTime, TraceId)>();
const PRODUCER_BIT: u32 = 1 << 31;

impl IndexedSpan {
    fn new(s: &Span, base_us: i64, pair: u32) -> Self {
        let offset = (s.start_us.saturating_sub(base_us)).clamp(0, i64::from(PRODUCER_BIT - 1)) as u32;
        let producer = if s.kind == SpanKind::Producer { PRODUCER_BIT } else { 0 };
        IndexedSpan {
            id_hi: (s.span_id.0 >> 32) as u32,
            id_lo: s.span_id.0 as u32,
            pair,
            start: offset | producer,
        }
    }

    fn id(&self) -> SpanId {
        SpanId((u64::from(self.id_hi) << 32) | u64::from(self.id_lo))
    }

    fn start_us(&self, base_us: i64) -> i64 {
        base_us + i64::from(self.start & !PRODUCER_BIT)
    }
}

/// The (service, operation, destination) names of indexed spans, numbered:
/// there are about as few as RED series, so a span keeps 4 bytes instead of 12.
#[derive(Debug, Default)]
struct Pairs {
    ids: FxHashMap<(Sym, Sym, Sym), u32>,
    pairs: Vec<(Sym, Sym, Sym)>,
}

impl Pairs {
    fn id(&mut self, s: &Span) -> u32 {
        let key = (s.service, s.operation, s.destination);
        let next = self.pairs.len() as u32;
        let id = *self.ids.entry(key).or_insert(next);
        if id == next {
            self.pairs.push(key);
        }
        id
    }

    fn get(&self, id: u32) -> (Sym, Sym, Sym) {
        self.pairs.get(id as usize).copied().unwrap_or_default()
    }
}

#[derive(Debug)]
struct ClosedEntry {
    /// The earliest start of its spans: starts are kept relative to it.
    base_us: i64,
    /// Sorted by span id.
    spans: Box<[IndexedSpan]>,
    /// Read again after an earlier owner analysed and wrote it.
    replayed: bool,
}

impl ClosedEntry {
    fn find(&self, id: SpanId) -> Option<&IndexedSpan> {
        let at = self.spans.binary_search_by_key(&id, IndexedSpan::id).ok()?;
        self.spans.get(at)
    }

    fn bytes(&self) -> usize {
        INDEXED_TRACE_BYTES + self.spans.len() * INDEXED_SPAN_BYTES
    }
}

/// The recently closed traces.
#[derive(Debug, Default)]
struct ClosedIndex {
    traces: FxHashMap<TraceId, ClosedEntry>,
    /// Traces in the order they closed, with when they expire: a trace is in
    /// the map exactly while it is here.
    order: VecDeque<(EventTime, TraceId)>,
    pairs: Pairs,
    bytes: usize,
}

impl ClosedIndex {
    fn callee(&self, e: &ClosedEntry, x: &IndexedSpan) -> Callee {
        let (service, operation, destination) = self.pairs.get(x.pair);
        Callee {
            service,
            operation,
            destination,
            start_us: x.start_us(e.base_us),
            producer: x.start & PRODUCER_BIT != 0,
        }
    }

    fn remove(&mut self, id: &TraceId) {
        if let Some(e) = self.traces.remove(id) {
            self.bytes -= e.bytes();
        }
    }
}

/// A producer nobody consumed yet, waiting for its deadline.
#[derive(Debug)]
struct Pending {
    decide_at: EventTime,
    service: Sym,
    destination: Sym,
    start_us: i64,
    /// What its message_loss document is built from, should it be decided lost.
    evidence: Box<Evidence>,
}

/// The spans a pending producer's loss document shows: the producer and the
/// causal path it descends from (its first parents up to the root), not the
/// whole trace: a person reads who published the message, and a pending
/// producer costs a few hundred bytes instead of the whole trace's snapshot.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// Root first, the producer last.
    pub path: Vec<Span>,
    /// Spans of its trace (the snapshot counts the rest as omitted).
    pub trace_spans: u64,
    /// When its trace closed (a replay's `detected_at` when the input's end decides it).
    pub closes_at: EventTime,
}

/// A reported loss that a late consumer may still resolve.
#[derive(Debug, Clone, Copy)]
struct Reported {
    expires_at: EventTime,
    service: Sym,
    destination: Sym,
    start_us: i64,
}

/// Observed producer → consumer latencies of one destination: counts per
/// power-of-two bucket of milliseconds.
#[derive(Debug, Default, Clone)]
struct Latencies {
    buckets: [u32; 32],
    count: u64,
}

impl Latencies {
    fn observe(&mut self, us: i64) {
        let ms = (us.max(0) / 1000) as u64;
        let b = (64 - ms.leading_zeros()).min(31) as usize; // 0 ms → 0, 1 → 1, 2-3 → 2, ...
        self.buckets[b] = self.buckets[b].saturating_add(1);
        self.count += 1;
    }

    /// The upper bound of the bucket holding the 99th percentile, µs.
    fn p99_us(&self) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let want = self.count - self.count / 100;
        let mut seen = 0u64;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= want {
                return Some((1i64 << b) * 1000);
            }
        }
        Some((1i64 << 31) * 1000)
    }
}

/// What the flows found in one step, for the analyzer to emit and count.
#[derive(Default, Debug)]
pub struct FlowOut {
    /// Losses decided (their deadline passed, or the input ended), with when.
    pub losses: Vec<(Evidence, i64)>,
    pub resolutions: Vec<Resolution>,
    /// (producer service, destination) of each resolution, for the counters.
    pub resolved: Vec<(Sym, Sym)>,
    /// Traces whose last pending producer was decided or consumed: their
    /// records are no longer needed.
    pub settled: Vec<TraceId>,
}

/// Counters of the state that outlives a trace's close.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowStats {
    /// Spans that arrived after their trace closed and were joined to it.
    pub late_joined: u64,
    /// Copies of spans already counted, recognised after their trace closed.
    pub late_copies: u64,
    /// Closed traces the byte budget pushed out of the index before their retention.
    pub evicted_closed: u64,
    /// References into other traces received, and how they ended.
    pub links: u64,
    pub links_resolved: u64,
    pub links_unresolved: u64,
    /// Producers consumed after their trace closed, before their deadline.
    pub consumed_late: u64,
    pub losses_resolved: u64,
}

/// What a late span turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Late {
    /// A copy of a span its closed trace already counted: dropped.
    Copy,
    /// Joined to its closed trace.
    Joined,
    /// Its trace is not (or no longer) known: it counts for RED only.
    Unknown,
}

/// The state that carries traces past their close; see the module docs.
#[derive(Debug, Default)]
pub struct Flows {
    config: FlowConfig,
    closed: ClosedIndex,
    pending: FxHashMap<(TraceId, SpanId), Pending>,
    /// Pending producers per trace.
    pending_traces: FxHashMap<TraceId, u32>,
    timers: TimerQueue<(EventTime, TraceId, SpanId)>,
    reported: FxHashMap<(TraceId, SpanId), Reported>,
    /// Reported (still resolvable) producers per trace.
    reported_traces: FxHashMap<TraceId, u32>,
    reported_order: VecDeque<(EventTime, TraceId, SpanId)>,
    /// Per trace: when its waiting links expire, and the links.
    waiting: FxHashMap<TraceId, (EventTime, Vec<Link>)>,
    waiting_order: VecDeque<(EventTime, TraceId)>,
    waiting_links: usize,
    latencies: FxHashMap<Sym, Latencies>,
    fixed: FxHashMap<Sym, i64>,
    /// The latest watermark seen: when state that arrives now expires.
    watermark: EventTime,
    pub stats: FlowStats,
}

impl Flows {
    /// `names` interns the destinations of the fixed deadlines.
    pub fn new(config: FlowConfig, names: &mut Interner) -> Self {
        let fixed = config.deadlines.fixed.iter().map(|(d, us)| (names.intern(d), *us)).collect();
        Flows { config, fixed, watermark: EventTime::MIN, ..Flows::default() }
    }

    /// The earliest event time at which something is due: below it, advancing
    /// changes nothing.
    pub fn next_due(&self) -> EventTime {
        [
            self.timers.peek(),
            self.closed.order.front().map(|e| e.0),
            self.reported_order.front().map(|e| e.0),
            self.waiting_order.front().map(|e| e.0),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(EventTime::MAX)
    }

    /// The deadline of a producer to `destination`.
    pub fn deadline_us(&self, destination: Sym) -> i64 {
        let d = &self.config.deadlines;
        if let Some(&fixed) = self.fixed.get(&destination) {
            return fixed;
        }
        let observed = self.latencies.get(&destination).and_then(Latencies::p99_us).unwrap_or(0);
        ((observed as f64 * d.latency_factor) as i64).clamp(d.min_us, d.max_us.max(d.min_us))
    }

    /// A producer → consumer hop of `destination` took `us`.
    pub fn observe_hop(&mut self, destination: Sym, us: i64) {
        self.latencies.entry(destination).or_default().observe(us);
    }

    /// The latest watermark seen.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    pub fn pending_producers(&self) -> usize {
        self.pending.len()
    }

    /// Whether `trace` closed and is still in the closed-trace index.
    pub fn is_closed(&self, trace: &TraceId) -> bool {
        self.closed.traces.contains_key(trace)
    }

    pub fn closed_traces(&self) -> usize {
        self.closed.traces.len()
    }

    /// Bytes the closed-trace index holds.
    pub fn closed_bytes(&self) -> usize {
        self.closed.bytes
    }

    pub fn closed_spans(&self) -> usize {
        self.closed.traces.values().map(|e| e.spans.len()).sum()
    }

    pub fn waiting_links(&self) -> usize {
        self.waiting_links
    }

    /// Whether a span of `trace` with this id, service and start was counted already.
    fn is_copy(&self, s: &Span) -> bool {
        self.closed.traces.get(&s.trace_id).is_some_and(|e| {
            e.find(s.span_id).is_some_and(|x| {
                // Id and service: a start before the entry's base is not kept exactly.
                self.closed.pairs.get(x.pair).0 == s.service
            })
        })
    }

    /// Remembers a closed trace's spans (de-duplicated) until `closes_at` plus the retention.
    pub fn closed(&mut self, trace: TraceId, spans: &[Span], closes_at: EventTime, replayed: bool) {
        let base_us = spans.iter().map(|s| s.start_us).min().unwrap_or(0);
        let pairs = &mut self.closed.pairs;
        let mut indexed: Vec<IndexedSpan> =
            spans.iter().map(|s| IndexedSpan::new(s, base_us, pairs.id(s))).collect();
        indexed.sort_unstable_by_key(IndexedSpan::id);
        let entry = ClosedEntry { base_us, spans: indexed.into_boxed_slice(), replayed };
        self.closed.bytes += entry.bytes();
        match self.closed.traces.insert(trace, entry) {
            Some(old) => self.closed.bytes -= old.bytes(), // keeps its place in the order
            None => {
                let expires_at = closes_at.saturating_add(self.config.closed_retention_us);
                self.closed.order.push_back((expires_at, trace));
            }
        }
        while self.closed.bytes > self.config.max_closed_bytes {
            let Some((_, id)) = self.closed.order.pop_front() else { break };
            self.closed.remove(&id);
            self.stats.evicted_closed += 1;
        }
    }

    /// A producer of a trace that just closed, that no span of it consumed: it
    /// waits for its deadline unless a link waiting for it consumes it now.
    pub fn pend(&mut self, evidence: Evidence) {
        let Some(s) = evidence.path.last() else { return };
        let (key, closes_at) = ((s.trace_id, s.span_id), evidence.closes_at);
        let decide_at = closes_at.saturating_add(self.deadline_us(s.destination));
        self.timers.schedule(decide_at, (decide_at, key.0, key.1));
        if self.pending.contains_key(&key) {
            self.pending.remove(&key);
        } else {
            *self.pending_traces.entry(key.0).or_default() += 1;
        }
        self.pending.insert(
            key,
            Pending {
                decide_at,
                service: s.service,
                destination: s.destination,
                start_us: s.start_us,
                evidence: Box::new(evidence),
            },
        );
    }

    /// Whether `trace` has producers waiting for a consumer.
    pub fn has_pending(&self, trace: &TraceId) -> bool {
        self.pending_traces.contains_key(trace)
    }

    /// Takes pending producer `key` out, noting its trace settled when it was the last.
    fn unpend(&mut self, key: &(TraceId, SpanId), out: &mut FlowOut) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        if let Some(n) = self.pending_traces.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.pending_traces.remove(&key.0);
                out.settled.push(key.0);
            }
        }
        Some(p)
    }

    /// Takes reported producer `key` out (resolved, or past its retention).
    fn unreport(&mut self, key: &(TraceId, SpanId)) -> Option<Reported> {
        let r = self.reported.remove(key)?;
        if let Some(n) = self.reported_traces.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.reported_traces.remove(&key.0);
            }
        }
        Some(r)
    }

    /// Drops the producers of `trace` still pending, undecided: its input
    /// partition moved to another owner, which reads the trace again.
    pub fn drop_pending(&mut self, trace: &TraceId) {
        if self.pending_traces.remove(trace).is_some() {
            self.pending.retain(|k, _| k.0 != *trace);
        }
    }

    /// The links waiting for `trace`, taken: it just closed (or a late span joined it).
    pub fn take_waiting(&mut self, trace: &TraceId) -> Vec<Link> {
        let links = self.waiting.remove(trace).map(|(_, l)| l).unwrap_or_default();
        self.waiting_links -= links.len();
        links
    }

    /// Links that found no span in their trace wait on, until they expire.
    pub fn wait(&mut self, link: Link) {
        let trace = link.to.trace_id;
        // From the later of event time now and the linking span's start (before
        // the first watermark, event time is not known yet).
        let from = self.watermark.max(link.caller.start_us);
        let expires_at = from.saturating_add(self.config.closed_retention_us);
        let entry = self.waiting.entry(trace).or_insert((expires_at, Vec::new()));
        if entry.1.is_empty() {
            entry.0 = expires_at;
            self.waiting_order.push_back((expires_at, trace));
        }
        entry.1.push(link);
        self.waiting_links += 1;
        while self.waiting_links > self.config.max_waiting_links {
            let Some((_, id)) = self.waiting_order.pop_front() else { break };
            let dropped = self.take_waiting(&id).len();
            self.stats.links_unresolved += dropped as u64;
        }
    }

    /// The producer `(trace, span)` was consumed by `consumer` (named only when it
    /// resolves a reported loss: most links consume a pending producer or none):
    /// a pending one stops waiting; a reported one is resolved.
    pub fn consumed(
        &mut self,
        trace: TraceId,
        span: SpanId,
        consumer: impl FnOnce() -> ConsumerRef,
        detected_at_us: i64,
        out: &mut FlowOut,
    ) {
        let key = (trace, span);
        if self.unpend(&key, out).is_some() {
            self.stats.consumed_late += 1;
        } else if let Some(r) = self.unreport(&key) {
            self.stats.losses_resolved += 1;
            out.resolved.push((r.service, r.destination));
            out.resolutions.push(Resolution {
                trace_id: trace.to_string(),
                span_id: span.to_string(),
                timestamp: format_rfc3339_us(r.start_us),
                resolved_at: format_rfc3339_us(detected_at_us),
                consumer: consumer(),
            });
        }
    }

    /// A link to a trace that closed before: the producer side when the span it
    /// names is in the index, and whether that trace was read again (replayed).
    pub fn link_to_closed(&mut self, link: &Link) -> Option<(Callee, bool)> {
        let e = self.closed.traces.get(&link.to.trace_id)?;
        Some((self.closed.callee(e, e.find(link.to.span_id)?), e.replayed))
    }

    /// A span that arrived after its trace closed: a copy, joined, or unknown.
    /// When joined, it is added to the index and its references to spans of the
    /// closed trace are returned with their callee side.
    pub fn late(&mut self, s: &Span, parents: &mut Vec<(SpanRef, Callee)>) -> Late {
        if self.is_copy(s) {
            self.stats.late_copies += 1;
            return Late::Copy;
        }
        let Some(e) = self.closed.traces.get(&s.trace_id) else { return Late::Unknown };
        for r in s.refs.iter().filter(|r| r.trace_id == s.trace_id) {
            if let Some(p) = e.find(r.span_id) {
                parents.push((*r, self.closed.callee(e, p)));
            }
        }
        let x = IndexedSpan::new(s, e.base_us, self.closed.pairs.id(s));
        if let Some(e) = self.closed.traces.get_mut(&s.trace_id) {
            let mut spans = std::mem::take(&mut e.spans).into_vec();
            let at = spans.partition_point(|y| y.id() < x.id());
            spans.insert(at, x);
            e.spans = spans.into_boxed_slice();
            self.closed.bytes += INDEXED_SPAN_BYTES;
        }
        self.stats.late_joined += 1;
        Late::Joined
    }

    /// Event time reached `watermark`: due producers are reported (with
    /// `detected_at_us`, or their deadline when `None`), and expired state leaves.
    pub fn advance(&mut self, watermark: EventTime, detected_at_us: Option<i64>, out: &mut FlowOut) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        while let Some((_, (decide_at, trace, span))) = self.timers.pop_due(watermark) {
            let key = (trace, span);
            if self.pending.get(&key).is_some_and(|p| p.decide_at == decide_at) {
                if let Some(p) = self.unpend(&key, out) {
                    let at = detected_at_us.unwrap_or(decide_at);
                    self.report(key, p, at, out);
                }
            }
        }
        while let Some(&(expires_at, id)) = self.closed.order.front() {
            if expires_at > watermark {
                break;
            }
            self.closed.order.pop_front();
            if self.pending_traces.contains_key(&id) || self.reported_traces.contains_key(&id) {
                // Its producers may still be consumed or resolved: it stays joinable
                // as long as they do (within the byte budget).
                let again = watermark.saturating_add(self.config.closed_retention_us);
                self.closed.order.push_back((again, id));
                continue;
            }
            self.closed.remove(&id);
        }
        while let Some(&(expires_at, trace, span)) = self.reported_order.front() {
            if expires_at > watermark {
                break;
            }
            self.reported_order.pop_front();
            if self.reported.get(&(trace, span)).is_some_and(|r| r.expires_at <= watermark) {
                self.unreport(&(trace, span));
            }
        }
        while let Some(&(expires_at, id)) = self.waiting_order.front() {
            if expires_at > watermark {
                break;
            }
            self.waiting_order.pop_front();
            // A list taken and started again since has an expiry of its own.
            if self.waiting.get(&id).is_some_and(|(at, _)| *at <= watermark) {
                let dropped = self.take_waiting(&id).len();
                self.stats.links_unresolved += dropped as u64;
            }
        }
    }

    /// The input ended: no consumer can come any more, so every producer still
    /// waiting is lost (its document says when its trace closed), and every
    /// link still waiting is unresolved.
    pub fn finish(&mut self, out: &mut FlowOut) {
        let mut pending: Vec<((TraceId, SpanId), Pending)> = self.pending.drain().collect();
        out.settled.extend(self.pending_traces.drain().map(|(t, _)| t));
        pending.sort_by_key(|(k, p)| (p.decide_at, *k));
        for (key, p) in pending {
            let at = p.evidence.closes_at;
            self.report(key, p, at, out);
        }
        self.timers = TimerQueue::default();
        let unresolved = self.waiting_links;
        self.waiting.clear();
        self.waiting_order.clear();
        self.waiting_links = 0;
        self.stats.links_unresolved += unresolved as u64;
    }

    fn report(&mut self, key: (TraceId, SpanId), p: Pending, at_us: i64, out: &mut FlowOut) {
        let start_us = p.start_us;
        let expires_at = self.watermark.max(p.decide_at).saturating_add(self.config.closed_retention_us);
        let reported = Reported { expires_at, service: p.service, destination: p.destination, start_us };
        if self.reported.insert(key, reported).is_none() {
            *self.reported_traces.entry(key.0).or_default() += 1;
        }
        self.reported_order.push_back((expires_at, key.0, key.1));
        out.losses.push((*p.evidence, at_us));
    }
}

/// The consumer named in a resolution.
pub fn consumer_ref(
    link_trace: TraceId,
    link_span: SpanId,
    caller: &Caller,
    names: &Interner,
) -> ConsumerRef {
    ConsumerRef {
        trace_id: link_trace.to_string(),
        span_id: link_span.to_string(),
        service: names.resolve(caller.service).to_owned(),
        operation: names.resolve(caller.operation).to_owned(),
    }
}

/// Applies what a link or a late span's reference found: the edge and the hop
/// latency of a message (unless `written`: an earlier owner wrote them), and
/// the producer consumed.
#[allow(clippy::too_many_arguments)]
pub fn apply_reference(
    flows: &mut Flows,
    edges: &mut Edges,
    to: (TraceId, SpanId, RefKind),
    callee: Callee,
    caller: &Caller,
    consumer: impl FnOnce() -> ConsumerRef,
    detected_at_us: i64,
    written: bool,
    out: &mut FlowOut,
) {
    if !written {
        edges.add_call(&callee, caller, to.2);
    }
    if callee.producer {
        if !written {
            let destination =
                if callee.destination != Sym(0) { callee.destination } else { caller.destination };
            flows.observe_hop(destination, caller.start_us - callee.start_us);
        }
        flows.consumed(to.0, to.1, consumer, detected_at_us, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flows(deadlines: DeadlineConfig, names: &mut Interner) -> Flows {
        Flows::new(FlowConfig { deadlines, ..FlowConfig::default() }, names)
    }

    #[test]
    fn the_deadline_follows_the_destinations_observed_latency_within_its_bounds() {
        let mut names = Interner::new();
        let config =
            DeadlineConfig { fixed: vec![("audit".into(), 600_000_000)], ..DeadlineConfig::default() };
        let mut f = flows(config, &mut names);
        let (queue, fast, audit) = (names.intern("queue"), names.intern("fast"), names.intern("audit"));
        assert_eq!(f.deadline_us(queue), 120_000_000, "never seen consumed: the floor");
        for _ in 0..1000 {
            f.observe_hop(fast, 3_000); // 3 ms
            f.observe_hop(queue, 60_000_000); // a slow queue: 60 s
        }
        assert_eq!(f.deadline_us(fast), 120_000_000, "fast hops keep the floor");
        // p99 in the bucket up to 2^16 ms (65.5 s), times 4.
        assert_eq!(f.deadline_us(queue), 4 * 65_536_000);
        for _ in 0..100 {
            f.observe_hop(queue, 3_000_000_000); // 50 minutes: beyond the cap
        }
        assert_eq!(f.deadline_us(queue), 3_600_000_000, "capped at max_deadline");
        f.observe_hop(audit, 1_000);
        assert_eq!(f.deadline_us(audit), 600_000_000, "a fixed deadline wins");
    }

    #[test]
    fn an_indexed_span_is_16_bytes_and_keeps_its_start_and_kind() {
        assert_eq!(INDEXED_SPAN_BYTES, 16);
        let s = Span {
            span_id: SpanId(0x0123_4567_89ab_cdef),
            start_us: 1_000_250,
            kind: SpanKind::Producer,
            ..Span::default()
        };
        let x = IndexedSpan::new(&s, 1_000_000, 7);
        assert_eq!((x.id(), x.start_us(1_000_000), x.pair), (s.span_id, 1_000_250, 7));
        assert_ne!(x.start & PRODUCER_BIT, 0);
    }
}
