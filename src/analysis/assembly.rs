//! Trace assembly: a session window per trace id in event time.
//!
//! A trace stays open while its spans keep arriving; it closes when the
//! watermark passes its last span's event time plus the inactivity gap. A span
//! whose own session would already be over (`event time + gap <= watermark`) and
//! whose trace is not open is *late*: it is passed on for RED only and counted.
//!
//! Event time is kept per input partition: input is keyed by trace id, so every
//! span of a trace comes through one partition, and its trace closes with that
//! partition's watermark alone. A partition that is slow, silent, or read again
//! from its committed offset after a rebalance neither holds back nor hurries
//! the traces of the others: re-read spans are judged against their own
//! partition's progress (which starts anew when it is assigned), not against
//! where the rest of the input already is.
//!
//! Memory is bounded two ways: a trace keeps at most `max_spans_per_trace` spans
//! (the rest pass on for RED only, and the trace is reported oversized), and when
//! more than `max_buffered_spans` are held, the traces due first are closed early.

use crate::dataflow::{Context, EventTime, Operator, TimerQueue};
use crate::model::{Span, TraceId};
use rustc_hash::FxHashMap;

#[derive(Clone, Copy, Debug)]
pub struct AssemblyConfig {
    pub inactivity_gap_us: i64,
    pub max_spans_per_trace: usize,
    pub max_buffered_spans: usize,
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        AssemblyConfig {
            inactivity_gap_us: 10_000_000,
            max_spans_per_trace: 50_000,
            max_buffered_spans: 2_000_000,
        }
    }
}

/// Why a trace was closed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloseCause {
    /// The watermark passed the inactivity gap.
    Inactive,
    /// The buffered-span budget forced it out early.
    Evicted,
    /// The input ended.
    EndOfInput,
}

/// A trace whose session window closed.
#[derive(Debug)]
pub struct ClosedTrace {
    pub trace_id: TraceId,
    /// The buffered spans, in arrival order.
    pub spans: Vec<Span>,
    /// Every span that arrived, buffered or not.
    pub total_spans: u64,
    /// Event time at which the session ended: last span + gap.
    pub closes_at: EventTime,
    pub cause: CloseCause,
}

impl ClosedTrace {
    pub fn oversized(&self) -> bool {
        self.total_spans > self.spans.len() as u64
    }
}

/// What assembly emits.
#[derive(Debug)]
pub enum Assembled {
    Trace(ClosedTrace),
    /// A span that only counts for RED: late, or beyond its trace's span limit.
    Unbuffered {
        span: Span,
        late: bool,
    },
}

#[derive(Debug)]
struct OpenTrace {
    spans: Vec<Span>,
    total: u64,
    last_event: EventTime,
    /// The input partition whose event time closes it (that of its first span).
    partition: u32,
}

/// One input partition's event time and the deadlines of its open traces.
#[derive(Debug, Default)]
struct PartitionTime {
    watermark: Option<EventTime>,
    timers: TimerQueue<TraceId>,
}

/// The keyed session-window operator.
pub struct TraceAssembler {
    config: AssemblyConfig,
    open: FxHashMap<TraceId, OpenTrace>,
    partitions: FxHashMap<u32, PartitionTime>,
    buffered: usize,
}

impl TraceAssembler {
    pub fn new(config: AssemblyConfig) -> Self {
        TraceAssembler { config, open: FxHashMap::default(), partitions: FxHashMap::default(), buffered: 0 }
    }

    pub fn open_traces(&self) -> usize {
        self.open.len()
    }

    pub fn buffered_spans(&self) -> usize {
        self.buffered
    }

    pub fn is_open(&self, id: &TraceId) -> bool {
        self.open.contains_key(id)
    }

    /// Drops an open trace without emitting it (its input partition was taken
    /// away: the new owner re-reads it). Its timer entry goes stale and is skipped.
    pub fn discard(&mut self, id: &TraceId) {
        if let Some(t) = self.open.remove(id) {
            self.buffered -= t.spans.len();
        }
    }

    fn deadline(&self, t: &OpenTrace) -> EventTime {
        t.last_event.saturating_add(self.config.inactivity_gap_us)
    }

    fn close(&mut self, id: TraceId, cause: CloseCause, out: &mut Vec<Assembled>) {
        if let Some(t) = self.open.remove(&id) {
            self.buffered -= t.spans.len();
            let closes_at = self.deadline(&t);
            out.push(Assembled::Trace(ClosedTrace {
                trace_id: id,
                spans: t.spans,
                total_spans: t.total,
                closes_at,
                cause,
            }));
        }
    }

