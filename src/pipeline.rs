//! The operator graph behind every source: decode → watermarks → trace assembly
//! (keyed by trace id) → analyses. Sources push records (or spans); anomalies
//! come out of [`Pipeline::drain_anomalies`]; RED and edges stay in the analyzer
//! for sinks to read.

use crate::analysis::{
    AnalysisConfig, Analyzer, Anomaly, Assembled, AssemblyConfig, DetectedAt, TraceAssembler,
};
use crate::dataflow::{
    Clock, Context, EventTime, OffsetTracker, Operator, UpstreamWatermarks, WatermarkConfig, WatermarkTracker,
};
use crate::decode::{self, DecodeError, Format, Reason};
use crate::model::{Interner, Span, Sym, TraceId};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct PipelineConfig {
    pub assembly: AssemblyConfig,
    pub watermark: WatermarkConfig,
    pub analysis: AnalysisConfig,
    pub detected_at: DetectedAt,
}

/// Counters of the input side.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputStats {
    pub records: u64,
    pub spans: u64,
    /// Spans of traces a previous owner had already finished, dropped on re-read.
    pub replayed_spans: u64,
    /// Spans of poirot's own service (self-tracing), dropped.
    pub own_spans: u64,
    /// Records read from the repartition topic (not counted in `records` again).
    pub shuffled_records: u64,
    pub bad: BTreeMap<Reason, u64>,
}

impl InputStats {
    pub fn bad_total(&self) -> u64 {
        self.bad.values().sum()
    }
}

pub struct Pipeline {
    pub names: Interner,
    tracker: WatermarkTracker,
    assembler: TraceAssembler,
    pub analyzer: Analyzer,
    pub input: InputStats,
    /// The most recent decode errors, newest last, for people to read.
    pub recent_errors: Vec<DecodeError>,
    spans: Vec<Span>,
    errors: Vec<DecodeError>,
    assembled: Vec<Assembled>,
    anomalies: Vec<Anomaly>,
    /// Input offsets still needed by open traces (sources with offsets only).
    offsets: OffsetTracker,
    /// Traces finished since a sink last took them (when deltas are on).
    finished: Vec<FinishedTrace>,
    /// Traces a previous owner already finished: their spans up to the offset are dropped.
    skip: FxHashMap<TraceId, (u32, i64)>,
    /// Traces this pipeline finished whose records are not all below the partition's
    /// committed offset, per partition: should the partition be taken away and given
    /// back, its re-read copies are dropped whatever sinks run (a Neo4j registry
    /// covers other owners too). Kept across a revocation; pruned by commits.
    own_finished: FxHashMap<u32, Vec<(TraceId, i64)>>,
    /// poirot's own service when it traces itself: its spans are not analysed.
    own_service: Option<Sym>,
    /// Event-time progress of shuffled partitions, from their producers' watermark records.
    upstream: UpstreamWatermarks,
    idle_timeout_us: i64,
}

/// A trace that closed, with where its spans ended in its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinishedTrace {
    pub trace_id: TraceId,
    pub partition: u32,
    pub last_offset: i64,
}

/// What became of one record.
#[derive(Debug, Default)]
pub struct RecordOutcome {
    pub spans: usize,
    /// The first error, when the record or one of its spans could not be decoded.
    pub error: Option<DecodeError>,
}

const RECENT_ERRORS: usize = 20;
/// Finished traces remembered per partition above its committed offset (24 bytes
/// each); past it, copies of the oldest are analysed again should the partition
/// come back.
const MAX_OWN_FINISHED: usize = 20_000;

