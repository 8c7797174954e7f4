//! The operator graph behind every source: decode → watermarks → trace assembly
//! (keyed by trace id) → analyses.
//!
//! Everything a source has to say comes in through [`Pipeline::push`] as an
//! [`Input`]: records, spans decoded elsewhere, upstream watermarks, partitions
//! assigned, read to their end, committed or revoked, processing time passing,
//! the end of a finite input. Anomalies come out of [`Pipeline::drain_anomalies`];
//! what sinks read (RED, the service graph, edges, counters) through the
//! read-only [`Outputs`] view.

mod dependencies;
mod io;
mod links;
mod ownership;

pub use crate::analysis::{FinishedTrace, InputStats, Outputs};
pub use dependencies::DependencyBucket;
pub use io::{Input, RecordOutcome};

use crate::analysis::{
    AnalysisConfig, Analyzer, Anomaly, Assembled, AssemblyConfig, DetectedAt, FlowConfig, Flows, Late, Link,
    Resolution, TraceAssembler,
};
use crate::dataflow::{
    Clock, Context, EventTime, OffsetTracker, Operator, UpstreamWatermarks, WatermarkConfig, WatermarkTracker,
};
use crate::decode::DecodeError;
use crate::model::{Interner, Span, Sym, TraceId};
use rustc_hash::FxHashMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct PipelineConfig {
    pub assembly: AssemblyConfig,
    pub watermark: WatermarkConfig,
    pub analysis: AnalysisConfig,
    /// What outlives a trace's close: the closed-trace index, message-loss deadlines.
    pub flows: FlowConfig,
    pub detected_at: DetectedAt,
    /// Span or resource attributes added as labels to the RED series (`red.dimensions`).
    pub dimensions: Vec<String>,
}

pub struct Pipeline {
    names: Interner,
    tracker: WatermarkTracker,
    assembler: TraceAssembler,
    /// Traces read again that an earlier owner already finished and wrote:
    /// assembled apart, to rebuild only what they still owed (pending producers).
    replayed: TraceAssembler,
    analyzer: Analyzer,
    input: InputStats,
    /// The most recent decode errors, newest last, for people to read.
    recent_errors: Vec<DecodeError>,
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
    /// Spans past what the previous owner wrote, of traces being read again (open
    /// in `replayed`): new, so counted, as late spans joined to their trace once
    /// it closes (assembled with it they would count nothing; apart, their
    /// references would look broken). With their partition and offset.
    fresh_of_replayed: FxHashMap<TraceId, Vec<(u32, i64, Span)>>,
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
    /// Links to hand to the exchange, which sends them to the owner of the trace
    /// they name (`None`: this pipeline holds every trace and applies them).
    links_out: Option<Vec<Link>>,
    /// Service calls per partition and bucket of event time, when Jaeger's
    /// dependency documents are written.
    buckets: Option<dependencies::Buckets>,
}

/// Finished traces remembered per partition above its committed offset (24 bytes
/// each); past it, copies of the oldest are analysed again should the partition
/// come back.
const MAX_OWN_FINISHED: usize = 20_000;

impl Pipeline {
    pub fn new(config: PipelineConfig, clock: Arc<dyn Clock>) -> Self {
        let mut analysis = config.analysis;
        analysis.max_spans_per_trace = config.assembly.max_spans_per_trace;
        let mut names = Interner::with_limits(analysis.max_names, analysis.max_name_bytes);
        names.set_peer_attributes(analysis.peer_attributes.attributes());
        names.set_dimensions(&config.dimensions);
        let overflow = names.intern(crate::analysis::red::OVERFLOW);
        let mut analyzer = Analyzer::new(analysis, config.detected_at, overflow);
        analyzer.flows = Flows::new(config.flows, &mut names);
        Pipeline {
            names,
            tracker: WatermarkTracker::new(config.watermark, clock),
            assembler: TraceAssembler::new(config.assembly),
            replayed: TraceAssembler::new(config.assembly),
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
            fresh_of_replayed: FxHashMap::default(),
            own_finished: FxHashMap::default(),
            own_service: None,
            upstream: UpstreamWatermarks::default(),
            idle_timeout_us: config.watermark.idle_timeout_us,
            links_out: None,
            buckets: None,
        }
    }

