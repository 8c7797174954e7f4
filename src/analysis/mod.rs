//! Analyses of closed traces: the trace DAG, RED metrics, dependency edges and
//! anomaly detection, run by the [`Analyzer`] operator.

pub mod anomaly;
pub mod assembly;
mod beyond_close;
mod counters;
pub mod critical_path;
pub mod dag;
pub mod detect;
pub mod edges;
pub mod flows;
pub mod outputs;
pub mod red;
pub mod repeated_calls;
pub mod service_graph;

pub use anomaly::{Anomaly, AnomalyKind, DocLimits, Resolution};
pub use assembly::{Assembled, AssemblyConfig, ClosedTrace, TraceAssembler};
pub use counters::AnomalyCounters;
pub use dag::TraceDag;
pub use edges::Edges;
pub use flows::{DeadlineConfig, FlowConfig, FlowStats, Flows, Late, Link};
pub use outputs::{FinishedTrace, InputStats, Outputs};
pub use red::Red;
pub use service_graph::ServiceGraph;

use crate::dataflow::EventTime;
use crate::dataflow::{Clock, Context, Operator};
use crate::model::{sampling, Interner, Span, SpanId, SpanKind, Sym};
use anomaly::TraceCtx;
use edges::{Callee, Caller};
use flows::FlowOut;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
pub struct AnalysisConfig {
    /// Re-entries of a service that make a recursive chain (2: A→B→A→B→A).
    pub min_reentries: u32,
    /// Sequential calls to one callee that make a repeated_calls anomaly (0: off).
    pub min_repeated_calls: u32,
    /// Count each span of a sampled trace 1/p times in RED and the service graph.
    pub adjust_for_sampling: bool,
    /// The attributes a client span's peer is named from, in order.
    pub peer_attributes: crate::config::PeerOrder,
    /// The span limit assembly enforces, quoted in oversized_trace documents.
    pub max_spans_per_trace: usize,
    /// Most RED series (label sets); past it spans go to the `__overflow__` series.
    pub max_series: usize,
    /// Most distinct names (services, operations, destinations) held; past it new
    /// names become `__overflow__`.
    pub max_names: usize,
    /// Longest name kept, in bytes; longer names from input are cut with a marker.
    pub max_name_bytes: usize,
    /// Caps on every anomaly document.
    pub documents: DocLimits,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            min_reentries: 2,
            min_repeated_calls: 5,
            adjust_for_sampling: true,
            peer_attributes: crate::config::PeerOrder(crate::model::DEFAULT_PEER_ATTRIBUTES.map(Some)),
            max_spans_per_trace: AssemblyConfig::default().max_spans_per_trace,
            max_series: 10_000,
            max_names: 100_000,
            max_name_bytes: crate::model::DEFAULT_MAX_NAME_BYTES,
            documents: DocLimits::default(),
        }
    }
}

/// Most spans of a lost message's causal path its document shows.
const MAX_LOSS_PATH: usize = 32;

/// What `detected_at` of an anomaly says.
#[derive(Clone)]
pub enum DetectedAt {
    /// The event time the trace closed at (last span + gap): reproducible, for replays.
    TraceClose,
    /// Processing time, for live pipelines.
    Clock(Arc<dyn Clock>),
}

/// Counters of what the analyses saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnalysisStats {
    pub traces: u64,
    /// Spans counted for RED (after dropping re-deliveries).
    pub spans: u64,
    pub late_spans: u64,
    /// Spans beyond their trace's span limit.
    pub overflow_spans: u64,
    pub duplicate_spans: u64,
    /// Traces closed early to keep the buffered-span budget.
    pub evicted_traces: u64,
    /// Spans counted more than once in RED and the service graph: their trace
    /// states a sampling probability below 1.
    pub sampled_spans: u64,
    pub anomalies: BTreeMap<AnomalyKind, u64>,
}

/// The operator that turns closed traces into RED, edges and anomalies.
pub struct Analyzer {
    config: AnalysisConfig,
    detected_at: DetectedAt,
    pub red: Red,
    /// Client/server request metrics (live only: not part of the replay files).
    pub graph: ServiceGraph,
    /// Where end-to-end time goes: critical-path self time per service and operation.
    pub critical: critical_path::CriticalPaths,
    pub counters: AnomalyCounters,
    pub edges: Edges,
    /// When on, closed traces add their edges here instead of to `edges`, and
    /// [`Analyzer::take_delta`] moves them into `edges`: one pass per trace either way.
    pub delta: Option<Edges>,
    /// When on, new edges land here first and the pipeline moves them on after
    /// each element ([`Analyzer::settle_recent`]), so it knows which partition's
    /// records they came from (Jaeger's dependency buckets).
    pub recent: Option<Edges>,
    /// When on, the calls of traces read again (an earlier owner counted them)
    /// land here and nowhere else, for an output that counts them apart: Jaeger's
    /// dependency buckets, which the earlier owner may not have written.
    pub replayed_calls: Option<Edges>,
    pub stats: AnalysisStats,
    /// What carries traces past their close: the closed-trace index, pending
    /// producers, reported losses, links waiting.
    pub flows: Flows,
    /// References into other traces found since the pipeline last took them: it
    /// routes each to the owner of the trace it names ([`Analyzer::link`]).
    pub links: Vec<Link>,
    /// Reported losses resolved since the pipeline last took them.
    pub resolutions: Vec<Resolution>,
    /// Traces whose pending producers were all decided since the pipeline last
    /// took them: it stops holding their input offsets.
    pub settled: Vec<crate::model::TraceId>,
    flow_out: FlowOut,
}

