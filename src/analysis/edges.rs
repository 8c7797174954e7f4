//! Dependency edges. An edge is one reference from a child span to a parent span
//! of another service: one call from the parent's service to the child's, under
//! the reference's relation, an error when the child is an error span, with the
//! child span's duration. Edges are kept at service and at operation level.
//!
//! A client span that no server span answers called a peer that sends no spans
//! (a database, a cache, an outside API): when it names the peer (its `peer`,
//! from `peer.service`, `db.name`, ... in the configured order) that is one call
//! from its service to a *virtual node* of that name, kept apart from the
//! service edges so a peer never merges with a traced service of the same name.
//!
//! Messaging hops are kept beside them: a producer span referenced by another
//! span is one message from the producer's service through its destination to
//! the referencing span's service, with the hop latency (referencing span's start
//! minus the producer span's start, floored at zero).

use super::dag::TraceDag;
use crate::model::{Interner, RefKind, Span, SpanKind, Sym};
use rustc_hash::FxHashMap;
use serde::Serialize;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ServiceEdge {
    pub source: Sym,
    pub target: Sym,
    pub relation: RefKind,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct OperationEdge {
    pub source_service: Sym,
    pub source_operation: Sym,
    pub target_service: Sym,
    pub target_operation: Sym,
    pub relation: RefKind,
}

/// A call from a service to a peer that sent no spans (a virtual node).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VirtualEdge {
    pub source: Sym,
    pub peer: Sym,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MessageHop {
    pub producer: Sym,
    pub destination: Sym,
    pub consumer: Sym,
}

/// Calls, errors and duration figures (µs) of an edge.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize)]
pub struct CallStats {
    pub calls: u64,
    pub errors: u64,
    pub duration_us_sum: u64,
    pub duration_us_min: u64,
    pub duration_us_max: u64,
    /// Event time (µs) of the first and last call: the calling spans' starts.
    pub first_seen_us: i64,
    pub last_seen_us: i64,
}

impl CallStats {
    fn add(&mut self, error: bool, duration_us: u64, at_us: i64) {
        self.first_seen_us = if self.calls == 0 { at_us } else { self.first_seen_us.min(at_us) };
        self.last_seen_us = if self.calls == 0 { at_us } else { self.last_seen_us.max(at_us) };
        self.duration_us_min =
            if self.calls == 0 { duration_us } else { self.duration_us_min.min(duration_us) };
        self.duration_us_max = self.duration_us_max.max(duration_us);
        self.calls += 1;
        self.errors += u64::from(error);
        self.duration_us_sum += duration_us;
    }

    pub fn merge(&mut self, o: &CallStats) {
        if o.calls == 0 {
            return;
        }
        self.first_seen_us =
            if self.calls == 0 { o.first_seen_us } else { self.first_seen_us.min(o.first_seen_us) };
        self.last_seen_us =
            if self.calls == 0 { o.last_seen_us } else { self.last_seen_us.max(o.last_seen_us) };
        self.duration_us_min =
            if self.calls == 0 { o.duration_us_min } else { self.duration_us_min.min(o.duration_us_min) };
        self.duration_us_max = self.duration_us_max.max(o.duration_us_max);
        self.calls += o.calls;
        self.errors += o.errors;
        self.duration_us_sum += o.duration_us_sum;
    }
}

/// Messages and hop latency figures (µs) of a messaging hop.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize)]
pub struct HopStats {
    pub messages: u64,
    pub hop_latency_us_sum: u64,
    pub hop_latency_us_min: u64,
    pub hop_latency_us_max: u64,
}

impl HopStats {
    pub fn merge(&mut self, o: &HopStats) {
        if o.messages == 0 {
            return;
        }
        self.hop_latency_us_min = if self.messages == 0 {
            o.hop_latency_us_min
        } else {
            self.hop_latency_us_min.min(o.hop_latency_us_min)
        };
        self.hop_latency_us_max = self.hop_latency_us_max.max(o.hop_latency_us_max);
        self.messages += o.messages;
        self.hop_latency_us_sum += o.hop_latency_us_sum;
    }
}

/// The referenced (parent) side of an edge: a span of this trace, or one
/// remembered from a trace that already closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Callee {
    pub service: Sym,
    pub operation: Sym,
    pub destination: Sym,
    pub start_us: i64,
    /// A producer span: the reference is a message from its destination.
    pub producer: bool,
}