    /// Takes one input; for a record, says how many spans it gave and its first error.
    pub fn push(&mut self, input: Input<'_>) -> RecordOutcome {
        match input {
            Input::Record { partition, offset, format, bytes } => {
                return self.push_record_inner(partition, offset, format, bytes);
            }
            Input::Spans { partition, offset, spans } => self.push_decoded(partition, offset, spans),
            Input::Span { partition, span } => self.push_span(partition, span),
            Input::Shuffled { partition, offset, spans } => self.push_shuffled_at(partition, offset, spans),
            Input::UpstreamWatermark { partition, offset, producer, event_time } => {
                self.upstream_watermark(partition, offset, producer, event_time)
            }
            Input::LinkRecord { partition, offset, bytes } => {
                return self.push_link_record(partition, offset, bytes);
            }
            Input::PassedOn { partition, offset } => self.offsets.processed(partition, offset),
            Input::Rejected(e) => self.reject(e),
            Input::Assigned { partition, gated } => {
                if gated {
                    self.tracker.register_gated(partition);
                } else {
                    self.tracker.register(partition);
                }
                self.regained(partition);
            }
            Input::AtEnd(partition) => self.tracker.at_end(partition),
            Input::Committed { partition, offset } => self.committed(partition, offset),
            Input::Revoked(partition) => self.revoke(partition),
            Input::Tick => self.tick(),
            Input::End => self.finish(),
        }
        RecordOutcome::default()
    }