impl Analyzer {
    /// `overflow` is the interned [`red::OVERFLOW`]: the name of the series past the limits.
    pub fn new(config: AnalysisConfig, detected_at: DetectedAt, overflow: Sym) -> Self {
        Analyzer {
            config,
            detected_at,
            red: Red::with_limit(config.max_series, overflow),
            graph: ServiceGraph::with_limit(config.max_series, overflow),
            critical: critical_path::CriticalPaths::with_limit(config.max_series, overflow),
            counters: AnomalyCounters::with_limit(config.max_series, overflow),
            edges: Edges::default(),
            delta: None,
            recent: None,
            replayed_calls: None,
            stats: AnalysisStats::default(),
            flows: Flows::new(FlowConfig::default(), &mut Interner::new()),
            links: Vec::new(),
            resolutions: Vec::new(),
            settled: Vec::new(),
            flow_out: FlowOut::default(),
        }
    }

    /// How many times a span counts: its adjusted count when adjusting is on.
    fn weight(&self, adjusted_count: f64) -> f64 {
        if self.config.adjust_for_sampling {
            adjusted_count
        } else {
            1.0
        }
    }

    /// Counts in RED a span that comes without its trace (late, or past the
    /// trace's span limit), weighted by the sampling it states itself.
    fn observe_alone(&mut self, span: &Span) {
        let weight = self.weight(sampling::span_adjusted_count(span));
        self.red.observe(span, weight);
        if weight != 1.0 {
            self.stats.sampled_spans += 1;
        }
    }

    /// The time a finding is detected at: `event_time` for replays, the clock live.
    fn detected_us(&self, event_time: EventTime) -> i64 {
        match &self.detected_at {
            DetectedAt::TraceClose => event_time,
            DetectedAt::Clock(c) => c.now_us(),
        }
    }

    fn analyse(&mut self, mut trace: ClosedTrace, ctx: &mut Context<'_, Anomaly>) {
        self.stats.traces += 1;
        if trace.cause == assembly::CloseCause::Evicted {
            self.stats.evicted_traces += 1;
        }
        // Whether assembly dropped spans past its limit, judged before copies are
        // removed: a span delivered twice (Kafka and collectors deliver at least
        // once) counts once and never makes a trace look oversized.
        let oversized = trace.oversized();
        // A canonical order makes every result independent of arrival order.
        trace.spans.sort_unstable_by_key(|s| (s.start_us, s.span_id, s.service));
        self.stats.duplicate_spans += dag::dedupe(&mut trace.spans) as u64;
        let weight = self.weight(sampling::trace_adjusted_count(&trace.spans));
        for s in &trace.spans {
            self.red.observe(s, weight);
            self.counters.seen(s);
        }
        if weight != 1.0 {
            self.stats.sampled_spans += trace.spans.len() as u64;
        }
        self.stats.spans += trace.spans.len() as u64;
        let detected_at_us = self.detected_us(trace.closes_at);
        // Links from other traces that waited for this one to close.
        let waiting = self.flows.take_waiting(&trace.trace_id);
        let mut consumed = vec![false; trace.spans.len()];
        if !waiting.is_empty() {
            self.apply_waiting(&trace.spans, waiting, &mut consumed, detected_at_us, false, ctx.names);
        }
        let t =
            TraceCtx { spans: &trace.spans, names: ctx.names, detected_at_us, limits: self.config.documents };
        let before = ctx.out.len();
        if oversized {
            // Incomplete by construction: references into the dropped part would
            // all look broken, so only the size is reported.
            detect::oversized(&t, trace.total_spans, self.config.max_spans_per_trace, ctx.out);
        } else {
            let dag = TraceDag::build(&trace.spans);
            let cycles = dag.cycles();
            let mut in_cycle = vec![false; trace.spans.len()];
            for &i in cycles.iter().flatten() {
                in_cycle[i as usize] = true;
            }
            for e in dag.graph.raw_edges() {
                let (p, c) = (&trace.spans[e.source().index()], &trace.spans[e.target().index()]);
                if p.kind == SpanKind::Producer && e.source() != e.target() {
                    consumed[e.source().index()] = true;
                    let destination = if p.destination != Sym(0) { p.destination } else { c.destination };
                    self.flows.observe_hop(destination, c.start_us - p.start_us);
                }
            }
            new_edges(&mut self.recent, &mut self.delta, &mut self.edges).add_trace(&trace.spans, &dag);
            self.graph.add_trace(&trace.spans, &dag, weight);
            self.critical.add_trace(&trace.spans, &dag);
            for i in detect::unconsumed_producers(&trace.spans, &consumed) {
                let path = detect::causal_path(&trace.spans, &dag, i, MAX_LOSS_PATH);
                let trace_spans = trace.spans.len() as u64;
                self.flows.pend(flows::Evidence { path, trace_spans, closes_at: trace.closes_at });
            }
            detect::orphan_references(&t, &dag, ctx.out);
            detect::reference_cycles(&t, &cycles, ctx.out);
            detect::recursive_chains(&t, &dag, &in_cycle, self.config.min_reentries, ctx.out);
            if self.config.min_repeated_calls > 0 {
                repeated_calls::repeated_calls(&t, &dag, self.config.min_repeated_calls, ctx.out);
            }
        }
        for a in &ctx.out[before..] {
            *self.stats.anomalies.entry(a.kind).or_default() += 1;
            self.counters.count(a, ctx.names);
        }
        for s in &trace.spans {
            self.links.extend(Link::of(s));
        }
        self.flows.closed(trace.trace_id, &trace.spans, trace.closes_at, false);
        self.flush_flows(ctx);
    }

