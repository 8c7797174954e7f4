//! The anomaly detectors and edges against DESIGN.md's definitions, on hand-built traces.

mod common;

use poirot::runtime::Input;

use common::{analyse, analyse_with};
use poirot::analysis::AnomalyKind;
use poirot::config::Config;
use poirot::model::RefKind::{ChildOf, FollowsFrom};
use poirot::model::SpanKind::{Consumer, Producer, Server};

#[test]
fn complete_messaging_trace_has_no_anomaly() {
    let (p, anomalies) = analyse(|t| {
        t.span(1, "A", Server, &[]);
        t.span(2, "A", Producer, &[(1, ChildOf)]).destination = t.names.intern("Q");
        t.span(3, "B", Consumer, &[(2, FollowsFrom)]);
        t.span(4, "C", Consumer, &[(2, ChildOf)]);
        t.child(5, "C", 4);
    });
    assert!(anomalies.is_empty(), "{anomalies:#?}");
    assert_eq!(p.outputs().stats.traces, 1);
}

#[test]
fn a_span_delivered_twice_counts_once_and_does_not_make_its_trace_oversized() {
    // Kafka and collectors deliver at least once: the same span may arrive twice.
    let (p, anomalies) = analyse(|t| {
        t.span(1, "A", Server, &[]);
        t.span(2, "A", Producer, &[(1, ChildOf)]).destination = t.names.intern("Q");
        t.span(3, "B", Consumer, &[(2, FollowsFrom)]);
        let copy = t.spans[1].clone();
        t.spans.push(copy);
    });
    assert!(anomalies.is_empty(), "{anomalies:#?}");
    let o = p.outputs();
    assert_eq!((o.stats.traces, o.stats.spans, o.stats.duplicate_spans), (1, 3, 1));
    let names = o.names;
    let edges: Vec<(String, String, u64)> =
        o.edges.service_rows(names).into_iter().map(|r| (r.source, r.target, r.stats.calls)).collect();
    assert_eq!(edges, [("A".to_owned(), "B".to_owned(), 1)], "the producer → consumer edge, once");
}

#[test]
fn unconsumed_producer_is_message_loss() {
    let (_, anomalies) = analyse(|t| {
        t.span(1, "A", Server, &[]);
        t.span(2, "A", Producer, &[(1, ChildOf)]).destination = t.names.intern("SAMPLE_RECEIVED");
        t.span(3, "A", Producer, &[(1, ChildOf)]);
        t.span(4, "B", Consumer, &[(3, FollowsFrom)]);
    });
    assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
    let a = &anomalies[0];
    assert_eq!(a.kind, AnomalyKind::MessageLoss);
    assert_eq!(a.span_id, "0000000000000002");
    assert_eq!(a.trace_id, "0000000000000abc0000000000000001");
    assert_eq!(a.details.destination.as_deref(), Some("SAMPLE_RECEIVED"));
    assert_eq!(a.service, "A");
    assert!(a.summary.contains("SAMPLE_RECEIVED") && a.summary.contains("no span"), "{}", a.summary);
    assert_eq!(a.evidence.span_ids, vec!["0000000000000002"]);
    // The snapshot is the producer's causal path (root, producer); the rest is counted.
    let path: Vec<&str> = a.evidence.trace.iter().map(|s| s.span_id.as_str()).collect();
    assert_eq!(path, ["0000000000000001", "0000000000000002"]);
    assert_eq!(a.evidence.omitted_spans, 2);
    assert_eq!(a.timestamp, "2026-01-01T00:00:00.001000Z");
}

#[test]
fn broken_reference_is_orphan_reference_once_per_span() {
    let (_, anomalies) = analyse(|t| {
        t.span(1, "A", Server, &[]);
        t.span(2, "B", Server, &[(1, ChildOf), (77, FollowsFrom), (78, ChildOf)]);
    });
    assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
    let a = &anomalies[0];
    assert_eq!(a.kind, AnomalyKind::OrphanReference);
    assert_eq!(a.span_id, "0000000000000002");
    assert_eq!(
        a.details.missing_span_ids.as_deref(),
        Some(&["000000000000004d".to_owned(), "000000000000004e".to_owned()][..])
    );
}

#[test]
fn reference_into_another_trace_is_not_an_orphan() {
    let (_, anomalies) = analyse(|t| {
        t.span(1, "A", Server, &[]);
        let other = poirot::model::TraceId::new(9, 9);
        t.span(2, "B", Server, &[(1, ChildOf)]).refs.push(poirot::model::SpanRef {
            trace_id: other,
            span_id: poirot::model::SpanId(5),
            kind: FollowsFrom,
        });
    });
    assert!(anomalies.is_empty(), "{anomalies:#?}");
}