impl Pipeline {
    pub fn new(config: PipelineConfig, clock: Arc<dyn Clock>) -> Self {
        let mut analysis = config.analysis;
        analysis.max_spans_per_trace = config.assembly.max_spans_per_trace;
        let mut names = Interner::with_limits(analysis.max_names, analysis.max_name_bytes);
        let overflow = names.intern(crate::analysis::red::OVERFLOW);
        let analyzer = Analyzer::new(analysis, config.detected_at, overflow);
        Pipeline {
            names,
            tracker: WatermarkTracker::new(config.watermark, clock),
            assembler: TraceAssembler::new(config.assembly),
            analyzer,
            input: InputStats::default(),
            recent_errors: Vec::new(),
            spans: Vec::new(),
            errors: Vec::new(),
            assembled: Vec::new(),
            anomalies: Vec::new(),
            offsets: OffsetTracker::default(),
            finished: Vec::new(),
            skip: FxHashMap::default(),
            own_finished: FxHashMap::default(),
            own_service: None,
            upstream: UpstreamWatermarks::default(),
            idle_timeout_us: config.watermark.idle_timeout_us,
        }
    }

    /// Keeps edge deltas and the list of finished traces for a transactional sink
    /// ([`take_finished`](Self::take_finished)).
    pub fn enable_deltas(&mut self) {
        self.analyzer.delta = Some(Default::default());
    }

    /// Edges added and traces finished since the last call.
    pub fn take_finished(&mut self) -> (crate::analysis::Edges, Vec<FinishedTrace>) {
        (self.analyzer.take_delta(), std::mem::take(&mut self.finished))
    }

    /// Traces of `partition` that a previous owner already finished and wrote:
    /// when their spans are read again (up to the recorded offset), they are dropped.
    pub fn skip_finished(&mut self, partition: u32, traces: impl IntoIterator<Item = (TraceId, i64)>) {
        for (t, last) in traces {
            self.skip.insert(t, (partition, last));
        }
    }

    /// Drops input spans of `service` (poirot's own, when it traces itself), so its
    /// traces never feed back into what it analyses.
    pub fn ignore_service(&mut self, service: &str) {
        // Cut as the service names of input spans are, so a long one still matches.
        let service = self.names.capped(service).into_owned();
        self.own_service = Some(self.names.intern(&service));
    }

    /// Decodes one record of `partition` (`format` `None`: detect it) and feeds its spans.
    pub fn push_record(&mut self, partition: u32, format: Option<Format>, record: &[u8]) -> RecordOutcome {
        self.push_record_inner(partition, None, format, record)
    }

    /// [`push_record`](Self::push_record) for a source with offsets: the pipeline
    /// then knows which offsets open traces still need ([`committable`](Self::committable)).
    pub fn push_record_at(
        &mut self,
        partition: u32,
        offset: i64,
        format: Option<Format>,
        record: &[u8],
    ) -> RecordOutcome {
        let outcome = self.push_record_inner(partition, Some(offset), format, record);
        self.offsets.processed(partition, offset);
        outcome
    }

    fn push_record_inner(
        &mut self,
        partition: u32,
        offset: Option<i64>,
        format: Option<Format>,
        record: &[u8],
    ) -> RecordOutcome {
        let mut spans = std::mem::take(&mut self.spans);
        let outcome = self.decode_record(format, record, &mut spans);
        self.feed(partition, offset, &mut spans, true);
        self.spans = spans;
        outcome
    }

    /// Decodes one record (`format` `None`: detect it) without feeding it: its
    /// spans are appended to `spans`, its errors counted.
    pub fn decode_record(
        &mut self,
        format: Option<Format>,
        record: &[u8],
        spans: &mut Vec<Span>,
    ) -> RecordOutcome {
        self.input.records += 1;
        let mut errors = std::mem::take(&mut self.errors);
        let before = spans.len();
        let format = format.or_else(|| decode::detect(record));
        match format {
            Some(f) => decode::decode(f, record, &mut self.names, spans, &mut errors),
            None => errors.push(decode::unrecognized(record)),
        }
        if format == Some(Format::JaegerUi) {
            // A UI document lists traces in no time order; feed it as a tracer would have.
            spans[before..].sort_by_key(Span::event_time_us);
        }
        let outcome = RecordOutcome { spans: spans.len() - before, error: errors.first().cloned() };
        for e in errors.drain(..) {
            self.reject(e);
        }
        self.errors = errors;
        outcome
    }

