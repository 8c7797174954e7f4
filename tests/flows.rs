//! Exact results under real delivery (DESIGN.md: message_loss, duplicates, a trace
//! closes): copies and late spans after a trace closed, slow consumers, message
//! flows across traces through links, and losses resolved after their report.
//! Event time is the only clock: other traffic moves the watermark.

mod common;

use common::{pipeline_with, T0};
use poirot::analysis::anomaly::LossStatus;
use poirot::analysis::{Anomaly, AnomalyKind, Resolution};
use poirot::config::Config;
use poirot::model::RefKind::{self, ChildOf, FollowsFrom};
use poirot::model::SpanKind::{self, Consumer, Internal, Producer, Server};
use poirot::model::{Span, SpanId, SpanRef, TraceId};
use poirot::runtime::{Input, Pipeline};
use std::time::Duration;

/// Drives one pipeline with hand-made spans, collecting what it emits.
struct Run {
    p: Pipeline,
    anomalies: Vec<Anomaly>,
    resolutions: Vec<Resolution>,
}

impl Run {
    fn new(config: &Config) -> Self {
        Run { p: pipeline_with(config), anomalies: Vec::new(), resolutions: Vec::new() }
    }

    /// Span `id` of trace `trace` by `service`, starting at `at_s` seconds for 1 ms,
    /// referencing `(trace, span, relation)`s.
    fn span(
        &mut self,
        trace: u64,
        id: u64,
        service: &str,
        kind: SpanKind,
        at_s: f64,
        refs: &[(u64, u64, RefKind)],
    ) -> Span {
        let names = self.p.names_mut();
        Span {
            trace_id: TraceId::new(0xf1, trace),
            span_id: SpanId(id),
            start_us: T0 + (at_s * 1e6) as i64,
            duration_us: 1000,
            refs: refs
                .iter()
                .map(|&(t, s, kind)| SpanRef { trace_id: TraceId::new(0xf1, t), span_id: SpanId(s), kind })
                .collect(),
            service: names.intern(service),
            operation: names.intern(&format!("{service}-op")),
            destination: if matches!(kind, Producer | Consumer) {
                names.intern("Q")
            } else {
                Default::default()
            },
            kind,
            ..Span::default()
        }
    }

    fn push(&mut self, s: Span) {
        self.p.push(Input::Span { partition: 0, span: s });
        self.collect();
    }

    fn add(
        &mut self,
        trace: u64,
        id: u64,
        service: &str,
        kind: SpanKind,
        at_s: f64,
        refs: &[(u64, u64, RefKind)],
    ) {
        let s = self.span(trace, id, service, kind, at_s, refs);
        self.push(s);
    }

    /// Unrelated traffic up to `until_s` (one span every 5 s, in traces from 1000
    /// up): it moves event time on.
    fn traffic(&mut self, from_s: i64, until_s: i64) {
        let mut t = from_s;
        while t <= until_s {
            self.add(1000 + t as u64, 1, "noise", Internal, t as f64, &[]);
            t += 5;
        }
    }

    fn end(&mut self) {
        self.p.push(Input::End);
        self.collect();
    }

    fn collect(&mut self) {
        self.anomalies.extend(self.p.drain_anomalies());
        self.resolutions.extend(self.p.drain_resolutions());
    }

    fn losses(&self) -> Vec<&Anomaly> {
        self.anomalies.iter().filter(|a| a.kind == AnomalyKind::MessageLoss).collect()
    }

    fn kinds(&self) -> Vec<AnomalyKind> {
        self.anomalies.iter().map(|a| a.kind).collect()
    }

    /// Service edges as (source, target, relation, calls).
    fn edges(&self) -> Vec<(String, String, &'static str, u64)> {
        let o = self.p.outputs();
        o.edges
            .service_rows(o.names)
            .into_iter()
            .map(|r| (r.source, r.target, r.relation, r.stats.calls))
            .collect()
    }

    /// Messages per (producer, destination, consumer).
    fn hops(&self) -> Vec<(String, String, u64)> {
        let o = self.p.outputs();
        o.edges
            .service_rows(o.names)
            .into_iter()
            .flat_map(|r| {
                let (s, t) = (r.source.clone(), r.target.clone());
                r.destinations.into_iter().map(move |d| (s.clone(), t.clone(), d.stats.messages))
            })
            .collect()
    }
}

fn config_with_deadline(deadline_s: u64) -> Config {
    let mut c = Config::default();
    c.message_loss.min_deadline = Duration::from_secs(deadline_s);
    c
}

