//! The closed-trace index: per recently closed trace, its span ids with their
//! names and starts, 16 bytes a span, for what comes after the close. [`Flows`]
//! fills it as traces close and reads it for late spans and links into them.

use super::super::edges::Callee;
use super::{Flows, Link};
use crate::dataflow::EventTime;
use crate::model::{Span, SpanId, SpanKind, SpanRef, Sym, TraceId};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// One span of a closed trace, as what comes later needs it: 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct IndexedSpan {
    pub(super) id_hi: u32,
    pub(super) id_lo: u32,
    /// Its (service, operation, destination), numbered by the index ([`Pairs`]).
    pub(super) pair: u32,
    /// Start, µs after the trace entry's base (at most 35 minutes), and in the
    /// top bit whether it is a producer span.
    pub(super) start: u32,
}

/// Bytes one span takes in the closed-trace index.
pub const INDEXED_SPAN_BYTES: usize = std::mem::size_of::<IndexedSpan>();
/// Bytes a closed trace takes in the index besides its spans: the map entry
/// (key, entry, control byte, at the table's most common load) and its expiry record.
pub const INDEXED_TRACE_BYTES: usize =
    (std::mem::size_of::<TraceId>() + std::mem::size_of::<ClosedEntry>() + 1) * 4 / 3
        + std::mem::size_of::<(EventTime, TraceId)>();
pub(super) const PRODUCER_BIT: u32 = 1 << 31;

impl IndexedSpan {
    pub(super) fn new(s: &Span, base_us: i64, pair: u32) -> Self {
        let offset = (s.start_us.saturating_sub(base_us)).clamp(0, i64::from(PRODUCER_BIT - 1)) as u32;
        let producer = if s.kind == SpanKind::Producer { PRODUCER_BIT } else { 0 };
        IndexedSpan {
            id_hi: (s.span_id.0 >> 32) as u32,
            id_lo: s.span_id.0 as u32,
            pair,
            start: offset | producer,
        }
    }

    pub(super) fn id(&self) -> SpanId {
        SpanId((u64::from(self.id_hi) << 32) | u64::from(self.id_lo))
    }

    pub(super) fn start_us(&self, base_us: i64) -> i64 {
        base_us + i64::from(self.start & !PRODUCER_BIT)
    }
}

/// The (service, operation, destination) names of indexed spans, numbered:
/// there are about as few as RED series, so a span keeps 4 bytes instead of 12.
#[derive(Debug, Default)]
pub(super) struct Pairs {
    pub(super) ids: FxHashMap<(Sym, Sym, Sym), u32>,
    pub(super) pairs: Vec<(Sym, Sym, Sym)>,
}

impl Pairs {
    pub(super) fn id(&mut self, s: &Span) -> u32 {
        let key = (s.service, s.operation, s.destination);
        let next = self.pairs.len() as u32;
        let id = *self.ids.entry(key).or_insert(next);
        if id == next {
            self.pairs.push(key);
        }
        id
    }

    pub(super) fn get(&self, id: u32) -> (Sym, Sym, Sym) {
        self.pairs.get(id as usize).copied().unwrap_or_default()
    }
}

#[derive(Debug)]
pub(super) struct ClosedEntry {
    /// The earliest start of its spans: starts are kept relative to it.
    pub(super) base_us: i64,
    /// Sorted by span id.
    pub(super) spans: Box<[IndexedSpan]>,
    /// Read again after an earlier owner analysed and wrote it.
    pub(super) replayed: bool,
}

impl ClosedEntry {
    pub(super) fn find(&self, id: SpanId) -> Option<&IndexedSpan> {
        let at = self.spans.binary_search_by_key(&id, IndexedSpan::id).ok()?;
        self.spans.get(at)
    }

    pub(super) fn bytes(&self) -> usize {
        INDEXED_TRACE_BYTES + self.spans.len() * INDEXED_SPAN_BYTES
    }
}

/// The recently closed traces.
#[derive(Debug, Default)]
pub(super) struct ClosedIndex {
    pub(super) traces: FxHashMap<TraceId, ClosedEntry>,
    /// Traces in the order they closed, with when they expire: a trace is in
    /// the map exactly while it is here.
    pub(super) order: VecDeque<(EventTime, TraceId)>,
    pub(super) pairs: Pairs,
    pub(super) bytes: usize,
    /// Per trace, the fingerprints of the links applied to it ([`super::Link::fingerprint`]):
    /// a copy is not applied twice. Kept as long as the trace's entry.
    pub(super) linked: FxHashMap<TraceId, smallvec::SmallVec<[u64; 2]>>,
}

/// Bytes a trace's list of applied links takes besides its fingerprints.
pub const LINKED_TRACE_BYTES: usize =
    (std::mem::size_of::<TraceId>() + std::mem::size_of::<smallvec::SmallVec<[u64; 2]>>() + 1) * 4 / 3;

impl ClosedIndex {
    pub(super) fn callee(&self, e: &ClosedEntry, x: &IndexedSpan) -> Callee {
        let (service, operation, destination) = self.pairs.get(x.pair);
        Callee {
            service,
            operation,
            destination,
            start_us: x.start_us(e.base_us),
            producer: x.start & PRODUCER_BIT != 0,
        }
    }

    pub(super) fn remove(&mut self, id: &TraceId) {
        if let Some(e) = self.traces.remove(id) {
            self.bytes -= e.bytes();
        }
        if let Some(l) = self.linked.remove(id) {
            self.bytes -= LINKED_TRACE_BYTES + l.len() * std::mem::size_of::<u64>();
        }
    }
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

impl Flows {
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

    /// Takes `traces` out of the closed-trace index (they are read again from their start).
    pub fn forget_closed(&mut self, traces: &[TraceId]) {
        if traces.is_empty() {
            return;
        }
        let gone: rustc_hash::FxHashSet<TraceId> = traces.iter().copied().collect();
        for t in &gone {
            self.closed.remove(t);
        }
        // One pass: an entry left in the order would expire the trace's next entry early.
        self.closed.order.retain(|(_, t)| !gone.contains(t));
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
}