    /// Decodes a record of the repartition topic (always Jaeger protobuf, written by
    /// [`crate::source::repartition::Rekeyer`]); its input record was counted already.
    pub fn decode_shuffled(&mut self, record: &[u8], spans: &mut Vec<Span>) -> RecordOutcome {
        let outcome = self.decode_record(Some(Format::JaegerProto), record, spans);
        self.input.records -= 1;
        self.input.shuffled_records += 1;
        outcome
    }

    /// Feeds the spans [`decode_record`](Self::decode_record) gave for the record
    /// at `offset` of `partition`, emptying `spans`.
    pub fn push_decoded_at(&mut self, partition: u32, offset: i64, spans: &mut Vec<Span>) {
        self.feed(partition, Some(offset), spans, true);
        self.offsets.processed(partition, offset);
    }

    /// Like [`push_decoded_at`](Self::push_decoded_at) for a partition of the
    /// repartition topic: its event time moves with its producers' watermark
    /// records ([`upstream_watermark`](Self::upstream_watermark)), not with the spans.
    pub fn push_shuffled_at(&mut self, partition: u32, offset: i64, spans: &mut Vec<Span>) {
        self.feed(partition, Some(offset), spans, false);
        self.offsets.processed(partition, offset);
    }

    /// A watermark record at `offset` of a repartition-topic `partition`: `producer`
    /// has re-keyed everything up to `event_time` (less the out-of-orderness).
    pub fn upstream_watermark(&mut self, partition: u32, offset: i64, producer: u64, event_time: EventTime) {
        let now = self.tracker.now_us();
        let t = self.upstream.heard(partition, producer, event_time, now, self.idle_timeout_us);
        self.offsets.processed(partition, offset);
        self.advance(partition, t, now);
    }

    /// Moves a shuffled partition to `event_time`, or (`None`: no producer bounds
    /// it) lets it stop holding time back until it is bounded again.
    fn advance(&mut self, partition: u32, event_time: Option<EventTime>, now: i64) {
        let wm = match event_time {
            Some(t) => self.tracker.observe_at(partition, t, now),
            None => self.tracker.end_partition(partition),
        };
        if let Some(wm) = wm {
            self.close_until(partition, wm);
        }
    }

    /// The record at `offset` of `partition` was handled without feeding spans
    /// here (they were re-keyed into the repartition topic).
    pub fn passed_on(&mut self, partition: u32, offset: i64) {
        self.offsets.processed(partition, offset);
    }

    fn feed(&mut self, partition: u32, offset: Option<i64>, spans: &mut Vec<Span>, event_time: bool) {
        let now = self.tracker.now_us();
        for s in spans.drain(..) {
            self.push_span_at(partition, s, now, offset, event_time);
        }
    }

    /// Counts a record or span that could not be used.
    pub fn reject(&mut self, e: DecodeError) {
        *self.input.bad.entry(e.reason).or_default() += 1;
        if self.recent_errors.len() == RECENT_ERRORS {
            self.recent_errors.remove(0);
        }
        self.recent_errors.push(e);
    }

    /// Feeds one decoded span.
    pub fn push_span(&mut self, partition: u32, span: Span) {
        let now = self.tracker.now_us();
        self.push_span_at(partition, span, now, None, true);
    }

    /// `event_time`: whether the span's own event time moves its partition's watermark.
    fn push_span_at(&mut self, partition: u32, span: Span, now: i64, offset: Option<i64>, event_time: bool) {
        self.input.spans += 1;
        if self.own_service == Some(span.service) {
            self.input.own_spans += 1;
            return;
        }
        if let Some(o) = offset.filter(|_| !self.skip.is_empty()) {
            if let Some(&(p, last)) = self.skip.get(&span.trace_id) {
                // On a repartition-topic partition a finished trace's spans may come back
                // at higher offsets too: re-keyed again by a process that took over the
                // input before its commit. They are all copies.
                if p == partition && (o <= last || !event_time) {
                    self.input.replayed_spans += 1;
                    return;
                }
            }
        }
        let event = span.event_time_us();
        let trace = span.trace_id;
        let mut assembled = std::mem::take(&mut self.assembled);
        self.assembler.process_keyed(partition, span, &mut assembled);
        if let Some(offset) = offset {
            if self.assembler.is_open(&trace) {
                if self.offsets.is_tracked(&trace) {
                    self.offsets.span_seen(&trace, offset);
                } else {
                    self.offsets.trace_opened(trace, partition, offset);
                }
            }
        }
        if event_time {
            if let Some(wm) = self.tracker.observe_at(partition, event, now) {
                self.assembler.advance(partition, wm, &mut assembled);
            }
        } else {
            self.tracker.saw(partition, event, now);
        }
        self.analyse(&mut assembled);
        self.assembled = assembled;
    }