#[test]
fn a_copy_after_its_trace_closed_is_recognised_and_not_counted_again() {
    let mut r = Run::new(&Config::default());
    r.add(1, 1, "A", Server, 0.0, &[]);
    r.add(1, 2, "B", Server, 0.001, &[(1, 1, ChildOf)]);
    r.traffic(5, 40);
    let before = r.p.outputs().stats.clone();
    assert_eq!(before.traces, 1 + 5, "trace 1 and the traffic up to 25 s closed (watermark 35 s)");
    let copy = r.span(1, 2, "B", Server, 0.001, &[(1, 1, ChildOf)]);
    r.push(copy);
    r.end();
    let after = r.p.outputs().stats.clone();
    assert_eq!(after.duplicate_spans, before.duplicate_spans + 1);
    assert_eq!(after.late_spans, 0, "a copy is no late span");
    assert_eq!(r.edges(), [("A".into(), "B".into(), "child_of", 1)]);
    let red = r.p.outputs().red.total_calls();
    assert_eq!(red, 10.0, "the copy is not counted in RED");
    assert!(r.anomalies.is_empty(), "{:#?}", r.anomalies);
}

#[test]
fn a_late_span_joins_its_closed_trace_as_an_edge_not_an_orphan() {
    let mut r = Run::new(&Config::default());
    r.add(1, 1, "A", Server, 0.0, &[]);
    r.traffic(5, 40);
    // B's span of trace 1 comes 40 s late, after its trace closed.
    r.add(1, 2, "B", Server, 0.5, &[(1, 1, ChildOf)]);
    r.end();
    assert_eq!(r.edges(), [("A".into(), "B".into(), "child_of", 1)]);
    assert!(r.anomalies.is_empty(), "{:#?}", r.anomalies);
    let o = r.p.outputs();
    assert_eq!((o.stats.late_spans, o.flows.stats.late_joined), (1, 1));
}

#[test]
fn a_slow_consumer_within_the_deadline_is_no_loss_in_its_own_trace_or_another() {
    for delay_s in [45.0, 60.0, 90.0, 119.0] {
        let mut r = Run::new(&Config::default());
        r.add(1, 1, "A", Server, 0.0, &[]);
        r.add(1, 2, "A", Producer, 0.001, &[(1, 1, ChildOf)]);
        r.add(2, 1, "P", Producer, 0.0, &[]);
        // Other traffic moves event time past both traces' close meanwhile.
        r.traffic(5, delay_s as i64);
        // The consumer of trace 1's message, in trace 1, and a consumer that starts
        // trace 3 with a link to trace 2's producer.
        r.add(1, 3, "B", Consumer, delay_s, &[(1, 2, FollowsFrom)]);
        r.add(3, 1, "C", Consumer, delay_s, &[(2, 1, FollowsFrom)]);
        r.traffic(delay_s as i64 + 5, delay_s as i64 + 400);
        r.end();
        assert!(r.losses().is_empty(), "{delay_s} s: {:#?}", r.losses());
        assert!(!r.kinds().contains(&AnomalyKind::OrphanReference), "{delay_s} s: {:#?}", r.anomalies);
        assert_eq!(
            r.edges(),
            [("A".into(), "B".into(), "follows_from", 1), ("P".into(), "C".into(), "follows_from", 1)],
            "{delay_s} s"
        );
        assert_eq!(r.hops(), [("A".into(), "B".into(), 1), ("P".into(), "C".into(), 1)]);
        assert_eq!(r.p.outputs().flows.pending_producers(), 0);
    }
}

#[test]
fn a_loss_is_reported_when_its_deadline_passes_and_resolved_when_its_consumer_comes_after_all() {
    let mut r = Run::new(&config_with_deadline(30));
    r.add(1, 1, "A", Producer, 0.0, &[]);
    r.traffic(5, 35);
    assert!(r.losses().is_empty(), "closed at 10 s + 30 s deadline: not yet at 30 s of watermark");
    r.traffic(40, 50);
    let losses = r.losses();
    assert_eq!(losses.len(), 1, "{:#?}", r.anomalies);
    assert_eq!(losses[0].details.status, Some(LossStatus::Lost));
    // Replays say when, in event time: the deadline (trace closed at 10.001 s + 30 s).
    assert_eq!(losses[0].detected_at, "2026-01-01T00:00:40.001000Z");
    // The consumer shows up after all, starting its own trace with a link.
    r.add(2, 1, "B", Consumer, 55.0, &[(1, 1, FollowsFrom)]);
    r.traffic(60, 90);
    r.end();
    assert_eq!(r.losses().len(), 1, "reported once");
    assert_eq!(r.resolutions.len(), 1, "{:#?}", r.resolutions);
    let res = &r.resolutions[0];
    assert_eq!(
        (res.trace_id.as_str(), res.span_id.as_str()),
        (losses_key(&r).0.as_str(), "0000000000000001")
    );
    assert_eq!((res.consumer.service.as_str(), res.consumer.span_id.as_str()), ("B", "0000000000000001"));
    let o = r.p.outputs();
    let resolved: u64 = o.counters.message_loss_resolved.values().sum();
    let lost: u64 = o.counters.message_loss.values().sum();
    assert_eq!((lost, resolved), (1, 1), "the net loss is 0");
    assert_eq!(r.edges(), [("A".into(), "B".into(), "follows_from", 1)], "the edge still counts");
}

