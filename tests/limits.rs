//! Hostile shapes: huge traces, deep chains, self references. No crash, bounded memory.

mod common;

use poirot::runtime::Input;

use common::{pipeline_with, TraceBuilder};
use poirot::analysis::AnomalyKind;
use poirot::config::Config;
use poirot::model::RefKind::ChildOf;
use poirot::model::SpanKind::Server;

#[test]
fn a_million_span_trace_is_oversized_with_bounded_memory() {
    let mut config = Config::default();
    config.assembly.max_spans_per_trace = 10_000;
    let mut p = pipeline_with(&config);
    let n = 1_000_000u64;
    let mut template = TraceBuilder::new(p.names_mut(), 7);
    template.span(1, "A", Server, &[]);
    let root = template.spans.pop().expect("span");
    let mut max_buffered = 0;
    for i in 1..=n {
        let mut s = root.clone();
        s.span_id = poirot::model::SpanId(i);
        if i > 1 {
            s.refs.push(poirot::model::SpanRef {
                trace_id: s.trace_id,
                span_id: poirot::model::SpanId(i - 1),
                kind: ChildOf,
            });
        }
        p.push(Input::Span { partition: 0, span: s });
        max_buffered = max_buffered.max(p.outputs().buffered_spans);
    }
    p.push(Input::End);
    let anomalies: Vec<_> = p.drain_anomalies().collect();
    assert_eq!(max_buffered, 10_000, "the trace never holds more than its limit");
    assert_eq!(anomalies.len(), 1);
    assert_eq!(anomalies[0].kind, AnomalyKind::OversizedTrace);
    assert_eq!(anomalies[0].details.span_count, Some(n));
    assert_eq!(anomalies[0].details.span_limit, Some(10_000));
    assert_eq!(p.outputs().red.total_calls(), n as f64, "every span still counts for RED");
    assert!(anomalies[0].evidence.trace.len() <= poirot::analysis::anomaly::SNAPSHOT_LIMIT);
}

#[test]
fn a_100k_deep_alternating_chain_is_one_recursive_chain() {
    let mut config = Config::default();
    config.assembly.max_spans_per_trace = 200_000;
    let mut p = pipeline_with(&config);
    let mut t = TraceBuilder::new(p.names_mut(), 8);
    let n = 100_000u64;
    t.span(1, "A", Server, &[]);
    for i in 2..=n {
        t.child(i, if i % 2 == 0 { "B" } else { "A" }, i - 1);
    }
    let spans = std::mem::take(&mut t.spans);
    let anomalies = common::run_spans(&mut p, spans);
    assert_eq!(anomalies.len(), 1, "one anomaly per trace and cycle");
    let a = &anomalies[0];
    assert_eq!(a.kind, AnomalyKind::RecursiveChain);
    assert_eq!(a.details.reentries, Some((n / 2 - 1) as u32));
    assert!(a.details.chain.as_ref().is_some_and(|c| c.len() <= 64), "the chain is capped");
    // The path ends at the last re-entry of A (span n - 1); its first n - 1 - 64 services were cut.
    assert_eq!(a.truncated.chain, n - 1 - 64, "and the document says how much of it was cut");
    assert_eq!(p.outputs().edges.service_rows(p.names()).len(), 2);
}

#[test]
fn a_span_referencing_itself_is_a_cycle_not_a_hang() {
    let (_, anomalies) = common::analyse(|t| {
        t.span(1, "A", Server, &[(1, ChildOf)]);
    });
    assert_eq!(anomalies.len(), 1);
    assert_eq!(anomalies[0].kind, AnomalyKind::ReferenceCycle);
}

#[test]
fn buffer_budget_closes_traces_early_instead_of_growing() {
    let mut config = Config::default();
    config.assembly.max_spans_per_trace = 10;
    config.assembly.max_buffered_spans = 100;
    let mut p = pipeline_with(&config);
    for trace in 0..1_000u64 {
        let mut t = TraceBuilder::new(p.names_mut(), trace + 1);
        t.span(1, "A", Server, &[]);
        t.child(2, "B", 1);
        for s in std::mem::take(&mut t.spans) {
            p.push(Input::Span { partition: 0, span: s });
            assert!(p.outputs().buffered_spans <= 100);
        }
    }
    p.push(Input::End);
    assert_eq!(p.outputs().stats.traces, 1_000);
    assert!(p.outputs().stats.evicted_traces > 900, "{}", p.outputs().stats.evicted_traces);
    assert_eq!(p.outputs().red.total_calls(), 2_000.0);
}
