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
use crate::dataflow::{EventTime, TimerQueue};
use crate::model::time::format_rfc3339_us;
use crate::model::{Interner, Span, SpanId, Sym, TraceId};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

pub mod applied;
mod deadline;
mod index;
mod link;
mod waiting;

pub use deadline::DeadlineConfig;
use deadline::Latencies;
use index::ClosedIndex;
pub use index::{Late, INDEXED_SPAN_BYTES, INDEXED_TRACE_BYTES};
pub use link::{apply_reference, consumer_ref, Link};

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
    /// Links applied already, met again (a copy): not applied twice.
    pub link_copies: u64,
    pub losses_resolved: u64,
}

/// A link record done with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Released {
    /// Where it was read: the offset it held.
    pub via: (u32, i64),
    /// Applied now, its edge counted here: it is registered (with the producer it consumed).
    pub counted: Option<Link>,
    pub consumed: Option<(TraceId, SpanId)>,
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
    /// Link records (`via`) done with (applied, a copy, or given up): their
    /// offsets are released, and those counted here are registered.
    pub released: Vec<Released>,
    /// Links applied through link records, here or by an earlier owner.
    pub applied: applied::AppliedLinks,
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

    /// A producer of a trace that just closed, that no span of it consumed: it
    /// waits for its deadline unless a link waiting for it consumes it now.
    pub fn pend(&mut self, evidence: Evidence) {
        let Some(s) = evidence.path.last() else { return };
        if self.applied.consumed(s.trace_id, s.span_id) {
            // Its trace was read again; a link consumed it before, for good.
            return;
        }
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
                self.give_up_waiting(&id);
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
        let waiting: Vec<TraceId> = self.waiting.keys().copied().collect();
        for id in waiting {
            self.give_up_waiting(&id);
        }
        self.waiting_order.clear();
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

#[cfg(test)]
mod tests;