fn losses_key(r: &Run) -> (String, String) {
    let l = r.losses()[0];
    (l.trace_id.clone(), l.span_id.clone())
}

#[test]
fn a_truly_lost_message_is_reported_once_even_with_traffic_going_on() {
    let mut r = Run::new(&config_with_deadline(30));
    r.add(1, 1, "A", Producer, 0.0, &[]);
    r.traffic(5, 300);
    r.end();
    assert_eq!(r.losses().len(), 1);
    assert!(r.resolutions.is_empty());
}

#[test]
fn at_the_end_of_input_every_pending_producer_is_lost() {
    let mut r = Run::new(&Config::default());
    r.add(1, 1, "A", Producer, 0.0, &[]);
    r.traffic(5, 20);
    assert!(r.losses().is_empty(), "pending: its deadline is 2 minutes after its trace closed");
    r.end();
    let losses = r.losses();
    assert_eq!(losses.len(), 1);
    // Decided by the input's end: the document says when its trace closed.
    assert_eq!(losses[0].detected_at, "2026-01-01T00:00:10.001000Z");
}

/// 40 producers of 40 traces, one batch consumer linking all of them.
fn batch(consumer_first: bool) -> Run {
    let mut r = Run::new(&Config::default());
    let links: Vec<(u64, u64, RefKind)> = (1..=40).map(|t| (t, 7, FollowsFrom)).collect();
    let consumer = r.span(100, 1, "Batch", Consumer, 2.0, &links);
    if consumer_first {
        r.push(consumer.clone());
    }
    for t in 1..=40u64 {
        let service = if t % 2 == 0 { "Even" } else { "Odd" };
        r.add(t, 7, service, Producer, t as f64 * 0.01, &[]);
    }
    if !consumer_first {
        r.traffic(5, 30); // every producer's trace closes and waits
        r.push(consumer);
    }
    r.traffic(35, 200);
    r.end();
    r
}

#[test]
fn a_batch_consumer_linking_40_producers_of_40_traces_consumes_them_all_in_any_order() {
    for consumer_first in [false, true] {
        let r = batch(consumer_first);
        assert!(r.anomalies.is_empty(), "consumer first: {consumer_first}: {:#?}", r.anomalies);
        assert_eq!(
            r.edges(),
            [
                ("Even".into(), "Batch".into(), "follows_from", 20),
                ("Odd".into(), "Batch".into(), "follows_from", 20)
            ]
        );
        assert_eq!(r.hops(), [("Even".into(), "Batch".into(), 20), ("Odd".into(), "Batch".into(), 20)]);
        let f = &r.p.outputs().flows.stats;
        assert_eq!((f.links, f.links_resolved, f.links_unresolved), (40, 40, 0));
    }
}

#[test]
fn a_cross_trace_child_of_is_an_edge_under_child_of() {
    let mut r = Run::new(&Config::default());
    r.add(1, 1, "A", Server, 0.0, &[]);
    r.add(2, 1, "B", Server, 0.5, &[(1, 1, ChildOf)]);
    r.end();
    assert_eq!(r.edges(), [("A".into(), "B".into(), "child_of", 1)]);
    assert!(r.anomalies.is_empty(), "{:#?}", r.anomalies);
}

#[test]
fn a_link_to_a_trace_that_never_comes_is_counted_unresolved() {
    let mut r = Run::new(&Config::default());
    r.add(2, 1, "B", Consumer, 0.0, &[(1, 9, FollowsFrom)]);
    r.traffic(5, 30);
    r.end();
    assert!(r.anomalies.is_empty(), "not an orphan in its own trace: {:#?}", r.anomalies);
    let f = &r.p.outputs().flows.stats;
    assert_eq!((f.links, f.links_resolved, f.links_unresolved), (1, 0, 1));
}