    /// `partition`'s event time reached `wm`: its traces silent for the gap close
    /// and are analysed.
    fn close_until(&mut self, partition: u32, wm: EventTime) {
        let mut assembled = std::mem::take(&mut self.assembled);
        self.assembler.advance(partition, wm, &mut assembled);
        self.analyse(&mut assembled);
        self.assembled = assembled;
    }

    fn analyse(&mut self, assembled: &mut Vec<Assembled>) {
        for a in assembled.drain(..) {
            if let Assembled::Trace(t) = &a {
                if let Some((partition, last_offset)) = self.offsets.trace_closed(&t.trace_id) {
                    let own = self.own_finished.entry(partition).or_default();
                    if own.len() < MAX_OWN_FINISHED {
                        own.push((t.trace_id, last_offset));
                    }
                    if self.analyzer.delta.is_some() {
                        self.finished.push(FinishedTrace { trace_id: t.trace_id, partition, last_offset });
                    }
                }
            }
            self.analyzer.process_element(a, &mut Context::new(&mut self.names, &mut self.anomalies));
        }
    }

    /// Lets processing time move the watermark (idle inputs, silent producers).
    pub fn tick(&mut self) {
        let now = self.tracker.now_us();
        for (partition, t) in self.upstream.expire(now, self.idle_timeout_us) {
            self.advance(partition, t, now);
        }
        for (partition, wm) in self.tracker.tick() {
            self.close_until(partition, wm);
        }
    }

    /// End of a finite input: every open trace closes.
    pub fn finish(&mut self) {
        let mut assembled = std::mem::take(&mut self.assembled);
        self.assembler.on_close(&mut Context::new(&mut self.names, &mut assembled));
        self.analyse(&mut assembled);
        self.assembled = assembled;
    }

    /// The offset of `partition` that may be committed: the first one an open
    /// trace still needs, or one past the last processed.
    pub fn committable(&self, partition: u32) -> Option<i64> {
        self.offsets.committable(partition)
    }

    /// `partition` was assigned to this pipeline: it takes part in the watermark
    /// from now on, even before its first record.
    pub fn assign(&mut self, partition: u32) {
        self.tracker.register(partition);
    }

    /// Like [`assign`](Self::assign), for a source that reports when it has read a
    /// partition to its end ([`reached_end`](Self::reached_end)): the partition
    /// cannot turn idle before that.
    pub fn assign_gated(&mut self, partition: u32) {
        self.tracker.register_gated(partition);
    }

    /// The source has read `partition` to its end: from now on its silence counts
    /// towards idleness.
    pub fn reached_end(&mut self, partition: u32) {
        self.tracker.at_end(partition);
    }

    /// The group coordinator acknowledged `offset` as `partition`'s committed offset:
    /// what lies below it is never read again, so finished traces that ended there
    /// need no remembering.
    pub fn committed(&mut self, partition: u32, offset: i64) {
        if let Some(own) = self.own_finished.get_mut(&partition) {
            own.retain(|&(_, last)| last >= offset);
        }
        self.skip.retain(|_, &mut (p, last)| p != partition || last >= offset);
    }