    /// The input `partition` was taken away: its open traces are dropped without
    /// being emitted (the new owner re-reads them) and its event time is
    /// forgotten, so a later assignment starts from where it is read again.
    pub fn forget_partition(&mut self, partition: u32) {
        self.partitions.remove(&partition);
        let mut dropped = 0;
        self.open.retain(|_, t| {
            let keep = t.partition != partition;
            if !keep {
                dropped += t.spans.len();
            }
            keep
        });
        self.buffered -= dropped;
    }

    /// `partition`'s event time reached `watermark`: its traces due close.
    pub fn advance(&mut self, partition: u32, watermark: EventTime, out: &mut Vec<Assembled>) {
        let part = self.partitions.entry(partition).or_default();
        let watermark = part.watermark.map_or(watermark, |w| w.max(watermark));
        part.watermark = Some(watermark);
        // Closes traces due, re-queuing those whose deadline moved.
        while let Some((_, id)) =
            self.partitions.get_mut(&partition).and_then(|p| p.timers.pop_due(watermark))
        {
            let Some(t) = self.open.get(&id) else { continue };
            if t.partition != partition {
                continue; // stale: the trace was dropped and opened again elsewhere
            }
            let deadline = self.deadline(t);
            if deadline <= watermark {
                self.close(id, CloseCause::Inactive, out);
            } else if let Some(p) = self.partitions.get_mut(&partition) {
                p.timers.schedule(deadline, id); // it moved on since it was queued
            }
        }
    }

    /// Adds a span read from `partition`.
    pub fn process_keyed(&mut self, partition: u32, span: Span, out: &mut Vec<Assembled>) {
        let event = span.event_time_us();
        let gap = self.config.inactivity_gap_us;
        let max_spans = self.config.max_spans_per_trace;
        match self.open.get_mut(&span.trace_id) {
            Some(t) => {
                t.total += 1;
                t.last_event = t.last_event.max(event);
                if t.spans.len() < max_spans {
                    t.spans.push(span);
                    self.buffered += 1;
                } else {
                    out.push(Assembled::Unbuffered { span, late: false });
                }
            }
            None if self
                .partitions
                .get(&partition)
                .and_then(|p| p.watermark)
                .is_some_and(|w| event.saturating_add(gap) <= w) =>
            {
                out.push(Assembled::Unbuffered { span, late: true });
            }
            None => {
                let id = span.trace_id;
                let mut spans = Vec::with_capacity(4);
                spans.push(span);
                let t = OpenTrace { spans, total: 1, last_event: event, partition };
                let deadline = self.deadline(&t);
                self.partitions.entry(partition).or_default().timers.schedule(deadline, id);
                self.open.insert(id, t);
                self.buffered += 1;
            }
        }
        self.evict(out);
    }

    /// The earliest timer over all partitions, removed.
    fn pop_earliest(&mut self) -> Option<(i64, TraceId)> {
        let (&p, _) = self
            .partitions
            .iter()
            .filter_map(|(p, t)| Some((p, t.timers.peek()?)))
            .min_by_key(|(_, due)| *due)?;
        self.partitions.get_mut(&p)?.timers.pop_earliest()
    }

    fn evict(&mut self, out: &mut Vec<Assembled>) {
        while self.buffered > self.config.max_buffered_spans {
            match self.pop_earliest() {
                Some((_, id)) => self.close(id, CloseCause::Evicted, out),
                None => break,
            }
        }
    }
}

/// As an operator, the assembler sees one input: partition 0.
impl Operator for TraceAssembler {
    type In = Span;
    type Out = Assembled;

    fn process_element(&mut self, span: Span, ctx: &mut Context<'_, Assembled>) {
        self.process_keyed(0, span, ctx.out);
    }

    fn handle_watermark(&mut self, watermark: EventTime, ctx: &mut Context<'_, Assembled>) {
        self.advance(0, watermark, ctx.out);
    }