#[test]
fn results_do_not_depend_on_arrival_order() {
    // Producers, same-trace and cross-trace consumers, a lost message, a late span.
    let build = |r: &mut Run| -> Vec<Span> {
        vec![
            r.span(1, 1, "A", Server, 0.0, &[]),
            r.span(1, 2, "A", Producer, 0.1, &[(1, 1, ChildOf)]),
            r.span(1, 3, "B", Consumer, 0.2, &[(1, 2, FollowsFrom)]),
            r.span(1, 4, "A", Producer, 0.3, &[(1, 1, ChildOf)]),
            r.span(2, 1, "C", Consumer, 1.0, &[(1, 4, FollowsFrom), (3, 1, FollowsFrom)]),
            r.span(3, 1, "D", Producer, 0.5, &[]),
            r.span(4, 1, "E", Producer, 0.7, &[]),
            r.span(5, 1, "F", Server, 1.5, &[(1, 1, ChildOf)]),
        ]
    };
    let mut results = Vec::new();
    for rotation in 0..8 {
        let mut r = Run::new(&Config::default());
        let mut spans = build(&mut r);
        spans.rotate_left(rotation);
        if rotation % 2 == 1 {
            spans.reverse();
        }
        for s in spans {
            r.push(s);
        }
        r.end();
        let mut anomalies: Vec<(AnomalyKind, String, String)> =
            r.anomalies.iter().map(|a| (a.kind, a.trace_id.clone(), a.span_id.clone())).collect();
        anomalies.sort();
        results.push((r.edges(), r.hops(), anomalies));
    }
    assert_eq!(results[0].2.len(), 1, "only E's message is lost: {:?}", results[0].2);
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
}

#[test]
fn the_closed_trace_index_stays_within_its_bytes_and_counts_evictions() {
    let mut c = Config::default();
    c.assembly.max_closed_bytes = 10_000;
    let mut r = Run::new(&c);
    for t in 0..200u64 {
        r.add(t + 1, 1, "A", Server, t as f64, &[]);
        r.add(t + 1, 2, "B", Server, t as f64 + 0.001, &[(t + 1, 1, ChildOf)]);
    }
    let f = r.p.outputs().flows;
    assert!(f.closed_bytes() <= 10_000, "{}", f.closed_bytes());
    assert!(f.closed_traces() > 10, "{}", f.closed_traces());
    assert!(f.stats.evicted_closed > 0);
    assert_eq!(poirot::analysis::flows::INDEXED_SPAN_BYTES, 16);
}

#[test]
fn a_link_to_a_trace_not_seen_yet_waits_for_it() {
    // The consumer's trace closes first (its producer's trace comes 30 s later in
    // event time, on another path): the link waits for it and consumes it.
    let mut r = Run::new(&Config::default());
    r.add(2, 1, "B", Consumer, 0.0, &[(1, 7, FollowsFrom)]);
    r.traffic(5, 30);
    r.add(1, 7, "A", Producer, 31.0, &[]);
    r.traffic(35, 200);
    r.end();
    assert!(r.losses().is_empty(), "{:#?}", r.anomalies);
    assert_eq!(r.edges(), [("A".into(), "B".into(), "follows_from", 1)]);
    let f = &r.p.outputs().flows.stats;
    assert_eq!((f.links, f.links_resolved, f.links_unresolved), (1, 1, 0));
}

#[test]
fn a_late_producer_whose_consumer_linked_it_before_it_arrived_is_no_loss() {
    let mut r = Run::new(&Config::default());
    r.add(1, 1, "A", Server, 0.0, &[]);
    r.add(2, 1, "B", Consumer, 1.0, &[(1, 7, FollowsFrom)]);
    r.traffic(5, 40); // both traces close; the link waits for span 7
    r.add(1, 7, "A", Producer, 0.5, &[(1, 1, ChildOf)]); // the producer, late
    r.traffic(45, 400);
    r.end();
    assert!(r.losses().is_empty(), "{:#?}", r.anomalies);
    assert_eq!(r.edges(), [("A".into(), "B".into(), "follows_from", 1)]);
}

#[test]
fn a_closed_trace_stays_joinable_while_its_producer_waits_past_the_retention() {
    let mut c = Config::default();
    c.assembly.closed_retention = Duration::from_secs(30);
    let mut r = Run::new(&c);
    r.add(1, 1, "A", Producer, 0.0, &[]);
    r.traffic(5, 100);
    // 100 s later: past the 30 s retention, within the 2-minute deadline.
    r.add(2, 1, "B", Consumer, 100.0, &[(1, 1, FollowsFrom)]);
    r.traffic(105, 400);
    r.end();
    assert!(r.losses().is_empty(), "{:#?}", r.anomalies);
    assert_eq!(r.edges(), [("A".into(), "B".into(), "follows_from", 1)]);
    assert!(r.p.outputs().flows.closed_traces() < 20, "the rest expired");
}