/// A chain of services, each span the child of the previous.
fn chain(services: &[&str]) -> Vec<poirot::analysis::Anomaly> {
    chain_with(&Config::default(), services)
}

fn chain_with(config: &Config, services: &[&str]) -> Vec<poirot::analysis::Anomaly> {
    analyse_with(config, |t| {
        for (i, s) in services.iter().enumerate() {
            let id = i as u64 + 1;
            if i == 0 {
                t.span(id, s, Server, &[]);
            } else {
                t.child(id, s, id - 1);
            }
        }
    })
    .1
}

#[test]
fn two_reentries_make_a_recursive_chain() {
    let anomalies = chain(&["A", "B", "A", "B", "A"]);
    assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
    let a = &anomalies[0];
    assert_eq!(a.kind, AnomalyKind::RecursiveChain);
    assert_eq!(a.details.reentries, Some(2));
    assert_eq!(a.details.cycle.as_deref(), Some(&["A".to_owned(), "B".to_owned()][..]));
    assert_eq!(a.details.chain.as_ref().map(|c| c.join(">")).as_deref(), Some("A>B>A>B>A"));
    assert_eq!(a.span_id, "0000000000000005", "the span that re-entered A the second time");
}

#[test]
fn fewer_reentries_or_nesting_are_not_recursion() {
    assert!(chain(&["A", "B", "A", "B"]).is_empty(), "each service re-entered once");
    assert!(chain(&["A", "A", "A", "B", "B", "A"]).is_empty(), "nested spans of one service");
    assert!(chain(&["A", "B", "C", "D", "E"]).is_empty());
}

#[test]
fn min_reentries_is_configurable() {
    let mut c = Config::default();
    c.anomalies.min_reentries = 1;
    let anomalies = chain_with(&c, &["A", "B", "A"]);
    assert_eq!(anomalies.len(), 1);
    assert_eq!(anomalies[0].details.reentries, Some(1));
}

#[test]
fn one_anomaly_per_trace_and_cycle() {
    // The same A-B loop on two branches, and a separate C-D loop.
    let (_, anomalies) = analyse(|t| {
        t.span(1, "R", Server, &[]);
        let mut id = 10;
        for services in [["A", "B", "A", "B", "A", "B", "A"], ["B", "A", "B", "A", "B", "A", "B"]] {
            let mut parent = 1;
            for s in services {
                id += 1;
                t.child(id, s, parent);
                parent = id;
            }
        }
        let mut parent = 1;
        for s in ["C", "D", "C", "D", "C"] {
            id += 1;
            t.child(id, s, parent);
            parent = id;
        }
    });
    let mut cycles: Vec<(String, u32)> = anomalies
        .iter()
        .map(|a| {
            assert_eq!(a.kind, AnomalyKind::RecursiveChain);
            (
                a.details.cycle.as_ref().map(|c| c.join(",")).unwrap_or_default(),
                a.details.reentries.unwrap_or(0),
            )
        })
        .collect();
    cycles.sort();
    assert_eq!(cycles, vec![("A,B".to_owned(), 3), ("C,D".to_owned(), 2)]);
}

#[test]
fn three_service_loop() {
    let anomalies = chain(&["A", "B", "C", "A", "B", "C", "A"]);
    assert_eq!(anomalies.len(), 1);
    assert_eq!(anomalies[0].details.cycle.as_ref().map(|c| c.join(",")).as_deref(), Some("A,B,C"));
    assert_eq!(anomalies[0].details.reentries, Some(2));
}

#[test]
fn reference_cycles_and_self_references() {
    let (_, anomalies) = analyse(|t| {
        t.span(1, "A", Server, &[(3, ChildOf)]);
        t.child(2, "B", 1);
        t.child(3, "C", 2);
        t.span(4, "D", Server, &[(4, FollowsFrom)]);
        t.span(5, "E", Server, &[]);
    });
    let mut kinds: Vec<_> =
        anomalies.iter().map(|a| (a.kind, a.span_id.clone(), a.evidence.span_ids.len())).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            (AnomalyKind::ReferenceCycle, "0000000000000001".to_owned(), 3),
            (AnomalyKind::ReferenceCycle, "0000000000000004".to_owned(), 1),
        ]
    );
    assert!(anomalies.iter().any(|a| a.summary.contains("references itself")));
}