impl Callee {
    pub fn of(s: &Span) -> Callee {
        Callee {
            service: s.service,
            operation: s.operation,
            destination: s.destination,
            start_us: s.start_us,
            producer: s.kind == SpanKind::Producer,
        }
    }
}

/// The referencing (child) side of an edge: the calls it counts are its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub service: Sym,
    pub operation: Sym,
    pub destination: Sym,
    pub start_us: i64,
    pub duration_us: u64,
    pub error: bool,
}

impl Caller {
    pub fn of(s: &Span) -> Caller {
        Caller {
            service: s.service,
            operation: s.operation,
            destination: s.destination,
            start_us: s.start_us,
            duration_us: s.duration_us,
            error: s.error,
        }
    }
}

#[derive(Default, Debug, Clone)]
pub struct Edges {
    pub services: FxHashMap<ServiceEdge, CallStats>,
    pub operations: FxHashMap<OperationEdge, CallStats>,
    pub hops: FxHashMap<MessageHop, HopStats>,
    pub virtuals: FxHashMap<VirtualEdge, CallStats>,
}

impl Edges {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.operations.is_empty()
            && self.hops.is_empty()
            && self.virtuals.is_empty()
    }

    pub fn clear(&mut self) {
        self.services.clear();
        self.operations.clear();
        self.hops.clear();
        self.virtuals.clear();
    }

    /// Adds another set of edges (a delta) to these.
    pub fn merge(&mut self, o: &Edges) {
        for (k, v) in &o.services {
            self.services.entry(*k).or_default().merge(v);
        }
        for (k, v) in &o.operations {
            self.operations.entry(*k).or_default().merge(v);
        }
        for (k, v) in &o.hops {
            self.hops.entry(*k).or_default().merge(v);
        }
        for (k, v) in &o.virtuals {
            self.virtuals.entry(*k).or_default().merge(v);
        }
    }

    /// Adds the edges of one trace.
    pub fn add_trace(&mut self, spans: &[Span], dag: &TraceDag) {
        for e in dag.graph.raw_edges() {
            if e.source() == e.target() {
                continue; // a span that references itself calls nobody
            }
            let (p, c) = (&spans[e.source().index()], &spans[e.target().index()]);
            self.add_call(&Callee::of(p), &Caller::of(c), e.weight);
        }
        for (s, _) in unanswered_calls(spans, dag) {
            self.virtuals.entry(VirtualEdge { source: s.service, peer: s.peer }).or_default().add(
                s.error,
                s.duration_us,
                s.start_us,
            );
        }
    }

    /// Adds one reference from `child` to `parent` under `relation`: a call when
    /// their services differ, and a message when the parent is a producer.
    pub fn add_call(&mut self, parent: &Callee, child: &Caller, relation: RefKind) {
        if parent.producer {
            let destination =
                if parent.destination != Sym(0) { parent.destination } else { child.destination };
            let hop = (child.start_us - parent.start_us).max(0) as u64;
            let h = self
                .hops
                .entry(MessageHop { producer: parent.service, destination, consumer: child.service })
                .or_default();
            h.hop_latency_us_min = if h.messages == 0 { hop } else { h.hop_latency_us_min.min(hop) };
            h.hop_latency_us_max = h.hop_latency_us_max.max(hop);
            h.messages += 1;
            h.hop_latency_us_sum += hop;
        }
        if parent.service == child.service {
            return;
        }
        self.services
            .entry(ServiceEdge { source: parent.service, target: child.service, relation })
            .or_default()
            .add(child.error, child.duration_us, child.start_us);
        self.operations
            .entry(OperationEdge {
                source_service: parent.service,
                source_operation: parent.operation,
                target_service: child.service,
                target_operation: child.operation,
                relation,
            })
            .or_default()
            .add(child.error, child.duration_us, child.start_us);
    }

    /// Service edges as report rows, sorted by source, target and relation.
    pub fn service_rows(&self, names: &Interner) -> Vec<ServiceEdgeRow> {
        let mut rows: Vec<ServiceEdgeRow> = self
            .services
            .iter()
            .map(|(k, s)| {
                let mut destinations: Vec<HopRow> = self
                    .hops
                    .iter()
                    .filter(|(h, _)| h.producer == k.source && h.consumer == k.target)
                    .map(|(h, st)| HopRow {
                        destination: names.resolve(h.destination).to_owned(),
                        stats: *st,
                    })
                    .collect();
                destinations.sort_by(|a, b| a.destination.cmp(&b.destination));
                ServiceEdgeRow {
                    source: names.resolve(k.source).to_owned(),
                    target: names.resolve(k.target).to_owned(),
                    relation: k.relation.as_str(),
                    virtual_node: false,
                    stats: *s,
                    destinations,
                }
            })
            .chain(self.virtuals.iter().map(|(k, s)| ServiceEdgeRow {
                source: names.resolve(k.source).to_owned(),
                target: names.resolve(k.peer).to_owned(),
                relation: RefKind::ChildOf.as_str(),
                virtual_node: true,
                stats: *s,
                destinations: Vec::new(),
            }))
            .collect();
        rows.sort_by(|a, b| {
            (&a.source, &a.target, a.relation, a.virtual_node).cmp(&(
                &b.source,
                &b.target,
                b.relation,
                b.virtual_node,
            ))
        });
        rows
    }

    /// Operation edges as report rows, sorted.
    pub fn operation_rows(&self, names: &Interner) -> Vec<OperationEdgeRow> {
        let mut rows: Vec<OperationEdgeRow> = self
            .operations
            .iter()
            .map(|(k, s)| OperationEdgeRow {
                source: names.resolve(k.source_service).to_owned(),
                source_operation: names.resolve(k.source_operation).to_owned(),
                target: names.resolve(k.target_service).to_owned(),
                target_operation: names.resolve(k.target_operation).to_owned(),
                relation: k.relation.as_str(),
                stats: *s,
            })
            .collect();
        rows.sort_by(|a, b| {
            (&a.source, &a.source_operation, &a.target, &a.target_operation, a.relation).cmp(&(
                &b.source,
                &b.source_operation,
                &b.target,
                &b.target_operation,
                b.relation,
            ))
        });
        rows
    }
}

