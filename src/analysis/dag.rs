//! The DAG of one trace: a node per span, an edge from each referenced span to
//! the span holding the reference (parent → child), several parents allowed.
//! Every walk here is iterative, so a 100,000-deep chain cannot overflow a stack.

use crate::model::{RefKind, Span, SpanId, SpanRef};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use rustc_hash::FxHashMap;

pub struct TraceDag {
    /// Node `i` is span `i` of the trace; edge weights are the reference kinds.
    pub graph: DiGraph<(), RefKind, u32>,
    /// References naming a span of this trace that never arrived: (span, reference).
    pub missing: Vec<(u32, SpanRef)>,
}

/// Removes exact re-deliveries (same span id, service and start) in place, keeping
/// the first; returns how many were removed.
pub fn dedupe(spans: &mut Vec<Span>) -> usize {
    let mut seen: FxHashMap<SpanId, u32> = FxHashMap::default();
    seen.reserve(spans.len());
    let mut keep = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match seen.get(&s.span_id) {
            Some(&j) => {
                let first = &spans[j as usize];
                if first.service == s.service && first.start_us == s.start_us {
                    if keep.is_empty() {
                        keep = vec![true; spans.len()];
                    }
                    keep[i] = false;
                }
            }
            None => {
                seen.insert(s.span_id, i as u32);
            }
        }
    }
    if keep.is_empty() {
        return 0;
    }
    let before = spans.len();
    let mut it = keep.iter();
    spans.retain(|_| *it.next().unwrap_or(&true));
    before - spans.len()
}

impl TraceDag {
    pub fn build(spans: &[Span]) -> TraceDag {
        let mut index: FxHashMap<SpanId, u32> = FxHashMap::default();
        index.reserve(spans.len());
        for (i, s) in spans.iter().enumerate() {
            index.entry(s.span_id).or_insert(i as u32);
        }
        let refs: usize = spans.iter().map(|s| s.refs.len()).sum();
        let mut graph = DiGraph::with_capacity(spans.len(), refs);
        for _ in spans {
            graph.add_node(());
        }
        let mut missing = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            for r in s.local_refs() {
                match index.get(&r.span_id) {
                    Some(&p) => {
                        graph.add_edge(NodeIndex::new(p as usize), NodeIndex::new(i), r.kind);
                    }
                    None => missing.push((i as u32, *r)),
                }
            }
        }
        TraceDag { graph, missing }
    }

    pub fn node(i: u32) -> NodeIndex<u32> {
        NodeIndex::new(i as usize)
    }

    /// Spans that span `i` references (in this trace).
    pub fn parents(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        self.graph.neighbors_directed(Self::node(i), Direction::Incoming).map(|n| n.index() as u32)
    }

    /// Spans that reference span `i`.
    pub fn children(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        self.graph.neighbors_directed(Self::node(i), Direction::Outgoing).map(|n| n.index() as u32)
    }

    pub fn has_children(&self, i: u32) -> bool {
        self.children(i).next().is_some()
    }

    /// Strongly connected groups of spans whose references form a cycle
    /// (including a span that references itself), each sorted.
    pub fn cycles(&self) -> Vec<Vec<u32>> {
        if petgraph::algo::toposort(&self.graph, None).is_ok() {
            return Vec::new();
        }
        let mut out: Vec<Vec<u32>> = petgraph::algo::kosaraju_scc(&self.graph)
            .into_iter()
            .filter(|c| c.len() > 1 || self.graph.contains_edge(c[0], c[0]))
            .map(|c| {
                let mut v: Vec<u32> = c.into_iter().map(|n| n.index() as u32).collect();
                v.sort_unstable();
                v
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TraceId;

    fn span(id: u64, parents: &[u64]) -> Span {
        let trace_id = TraceId::new(0, 1);
        Span {
            trace_id,
            span_id: SpanId(id),
            refs: parents
                .iter()
                .map(|p| SpanRef { trace_id, span_id: SpanId(*p), kind: RefKind::ChildOf })
                .collect(),
            ..Span::default()
        }
    }

    #[test]
    fn builds_edges_and_finds_missing_parents() {
        let spans = vec![span(1, &[]), span(2, &[1]), span(3, &[1, 2]), span(4, &[99])];
        let dag = TraceDag::build(&spans);
        assert_eq!(dag.graph.edge_count(), 3);
        assert_eq!(dag.missing.len(), 1);
        assert_eq!(dag.missing[0].0, 3);
        let mut c: Vec<u32> = dag.children(0).collect();
        c.sort();
        assert_eq!(c, vec![1, 2]);
        assert!(dag.cycles().is_empty());
    }

    #[test]
    fn finds_cycles_and_self_references() {
        let spans = vec![span(1, &[3]), span(2, &[1]), span(3, &[2]), span(4, &[4]), span(5, &[])];
        let dag = TraceDag::build(&spans);
        assert_eq!(dag.cycles(), vec![vec![0, 1, 2], vec![3]]);
    }

    #[test]
    fn deep_chain_does_not_overflow() {
        let n = 100_000u64;
        let spans: Vec<Span> = (1..=n).map(|i| span(i, if i == 1 { &[] } else { &[0] })).collect();
        let spans: Vec<Span> = spans
            .into_iter()
            .enumerate()
            .map(|(i, s)| if i == 0 { s } else { span(i as u64 + 1, &[i as u64]) })
            .collect();
        let dag = TraceDag::build(&spans);
        assert_eq!(dag.graph.edge_count(), (n - 1) as usize);
        assert!(dag.cycles().is_empty());
        // A closed loop over the whole chain is one cycle.
        let mut looped = spans;
        looped[0] = span(1, &[n]);
        assert_eq!(TraceDag::build(&looped).cycles().len(), 1);
    }

    #[test]
    fn dedupe_drops_exact_redeliveries_only() {
        let mut spans = vec![span(1, &[]), span(2, &[1]), span(2, &[1]), span(3, &[1])];
        assert_eq!(dedupe(&mut spans), 1);
        assert_eq!(spans.len(), 3);
        let mut shared = vec![span(1, &[]), span(1, &[])];
        shared[1].start_us = 5; // a shared (Zipkin-style) span id, not a re-delivery
        assert_eq!(dedupe(&mut shared), 0);
    }
}
