//! Analyses of closed traces: the trace DAG, RED metrics, dependency edges and
//! anomaly detection, run by the [`Analyzer`] operator.

pub mod anomaly;
pub mod assembly;
pub mod dag;
pub mod detect;
pub mod edges;
pub mod outputs;
pub mod red;
pub mod service_graph;

pub use anomaly::{Anomaly, AnomalyKind, DocLimits};
pub use assembly::{Assembled, AssemblyConfig, ClosedTrace, TraceAssembler};
pub use dag::TraceDag;
pub use edges::Edges;
pub use outputs::{FinishedTrace, InputStats, Outputs};
pub use red::Red;
pub use service_graph::ServiceGraph;

use crate::dataflow::{Clock, Context, Operator};
use crate::model::{Interner, Span, SpanKind, Sym};
use anomaly::TraceCtx;
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
pub struct AnalysisConfig {
    /// Re-entries of a service that make a recursive chain (2: A→B→A→B→A).
    pub min_reentries: u32,
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
            max_spans_per_trace: AssemblyConfig::default().max_spans_per_trace,
            max_series: 10_000,
            max_names: 100_000,
            max_name_bytes: crate::model::DEFAULT_MAX_NAME_BYTES,
            documents: DocLimits::default(),
        }
    }
}

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
    pub anomalies: BTreeMap<AnomalyKind, u64>,
}

/// Anomalies by kind and service, and lost messages by producer service and
/// destination: the labelled anomaly counters. Every series starts at 0 when its
/// service (or producer and destination) is first seen, so `increase()` and alerts
/// see the first anomaly too. Capped like RED: past `max_series` label sets, new
/// ones count under `__overflow__`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnomalyCounters {
    pub by_service: BTreeMap<(AnomalyKind, Sym), u64>,
    pub message_loss: BTreeMap<(Sym, Sym), u64>,
    services: FxHashSet<Sym>,
    producers: FxHashSet<(Sym, Sym)>,
    max_series: usize,
    overflow: Sym,
}

impl AnomalyCounters {
    pub fn with_limit(max_series: usize, overflow: Sym) -> Self {
        AnomalyCounters { max_series, overflow, ..AnomalyCounters::default() }
    }

    /// Starts the series of a span's service (and of its producer and destination) at 0.
    fn seen(&mut self, s: &Span) {
        let full = |n: usize, max: usize| max > 0 && n >= max;
        if !self.services.contains(&s.service)
            && !full(self.by_service.len() + AnomalyKind::ALL.len(), self.max_series)
        {
            self.services.insert(s.service);
            for kind in AnomalyKind::ALL {
                self.by_service.entry((kind, s.service)).or_insert(0);
            }
        }
        if s.kind == SpanKind::Producer {
            let pair = (s.service, s.destination);
            if !self.producers.contains(&pair) && !full(self.message_loss.len(), self.max_series) {
                self.producers.insert(pair);
                self.message_loss.entry(pair).or_insert(0);
            }
        }
    }

    fn count(&mut self, a: &Anomaly, names: &Interner) {
        let service = names.get(&a.service).unwrap_or(self.overflow);
        let full = |n: usize| self.max_series > 0 && n >= self.max_series;
        let key = (a.kind, service);
        let key = if full(self.by_service.len()) && !self.by_service.contains_key(&key) {
            (a.kind, self.overflow)
        } else {
            key
        };
        *self.by_service.entry(key).or_default() += 1;
        if a.kind == AnomalyKind::MessageLoss {
            let destination = a.details.destination.as_deref().and_then(|d| names.get(d)).unwrap_or(Sym(0));
            let key = (service, destination);
            let key = if full(self.message_loss.len()) && !self.message_loss.contains_key(&key) {
                (self.overflow, self.overflow)
            } else {
                key
            };
            *self.message_loss.entry(key).or_default() += 1;
        }
    }
}

/// The operator that turns closed traces into RED, edges and anomalies.
pub struct Analyzer {
    config: AnalysisConfig,
    detected_at: DetectedAt,
    pub red: Red,
    /// Client/server request metrics (live only: not part of the replay files).
    pub graph: ServiceGraph,
    pub counters: AnomalyCounters,
    pub edges: Edges,
    /// When on, closed traces add their edges here instead of to `edges`, and
    /// [`Analyzer::take_delta`] moves them into `edges`: one pass per trace either way.
    pub delta: Option<Edges>,
    pub stats: AnalysisStats,
}

impl Analyzer {
    /// `overflow` is the interned [`red::OVERFLOW`]: the name of the series past the limits.
    pub fn new(config: AnalysisConfig, detected_at: DetectedAt, overflow: Sym) -> Self {
        Analyzer {
            config,
            detected_at,
            red: Red::with_limit(config.max_series, overflow),
            graph: ServiceGraph::with_limit(config.max_series, overflow),
            counters: AnomalyCounters::with_limit(config.max_series, overflow),
            edges: Edges::default(),
            delta: None,
            stats: AnalysisStats::default(),
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
        for s in &trace.spans {
            self.red.observe(s);
            self.counters.seen(s);
        }
        self.stats.spans += trace.spans.len() as u64;
        let detected_at_us = match &self.detected_at {
            DetectedAt::TraceClose => trace.closes_at,
            DetectedAt::Clock(c) => c.now_us(),
        };
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
            match self.delta.as_mut() {
                Some(d) => d.add_trace(&trace.spans, &dag),
                None => self.edges.add_trace(&trace.spans, &dag),
            }
            self.graph.add_trace(&trace.spans, &dag);
            detect::message_loss(&t, &dag, ctx.out);
            detect::orphan_references(&t, &dag, ctx.out);
            detect::reference_cycles(&t, &cycles, ctx.out);
            detect::recursive_chains(&t, &dag, &in_cycle, self.config.min_reentries, ctx.out);
        }
        for a in &ctx.out[before..] {
            *self.stats.anomalies.entry(a.kind).or_default() += 1;
            self.counters.count(a, ctx.names);
        }
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
}

impl Operator for Analyzer {
    type In = Assembled;
    type Out = Anomaly;

    fn process_element(&mut self, input: Assembled, ctx: &mut Context<'_, Anomaly>) {
        match input {
            Assembled::Trace(t) => self.analyse(t, ctx),
            Assembled::Unbuffered { span, late } => {
                self.red.observe(&span);
                self.stats.spans += 1;
                if late {
                    self.stats.late_spans += 1;
                } else {
                    self.stats.overflow_spans += 1;
                }
            }
        }
    }
}