/// The client spans of a trace that name a peer and that nothing answers
/// (with their index): calls to virtual nodes. A child that is a server span or
/// of another service answers (it is an edge of its own already).
pub fn unanswered_calls<'a>(
    spans: &'a [Span],
    dag: &TraceDag,
) -> impl Iterator<Item = (&'a Span, usize)> + 'a {
    let mut answered = vec![false; spans.len()];
    for e in dag.graph.raw_edges() {
        let (p, c) = (&spans[e.source().index()], &spans[e.target().index()]);
        if c.kind == SpanKind::Server || c.service != p.service {
            answered[e.source().index()] = true;
        }
    }
    spans
        .iter()
        .enumerate()
        .filter(move |(i, s)| s.kind == SpanKind::Client && s.peer != Sym(0) && !answered[*i])
        .map(|(i, s)| (s, i))
}

/// One line of `dependencies.ndjson`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ServiceEdgeRow {
    pub source: String,
    pub target: String,
    pub relation: &'static str,
    /// The target is a virtual node: a peer the source called that sent no spans.
    #[serde(rename = "virtual", skip_serializing_if = "std::ops::Not::not")]
    pub virtual_node: bool,
    #[serde(flatten)]
    pub stats: CallStats,
    /// Messaging destinations this edge went through, when it is a messaging edge.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<HopRow>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct HopRow {
    pub destination: String,
    #[serde(flatten)]
    pub stats: HopStats,
}

/// One line of `operation_dependencies.ndjson`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct OperationEdgeRow {
    pub source: String,
    pub source_operation: String,
    pub target: String,
    pub target_operation: String,
    pub relation: &'static str,
    #[serde(flatten)]
    pub stats: CallStats,
}
