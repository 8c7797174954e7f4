//! Trace assembly: a session window per trace id in event time.
//!
//! A trace stays open while its spans keep arriving; it closes when the
//! watermark passes its last span's event time plus the inactivity gap. A span
//! whose own session would already be over (`event time + gap <= watermark`) and
//! whose trace is not open is *late*: it is passed on for RED only and counted.
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
}

/// The keyed session-window operator.
pub struct TraceAssembler {
    config: AssemblyConfig,
    open: FxHashMap<TraceId, OpenTrace>,
    timers: TimerQueue<TraceId>,
    watermark: EventTime,
    buffered: usize,
}

impl TraceAssembler {
    pub fn new(config: AssemblyConfig) -> Self {
        TraceAssembler {
            config,
            open: FxHashMap::default(),
            timers: TimerQueue::default(),
            watermark: EventTime::MIN,
            buffered: 0,
        }
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

    /// Closes traces due by the watermark, re-queuing those whose deadline moved.
    fn fire(&mut self, out: &mut Vec<Assembled>) {
        while let Some((due, id)) = self.timers.pop_due(self.watermark) {
            let Some(t) = self.open.get(&id) else { continue };
            let deadline = self.deadline(t);
            if deadline > due {
                if deadline <= self.watermark {
                    self.close(id, CloseCause::Inactive, out);
                } else {
                    self.timers.schedule(deadline, id);
                }
            } else {
                self.close(id, CloseCause::Inactive, out);
            }
        }
    }

    fn evict(&mut self, out: &mut Vec<Assembled>) {
        while self.buffered > self.config.max_buffered_spans {
            match self.timers.pop_earliest() {
                Some((_, id)) => self.close(id, CloseCause::Evicted, out),
                None => break,
            }
        }
    }
}

impl Operator for TraceAssembler {
    type In = Span;
    type Out = Assembled;

    fn process_element(&mut self, span: Span, ctx: &mut Context<'_, Assembled>) {
        let out = &mut *ctx.out;
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
            None if event.saturating_add(gap) <= self.watermark => {
                out.push(Assembled::Unbuffered { span, late: true });
            }
            None => {
                let id = span.trace_id;
                let mut spans = Vec::with_capacity(4);
                spans.push(span);
                let t = OpenTrace { spans, total: 1, last_event: event };
                self.timers.schedule(self.deadline(&t), id);
                self.open.insert(id, t);
                self.buffered += 1;
            }
        }
        self.evict(out);
    }

    fn handle_watermark(&mut self, watermark: EventTime, ctx: &mut Context<'_, Assembled>) {
        let out = &mut *ctx.out;
        self.watermark = self.watermark.max(watermark);
        self.fire(out);
    }

    fn on_close(&mut self, ctx: &mut Context<'_, Assembled>) {
        let out = &mut *ctx.out;
        while let Some((_, id)) = self.timers.pop_earliest() {
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