#[test]
fn edges_count_calls_between_services_per_relation() {
    let (p, _) = analyse(|t| {
        t.span(1, "frontend", Server, &[]);
        t.child(2, "frontend", 1); // same service: not an edge
        t.child(3, "driver", 2).error = true;
        t.child(4, "driver", 2);
        t.span(5, "redis", Server, &[(3, ChildOf), (4, FollowsFrom)]); // two parents, two edges
    });
    let rows = p.outputs().edges.service_rows(p.names());
    let got: Vec<(String, String, &str, u64, u64)> = rows
        .iter()
        .map(|r| (r.source.clone(), r.target.clone(), r.relation, r.stats.calls, r.stats.errors))
        .collect();
    assert_eq!(
        got,
        vec![
            ("driver".into(), "redis".into(), "child_of", 1, 0),
            ("driver".into(), "redis".into(), "follows_from", 1, 0),
            ("frontend".into(), "driver".into(), "child_of", 2, 1),
        ]
    );
    let ops = p.outputs().edges.operation_rows(p.names());
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[2].source_operation, "frontend-op");
}

#[test]
fn messaging_hops_carry_destination_and_latency() {
    let (p, _) = analyse(|t| {
        t.span(1, "A", Server, &[]);
        t.span(2, "A", Producer, &[(1, ChildOf)]).destination = t.names.intern("Q");
        t.span(3, "B", Consumer, &[(2, FollowsFrom)]);
    });
    let rows = p.outputs().edges.service_rows(p.names());
    assert_eq!(rows.len(), 1);
    let hop = &rows[0].destinations[0];
    assert_eq!(hop.destination, "Q");
    assert_eq!(hop.stats.messages, 1);
    assert_eq!(hop.stats.hop_latency_us_sum, 1000, "consumer starts 1 ms after the producer");
}

#[test]
fn every_span_counts_for_red_once() {
    let (p, _) = analyse(|t| {
        t.span(1, "A", Server, &[]);
        t.child(2, "B", 1).error = true;
        let dup = t.spans[1].clone();
        t.spans.push(dup); // a re-delivery
    });
    assert_eq!(p.outputs().red.total_calls(), 2.0);
    assert_eq!(p.outputs().stats.duplicate_spans, 1);
    let text = poirot::sink::prometheus::render_red(&p.outputs());
    assert!(text.contains("service_name=\"B\",span_name=\"B-op\",span_kind=\"SPAN_KIND_INTERNAL\",status_code=\"STATUS_CODE_ERROR\"} 1"), "{text}");
}

#[test]
fn edge_deltas_add_up_to_the_same_totals() {
    let build = |t: &mut common::TraceBuilder<'_>| {
        t.span(1, "A", Server, &[]);
        t.span(2, "A", Producer, &[(1, ChildOf)]).destination = t.names.intern("Q");
        t.span(3, "B", Consumer, &[(2, FollowsFrom)]).error = true;
        t.child(4, "C", 3);
    };
    let (direct, _) = analyse(build);
    let mut p = common::pipeline();
    p.enable_deltas();
    for trace in 1..=3u64 {
        let mut t = common::TraceBuilder::new(p.names_mut(), trace);
        build(&mut t);
        let spans = std::mem::take(&mut t.spans);
        for s in spans {
            p.push(Input::Span { partition: 0, span: s });
        }
        if trace == 2 {
            p.push(Input::End);
            let (delta, _) = p.take_finished();
            assert!(!delta.is_empty());
        }
    }
    p.push(Input::End);
    let _ = p.take_finished();
    let rows = p.outputs().edges.service_rows(p.names());
    let one = direct.outputs().edges.service_rows(direct.names());
    assert_eq!(rows.len(), one.len());
    for (r, o) in rows.iter().zip(&one) {
        assert_eq!(
            (&r.source, &r.target, r.stats.calls, r.stats.errors),
            (&o.source, &o.target, 3 * o.stats.calls, 3 * o.stats.errors)
        );
        assert_eq!(
            r.destinations.first().map(|d| d.stats.messages),
            o.destinations.first().map(|d| 3 * d.stats.messages)
        );
    }
}

#[test]
fn anomaly_and_message_loss_series_start_at_zero_when_first_seen() {
    // A message that was consumed: no anomaly, but the series an alert's increase()
    // needs already exist at 0, so the first loss later on is seen as an increase.
    let (p, found) = analyse(|t| {
        t.span(1, "A", Server, &[]);
        t.span(2, "A", Producer, &[(1, ChildOf)]).destination = t.names.intern("Q");
        t.span(3, "B", Consumer, &[(2, FollowsFrom)]);
    });
    assert!(found.is_empty(), "{found:?}");
    let mut e = poirot::sink::exposition::Exposition::new(poirot::sink::exposition::ExpoFormat::Text);
    poirot::sink::prometheus::render_into(&p.outputs(), &mut e);
    let text = e.finish();
    assert!(
        text.contains("poirot_message_loss_total{producer_service=\"A\",destination=\"Q\"} 0\n"),
        "{text}"
    );
    for kind in ["message_loss", "recursive_chain", "orphan_reference"] {
        for service in ["A", "B"] {
            let line = format!("poirot_anomalies_total{{kind=\"{kind}\",service=\"{service}\"}} 0\n");
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
    }
}