    fn on_close(&mut self, ctx: &mut Context<'_, Assembled>) {
        let out = &mut *ctx.out;
        while let Some((_, id)) = self.pop_earliest() {
            self.close(id, CloseCause::EndOfInput, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Interner, SpanId};

    /// Drives an assembler the way the pipeline does, collecting its output.
    struct Harness {
        a: TraceAssembler,
        names: Interner,
        out: Vec<Assembled>,
    }

    impl Harness {
        fn new(a: TraceAssembler) -> Self {
            Harness { a, names: Interner::new(), out: Vec::new() }
        }
        fn span(&mut self, s: Span) {
            self.a.process_element(s, &mut Context::new(&mut self.names, &mut self.out));
        }
        fn watermark(&mut self, w: EventTime) {
            self.a.handle_watermark(w, &mut Context::new(&mut self.names, &mut self.out));
        }
        fn close(&mut self) {
            self.a.on_close(&mut Context::new(&mut self.names, &mut self.out));
        }
    }

    const S: i64 = 1_000_000;
    const T0: i64 = 1_700_000_000 * S;

    fn span(trace: u64, id: u64, at_s: i64) -> Span {
        Span {
            trace_id: TraceId::new(0, trace),
            span_id: SpanId(id),
            start_us: T0 + at_s * S,
            ..Span::default()
        }
    }

    fn closed(out: &[Assembled]) -> Vec<(u64, usize)> {
        out.iter()
            .filter_map(|a| match a {
                Assembled::Trace(t) => Some((t.trace_id.low, t.spans.len())),
                _ => None,
            })
            .collect()
    }

    fn assembler() -> Harness {
        Harness::new(TraceAssembler::new(AssemblyConfig {
            inactivity_gap_us: 10 * S,
            ..AssemblyConfig::default()
        }))
    }

    #[test]
    fn closes_after_the_gap_and_not_before() {
        let mut a = assembler();
        a.span(span(1, 1, 0));
        a.span(span(1, 2, 4));
        a.watermark(T0 + 13 * S);
        assert!(closed(&a.out).is_empty(), "last span at 4 s + 10 s gap = 14 s");
        a.watermark(T0 + 14 * S);
        assert_eq!(closed(&a.out), vec![(1, 2)]);
        assert_eq!(a.a.open_traces(), 0);
        assert_eq!(a.a.buffered_spans(), 0);
    }

    #[test]
    fn late_span_of_a_closed_trace_goes_to_red_only() {
        let mut a = assembler();
        a.span(span(1, 1, 0));
        a.watermark(T0 + 20 * S);
        a.span(span(1, 2, 5));
        assert!(matches!(a.out.last(), Some(Assembled::Unbuffered { late: true, .. })));
        // A span that is behind the watermark but whose trace is open still joins it.
        a.span(span(2, 1, 25));
        a.span(span(2, 2, 5));
        a.close();
        assert_eq!(closed(&a.out), vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn span_limit_makes_an_oversized_trace() {
        let mut a = Harness::new(TraceAssembler::new(AssemblyConfig {
            max_spans_per_trace: 3,
            ..AssemblyConfig::default()
        }));
        for i in 1..=5 {
            a.span(span(1, i, 0));
        }
        a.close();
        let unbuffered =
            a.out.iter().filter(|a| matches!(a, Assembled::Unbuffered { late: false, .. })).count();
        assert_eq!(unbuffered, 2);
        match a.out.last() {
            Some(Assembled::Trace(t)) => {
                assert!(t.oversized());
                assert_eq!((t.spans.len(), t.total_spans), (3, 5));
            }
            other => panic!("expected a trace, got {other:?}"),
        }
    }

    #[test]
    fn each_partition_closes_its_traces_with_its_own_event_time() {
        let mut a = assembler();
        a.a.process_keyed(1, span(1, 1, 0), &mut a.out);
        a.a.process_keyed(2, span(2, 1, 0), &mut a.out);
        a.a.advance(1, T0 + 30 * S, &mut a.out);
        assert_eq!(closed(&a.out), vec![(1, 1)], "partition 2 is still at its start");
        // Partition 2 is read again from an older offset (a rebalance): its spans
        // are not late because partition 1 is far ahead.
        a.a.process_keyed(2, span(3, 1, 1), &mut a.out);
        assert_eq!(a.a.open_traces(), 2);
        a.a.forget_partition(2);
        assert_eq!((a.a.open_traces(), a.a.buffered_spans()), (0, 0), "revoked: dropped unemitted");
        a.a.process_keyed(2, span(3, 1, 1), &mut a.out);
        a.a.process_keyed(2, span(3, 2, 2), &mut a.out);
        a.a.advance(2, T0 + 12 * S, &mut a.out);
        assert_eq!(closed(&a.out), vec![(1, 1), (3, 2)], "re-read after the revoke, whole");
    }

    #[test]
    fn buffer_budget_evicts_the_earliest_trace() {
        let mut a = Harness::new(TraceAssembler::new(AssemblyConfig {
            max_buffered_spans: 2,
            ..AssemblyConfig::default()
        }));
        a.span(span(1, 1, 0));
        a.span(span(2, 1, 1));
        a.span(span(3, 1, 2));
        assert_eq!(closed(&a.out), vec![(1, 1)]);
        assert!(a.a.buffered_spans() <= 2);
    }
}