    /// A trace read again that an earlier owner already analysed and wrote
    /// (after a rebalance or a crash): nothing is counted again, but what it
    /// still owed is rebuilt: its producers no span consumed wait for their
    /// deadline again, its links consume again, and later spans and links find
    /// it in the closed-trace index.
    pub fn replayed_trace(&mut self, mut trace: ClosedTrace, ctx: &mut Context<'_, Anomaly>) {
        trace.spans.sort_unstable_by_key(|s| (s.start_us, s.span_id, s.service));
        dag::dedupe(&mut trace.spans);
        let detected_at_us = self.detected_us(trace.closes_at);
        let waiting = self.flows.take_waiting(&trace.trace_id);
        let mut consumed = vec![false; trace.spans.len()];
        if !waiting.is_empty() {
            self.apply_waiting(&trace.spans, waiting, &mut consumed, detected_at_us, true, ctx.names);
        }
        if !trace.oversized() {
            let dag = TraceDag::build(&trace.spans);
            if let Some(calls) = self.replayed_calls.as_mut() {
                calls.add_trace(&trace.spans, &dag);
            }
            for e in dag.graph.raw_edges() {
                if e.source() != e.target() {
                    consumed[e.source().index()] = true;
                }
            }
            for i in detect::unconsumed_producers(&trace.spans, &consumed) {
                let path = detect::causal_path(&trace.spans, &dag, i, MAX_LOSS_PATH);
                let trace_spans = trace.spans.len() as u64;
                self.flows.pend(flows::Evidence { path, trace_spans, closes_at: trace.closes_at });
            }
        }
        for s in &trace.spans {
            self.links.extend(Link::of(s).map(|l| Link { replayed: true, ..l }));
        }
        self.flows.closed(trace.trace_id, &trace.spans, trace.closes_at, true);
        self.flush_flows(ctx);
    }
}

impl Analyzer {
    /// The edges added since the last call (requires deltas to be on: `delta = Some(..)`);
    /// they are folded into `edges` as they are handed out.
    pub fn take_delta(&mut self) -> Edges {
        let delta = self.delta.as_mut().map(std::mem::take).unwrap_or_default();
        self.edges.merge(&delta);
        delta
    }

    /// Hands the service calls added since the last call to `f` (source, target,
    /// calls; edges are tapped only with `recent = Some(..)`) and moves them on to
    /// the delta or the totals.
    pub fn settle_recent(&mut self, mut f: impl FnMut(Sym, Sym, u64)) {
        let Some(recent) = self.recent.as_mut() else { return };
        if recent.is_empty() {
            return;
        }
        for (e, stats) in &recent.services {
            f(e.source, e.target, stats.calls);
        }
        match &mut self.delta {
            Some(d) => d.merge(recent),
            None => self.edges.merge(recent),
        }
        recent.clear();
    }
}

/// Where new edges go: the recent ones when they are tapped, else the delta when a
/// sink takes deltas, else the totals.
fn new_edges<'a>(
    recent: &'a mut Option<Edges>,
    delta: &'a mut Option<Edges>,
    edges: &'a mut Edges,
) -> &'a mut Edges {
    match (recent, delta) {
        (Some(r), _) => r,
        (None, Some(d)) => d,
        (None, None) => edges,
    }
}

impl Operator for Analyzer {
    type In = Assembled;
    type Out = Anomaly;

    fn process_element(&mut self, input: Assembled, ctx: &mut Context<'_, Anomaly>) {
        match input {
            Assembled::Trace(t) => self.analyse(t, ctx),
            Assembled::Unbuffered { span, late: true } => {
                self.late_span(span, ctx);
            }
            Assembled::Unbuffered { span, late: false } => {
                self.observe_alone(&span);
                self.stats.spans += 1;
                self.stats.overflow_spans += 1;
            }
        }
    }
}