    /// The read-only view sinks take.
    pub fn outputs(&self) -> Outputs<'_> {
        Outputs {
            names: &self.names,
            red: &self.analyzer.red,
            graph: &self.analyzer.graph,
            critical: &self.analyzer.critical,
            edges: &self.analyzer.edges,
            counters: &self.analyzer.counters,
            stats: &self.analyzer.stats,
            input: &self.input,
            recent_errors: &self.recent_errors,
            watermark: self.tracker.current(),
            open_traces: self.assembler.open_traces(),
            buffered_spans: self.assembler.buffered_spans(),
            flows: &self.analyzer.flows,
        }
    }

    /// Processing time on the pipeline's clock (for a Kafka source, its reading clock), µs.
    pub fn now_us(&self) -> i64 {
        self.tracker.now_us()
    }

    /// The names spans refer to.
    pub fn names(&self) -> &Interner {
        &self.names
    }

    /// For a source that builds spans itself ([`Input::Span`]): their names are
    /// interned here.
    pub fn names_mut(&mut self) -> &mut Interner {
        &mut self.names
    }

    /// Keeps edge deltas and the list of finished traces for a transactional sink
    /// ([`take_finished`](Self::take_finished)).
    pub fn enable_deltas(&mut self) {
        self.analyzer.delta = Some(Default::default());
    }

    /// Edges added and traces finished since the last call (both empty unless
    /// [`enable_deltas`](Self::enable_deltas) was called).
    pub fn take_finished(&mut self) -> (crate::analysis::Edges, Vec<FinishedTrace>) {
        self.settle_edges(None, None);
        (self.analyzer.take_delta(), std::mem::take(&mut self.finished))
    }

    /// Drops input spans of `service` (poirot's own, when it traces itself), so its
    /// traces never feed back into what it analyses.
    pub fn ignore_service(&mut self, service: &str) {
        // Cut as the service names of input spans are, so a long one still matches.
        let service = self.names.capped(service).into_owned();
        self.own_service = Some(self.names.intern(&service));
    }

    fn push_decoded(&mut self, partition: u32, offset: Option<i64>, spans: &mut Vec<Span>) {
        self.feed(partition, offset, spans, true);
        if let Some(offset) = offset {
            self.offsets.processed(partition, offset);
        }
    }

    fn push_shuffled_at(&mut self, partition: u32, offset: i64, spans: &mut Vec<Span>) {
        self.feed(partition, Some(offset), spans, false);
        self.offsets.processed(partition, offset);
    }

    /// A watermark record at `offset` of a repartition-topic `partition`: `producer`
    /// has re-keyed everything up to `event_time` (less the out-of-orderness).
    fn upstream_watermark(&mut self, partition: u32, offset: i64, producer: u64, event_time: EventTime) {
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

    fn feed(&mut self, partition: u32, offset: Option<i64>, spans: &mut Vec<Span>, event_time: bool) {
        let now = self.tracker.now_us();
        for s in spans.drain(..) {
            self.push_span_at(partition, s, now, offset, event_time);
        }
    }

    /// Feeds one decoded span.
    fn push_span(&mut self, partition: u32, span: Span) {
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
                    self.assemble(partition, span, now, offset, event_time, true);
                    return;
                }
                if self.replayed.is_open(&span.trace_id) {
                    self.fresh_of_replayed_span(partition, o, span, now, event_time);
                    return;
                }
            }
        }
        self.assemble(partition, span, now, offset, event_time, false);
    }

    /// Assembles one span; `replayed`: of a trace an earlier owner finished and
    /// wrote, assembled apart so that only what it still owed is rebuilt.
    fn assemble(
        &mut self,
        partition: u32,
        span: Span,
        now: i64,
        offset: Option<i64>,
        event_time: bool,
        replayed: bool,
    ) {
        let event = span.event_time_us();
        let trace = span.trace_id;
        let mut assembled = std::mem::take(&mut self.assembled);
        let assembler = if replayed { &mut self.replayed } else { &mut self.assembler };
        if !assembler.is_open(&trace) && self.analyzer.flows.is_closed(&trace) {
            // Its trace closed and is still in the closed-trace index: whatever its
            // event time, it joins that trace rather than open a second session of it.
            assembled.push(Assembled::Unbuffered { span, late: true });
        } else {
            assembler.process_keyed(partition, span, &mut assembled);
        }
        if let Some(offset) = offset {
            if assembler.is_open(&trace) {
                if self.offsets.is_tracked(&trace) {
                    self.offsets.span_seen(&trace, offset);
                } else {
                    self.offsets.trace_opened(trace, partition, offset);
                }
            }
        }
        self.analyse(&mut assembled, offset.map(|o| (partition, o)), replayed);
        self.assembled = assembled;
        if event_time {
            if let Some(wm) = self.tracker.observe_at(partition, event, now) {
                self.close_until(partition, wm);
            }
        } else {
            self.tracker.saw(partition, event, now);
        }
    }

    /// A partition's watermark moved to `moved`: what waits for event time
    /// (pending producers, the closed-trace index) is decided on the least
    /// watermark over all inputs, since a consumer may come through any of them.
    fn decide(&mut self, moved: EventTime) {
        if moved < self.analyzer.flows.next_due() {
            return; // the least watermark is at most `moved`: nothing is due
        }
        let wm = self.tracker.current();
        self.analyzer.advance(wm, &mut Context::new(&mut self.names, &mut self.anomalies));
        self.settle();
    }

    /// `partition`'s event time reached `wm`: its traces silent for the gap close
    /// and are analysed.
    fn close_until(&mut self, partition: u32, wm: EventTime) {
        let mut assembled = std::mem::take(&mut self.assembled);
        self.assembler.advance(partition, wm, &mut assembled);
        self.analyse(&mut assembled, None, false);
        self.replayed.advance(partition, wm, &mut assembled);
        self.analyse(&mut assembled, None, true);
        self.assembled = assembled;
        self.decide(wm);
        self.complete_buckets(partition, wm);
    }

    /// Analyses what assembly emitted; `origin` is the partition and offset of the
    /// span that was pushed (a late span joined to its closed trace is recorded
    /// as part of it there).
    fn analyse(&mut self, assembled: &mut Vec<Assembled>, origin: Option<(u32, i64)>, replayed: bool) {
        if replayed {
            for a in assembled.drain(..) {
                let t = match a {
                    Assembled::Trace(t) => t,
                    Assembled::Unbuffered { span, late: true } => {
                        // Counted by the earlier owner; still joined, so that it consumes.
                        let trace_id = span.trace_id;
                        let mut ctx = Context::new(&mut self.names, &mut self.anomalies);
                        self.analyzer.replayed_late_span(span, &mut ctx);
                        self.hold_if_pending(trace_id, origin.map(|o| o.0), origin.map(|o| o.1));
                        self.route_links();
                        self.settle_edges(origin.map(|o| o.0), origin.map(|o| o.1));
                        continue;
                    }
                    Assembled::Unbuffered { .. } => continue,
                };
                let trace_id = t.trace_id;
                let first = self.offsets.first_offset(&trace_id);
                let closed = self.offsets.trace_closed(&trace_id);
                let mut ctx = Context::new(&mut self.names, &mut self.anomalies);
                self.analyzer.replayed_trace(t, &mut ctx);
                self.hold_if_pending(trace_id, closed.map(|c| c.0), first);
                self.route_links();
                self.settle_edges(closed.map(|c| c.0), first);
                for (partition, offset, span) in self.fresh_of_replayed.remove(&trace_id).unwrap_or_default()
                {
                    let mut late = vec![Assembled::Unbuffered { span, late: true }];
                    self.analyse(&mut late, Some((partition, offset)), false);
                }
            }
            self.settle();
            return;
        }
        for a in assembled.drain(..) {
            if let Assembled::Unbuffered { span, late: true } = a {
                let trace_id = span.trace_id;
                let mut ctx = Context::new(&mut self.names, &mut self.anomalies);
                let late = self.analyzer.late_span(span, &mut ctx);
                if let (Late::Joined, Some((partition, last_offset))) = (late, origin) {
                    // The trace's records now reach this offset: a sink that registers
                    // finished traces records it, so a re-read drops this span too.
                    self.finished_trace(FinishedTrace { trace_id, partition, last_offset });
                    // A late producer waiting for its consumer keeps its record.
                    self.hold_if_pending(trace_id, Some(partition), Some(last_offset));
                }
                self.route_links();
                self.settle_edges(origin.map(|o| o.0), origin.map(|o| o.1));
                continue;
            }
            let mut held = None;
            if let Assembled::Trace(t) = &a {
                let first = self.offsets.first_offset(&t.trace_id);
                if let Some((partition, last_offset)) = self.offsets.trace_closed(&t.trace_id) {
                    self.finished_trace(FinishedTrace { trace_id: t.trace_id, partition, last_offset });
                    held = Some((t.trace_id, partition, first));
                }
            }
            self.analyzer.process_element(a, &mut Context::new(&mut self.names, &mut self.anomalies));
            if let Some((trace, partition, first)) = held {
                self.hold_if_pending(trace, Some(partition), first);
            }
            self.route_links();
            self.settle_edges(held.map(|h| h.1), held.and_then(|h| h.2));
        }
        self.settle();
    }

    /// Lets processing time move the watermark (idle inputs, silent producers).
    fn tick(&mut self) {
        let now = self.tracker.now_us();
        self.analyzer.flows.applied.expire(now);
        for (partition, t) in self.upstream.expire(now, self.idle_timeout_us) {
            self.advance(partition, t, now);
        }
        for (partition, wm) in self.tracker.tick() {
            self.close_until(partition, wm);
        }
    }

    /// End of a finite input: every open trace closes.
    fn finish(&mut self) {
        let mut assembled = std::mem::take(&mut self.assembled);
        self.assembler.on_close(&mut Context::new(&mut self.names, &mut assembled));
        self.analyse(&mut assembled, None, false);
        self.replayed.on_close(&mut Context::new(&mut self.names, &mut assembled));
        self.analyse(&mut assembled, None, true);
        self.assembled = assembled;
        self.analyzer.finish(&mut Context::new(&mut self.names, &mut self.anomalies));
        self.settle();
        self.complete_all_buckets();
    }

    /// Reported losses resolved since the last call.
    pub fn drain_resolutions(&mut self) -> std::vec::Drain<'_, Resolution> {
        self.analyzer.resolutions.drain(..)
    }

    /// Anomalies found since the last call.
    pub fn drain_anomalies(&mut self) -> std::vec::Drain<'_, Anomaly> {
        self.anomalies.drain(..)
    }
}

#[cfg(test)]
mod tests;