    /// `partition` came back to this pipeline after it was taken away: the traces
    /// it had finished from there are skipped when their records are read again.
    pub fn regained(&mut self, partition: u32) {
        if let Some(own) = self.own_finished.get(&partition) {
            for &(t, last) in own {
                self.skip.insert(t, (partition, last));
            }
        }
    }

    /// `partition` was taken away: its open traces are dropped unanalysed (the new
    /// owner re-reads them from the committed offset) and its event time is
    /// forgotten (an owner that gets it again starts from what it reads).
    pub fn revoke(&mut self, partition: u32) {
        for t in self.offsets.traces_of(partition) {
            self.assembler.discard(&t);
        }
        self.offsets.forget(partition);
        self.upstream.forget(partition);
        self.skip.retain(|_, (p, _)| *p != partition);
        self.tracker.forget(partition);
        self.assembler.forget_partition(partition);
    }

    /// Anomalies found since the last call.
    pub fn drain_anomalies(&mut self) -> std::vec::Drain<'_, Anomaly> {
        self.anomalies.drain(..)
    }

    pub fn watermark(&self) -> EventTime {
        self.tracker.current()
    }

    pub fn open_traces(&self) -> usize {
        self.assembler.open_traces()
    }

    pub fn buffered_spans(&self) -> usize {
        self.assembler.buffered_spans()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{AnalysisConfig, AssemblyConfig};
    use crate::dataflow::ManualClock;
    use crate::model::SpanId;

    const S: i64 = 1_000_000;

    fn pipeline(clock: &ManualClock) -> Pipeline {
        let config = PipelineConfig {
            assembly: AssemblyConfig { inactivity_gap_us: 2 * S, ..AssemblyConfig::default() },
            watermark: WatermarkConfig { out_of_orderness_us: S, idle_timeout_us: 30 * S },
            analysis: AnalysisConfig::default(),
            detected_at: DetectedAt::TraceClose,
        };
        Pipeline::new(config, Arc::new(clock.clone()))
    }

    fn span(trace: u64, end_s: i64) -> Span {
        Span {
            trace_id: TraceId::new(0, trace),
            span_id: SpanId(trace),
            start_us: end_s * S,
            ..Span::default()
        }
    }

    #[test]
    fn a_shuffled_partition_moves_with_its_slowest_producer_not_its_spans() {
        let clock = ManualClock::new(0);
        let mut p = pipeline(&clock);
        // Producer 2 is at 10 s, producer 1 already at 100 s: the partition is at 10 s.
        p.upstream_watermark(7, 0, 2, 10 * S);
        p.upstream_watermark(7, 1, 1, 100 * S);
        assert_eq!(p.watermark(), 9 * S, "10 s less the out-of-orderness");
        // A span of producer 2's far-behind trace is on time; a 200 s span does not move time.
        p.push_shuffled_at(7, 2, &mut vec![span(1, 11), span(2, 200)]);
        assert_eq!(p.watermark(), 9 * S);
        assert_eq!(p.open_traces(), 2);
        // Producer 2 catches up: trace 1 (11 s + 2 s gap) closes, trace 2 stays open.
        p.upstream_watermark(7, 3, 2, 100 * S);
        assert_eq!(p.open_traces(), 1);
        assert_eq!(p.analyzer.stats.late_spans, 0);
        // Producer 2 falls silent while producer 1 goes on: after the idle timeout
        // producer 1 alone counts.
        clock.advance(20 * S);
        p.upstream_watermark(7, 4, 1, 300 * S);
        assert_eq!(p.watermark(), 99 * S, "producer 2 still holds it");
        clock.advance(11 * S);
        p.tick();
        assert_eq!(p.watermark(), 299 * S);
        assert_eq!(p.open_traces(), 0);
    }

    #[test]
    fn an_input_partition_whose_records_are_all_re_keyed_holds_nothing_back() {
        let clock = ManualClock::new(0);
        let mut p = pipeline(&clock);
        p.assign(0); // keyed input
        p.assign(1); // its records all go to the repartition topic
        p.push_decoded_at(0, 0, &mut vec![span(1, 50)]);
        p.passed_on(1, 0);
        p.push_decoded_at(0, 1, &mut vec![span(2, 60)]);
        assert_eq!(p.open_traces(), 1, "trace 1 closed by partition 0's own event time");
        assert_eq!(p.committable(1), Some(1));
    }

    #[test]
    fn a_partition_read_again_after_a_rebalance_is_not_late() {
        let clock = ManualClock::new(0);
        let mut p = pipeline(&clock);
        p.assign(0);
        p.assign(1);
        p.push_decoded_at(0, 0, &mut vec![span(1, 10)]);
        p.push_decoded_at(1, 0, &mut vec![span(2, 10)]);
        p.push_decoded_at(0, 1, &mut vec![span(3, 100)]);
        // Partition 1 is taken away with trace 2 open, and given back: it is read
        // again from its committed offset while partition 0 is 90 s ahead.
        p.revoke(1);
        p.assign(1);
        p.push_decoded_at(1, 0, &mut vec![span(2, 10)]);
        p.push_decoded_at(1, 1, &mut vec![span(4, 20)]);
        assert_eq!(p.analyzer.stats.late_spans, 0);
        assert_eq!(
            p.open_traces(),
            2,
            "trace 3 on partition 0, trace 4 on partition 1 (trace 2 closed whole)"
        );
    }

    #[test]
    fn a_partition_given_back_skips_the_traces_this_process_finished_from_it() {
        let clock = ManualClock::new(0);
        let mut p = pipeline(&clock);
        let second = |trace: u64, end_s: i64| Span { span_id: SpanId(100 + trace), ..span(trace, end_s) };
        let read = |p: &mut Pipeline| {
            p.push_decoded_at(0, 0, &mut vec![span(1, 10)]);
            p.push_decoded_at(0, 1, &mut vec![span(2, 10)]);
            p.push_decoded_at(0, 2, &mut vec![second(2, 10)]);
            p.push_decoded_at(0, 3, &mut vec![second(1, 13)]);
            p.push_decoded_at(0, 4, &mut vec![span(3, 13)]);
        };
        p.assign(0);
        read(&mut p);
        // Trace 2 closed (12 s ≤ 12.1 s); trace 1 is open and holds offset 0.
        assert_eq!((p.analyzer.stats.traces, p.open_traces()), (1, 2));
        assert_eq!(p.committable(0), Some(0));
        p.committed(0, 0);
        // Taken away and given back: read again from offset 0. Trace 2's copies are
        // dropped; traces 1 and 3 are assembled whole.
        p.revoke(0);
        p.assign(0);
        p.regained(0);
        read(&mut p);
        assert_eq!(p.input.replayed_spans, 2);
        p.finish();
        assert_eq!(p.analyzer.stats.traces, 3, "traces 2, then 1 and 3, each once");
        assert_eq!(p.analyzer.stats.spans, 2 + 2 + 1, "trace 2's spans counted once");
    }

    #[test]
    fn a_shuffled_partition_whose_producer_never_bounded_it_still_closes_its_traces() {
        // The producer re-keyed its whole input while its other input partitions were
        // still "nothing known", and all of them turned idle together: its watermark
        // records went from MIN straight to "bounds nothing".
        let clock = ManualClock::new(0);
        let mut p = pipeline(&clock);
        p.assign_gated(7);
        p.upstream_watermark(7, 0, 1, EventTime::MIN);
        p.push_shuffled_at(7, 1, &mut vec![span(1, 10), span(2, 11)]);
        p.upstream_watermark(7, 2, 1, EventTime::MAX);
        assert_eq!(p.watermark(), 10 * S, "idle at once, from the spans it saw less the out-of-orderness");
        assert_eq!(p.open_traces(), 2);
        clock.advance(2 * S);
        p.tick();
        assert_eq!(p.open_traces(), 1, "trace 1: 10 s + 2 s gap");
        clock.advance(S);
        p.tick();
        assert_eq!(p.open_traces(), 0, "trace 2: 11 s + 2 s gap");
        assert_eq!(p.analyzer.stats.late_spans, 0);
    }
}
