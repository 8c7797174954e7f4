//! The pipeline through its one entry point, on a manual clock.

use super::*;
use crate::analysis::flows::applied;
use crate::analysis::{AnalysisConfig, AnomalyKind, AssemblyConfig};
use crate::dataflow::ManualClock;
use crate::model::SpanId;

const S: i64 = 1_000_000;

fn pipeline(clock: &ManualClock) -> Pipeline {
    let config = PipelineConfig {
        assembly: AssemblyConfig { inactivity_gap_us: 2 * S, ..AssemblyConfig::default() },
        watermark: WatermarkConfig { out_of_orderness_us: S, idle_timeout_us: 30 * S },
        analysis: AnalysisConfig::default(),
        flows: Default::default(),
        detected_at: DetectedAt::TraceClose,
        dimensions: Vec::new(),
    };
    Pipeline::new(config, Arc::new(clock.clone()))
}

fn span(trace: u64, end_s: i64) -> Span {
    Span { trace_id: TraceId::new(0, trace), span_id: SpanId(trace), start_us: end_s * S, ..Span::default() }
}

#[test]
fn a_shuffled_partition_moves_with_its_slowest_producer_not_its_spans() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    // Producer 2 is at 10 s, producer 1 already at 100 s: the partition is at 10 s.
    p.push(Input::UpstreamWatermark { partition: 7, offset: 0, producer: 2, event_time: 10 * S });
    p.push(Input::UpstreamWatermark { partition: 7, offset: 1, producer: 1, event_time: 100 * S });
    assert_eq!(p.outputs().watermark, 9 * S, "10 s less the out-of-orderness");
    // A span of producer 2's far-behind trace is on time; a 200 s span does not move time.
    p.push(Input::Shuffled { partition: 7, offset: 2, spans: &mut vec![span(1, 11), span(2, 200)] });
    assert_eq!(p.outputs().watermark, 9 * S);
    assert_eq!(p.outputs().open_traces, 2);
    // Producer 2 catches up: trace 1 (11 s + 2 s gap) closes, trace 2 stays open.
    p.push(Input::UpstreamWatermark { partition: 7, offset: 3, producer: 2, event_time: 100 * S });
    assert_eq!(p.outputs().open_traces, 1);
    assert_eq!(p.analyzer.stats.late_spans, 0);
    // Producer 2 falls silent while producer 1 goes on: after the idle timeout
    // producer 1 alone counts.
    clock.advance(20 * S);
    p.push(Input::UpstreamWatermark { partition: 7, offset: 4, producer: 1, event_time: 300 * S });
    assert_eq!(p.outputs().watermark, 99 * S, "producer 2 still holds it");
    clock.advance(11 * S);
    p.push(Input::Tick);
    assert_eq!(p.outputs().watermark, 299 * S);
    assert_eq!(p.outputs().open_traces, 0);
}

#[test]
fn an_input_partition_whose_records_are_all_re_keyed_holds_nothing_back() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.push(Input::Assigned { partition: 0, gated: false }); // keyed input
    p.push(Input::Assigned { partition: 1, gated: false }); // its records all go to the repartition topic
    p.push(Input::Spans { partition: 0, offset: Some(0), spans: &mut vec![span(1, 50)] });
    p.push(Input::PassedOn { partition: 1, offset: 0 });
    p.push(Input::Spans { partition: 0, offset: Some(1), spans: &mut vec![span(2, 60)] });
    assert_eq!(p.outputs().open_traces, 1, "trace 1 closed by partition 0's own event time");
    assert_eq!(p.committable(1), Some(1));
}

#[test]
fn a_partition_read_again_after_a_rebalance_is_not_late() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.push(Input::Assigned { partition: 0, gated: false });
    p.push(Input::Assigned { partition: 1, gated: false });
    p.push(Input::Spans { partition: 0, offset: Some(0), spans: &mut vec![span(1, 10)] });
    p.push(Input::Spans { partition: 1, offset: Some(0), spans: &mut vec![span(2, 10)] });
    p.push(Input::Spans { partition: 0, offset: Some(1), spans: &mut vec![span(3, 100)] });
    // Partition 1 is taken away with trace 2 open, and given back: it is read
    // again from its committed offset while partition 0 is 90 s ahead.
    p.push(Input::Revoked(1));
    p.push(Input::Assigned { partition: 1, gated: false });
    p.push(Input::Spans { partition: 1, offset: Some(0), spans: &mut vec![span(2, 10)] });
    p.push(Input::Spans { partition: 1, offset: Some(1), spans: &mut vec![span(4, 20)] });
    assert_eq!(p.analyzer.stats.late_spans, 0);
    assert_eq!(
        p.outputs().open_traces,
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
        p.push(Input::Spans { partition: 0, offset: Some(0), spans: &mut vec![span(1, 10)] });
        p.push(Input::Spans { partition: 0, offset: Some(1), spans: &mut vec![span(2, 10)] });
        p.push(Input::Spans { partition: 0, offset: Some(2), spans: &mut vec![second(2, 10)] });
        p.push(Input::Spans { partition: 0, offset: Some(3), spans: &mut vec![second(1, 13)] });
        p.push(Input::Spans { partition: 0, offset: Some(4), spans: &mut vec![span(3, 13)] });
    };
    p.push(Input::Assigned { partition: 0, gated: false });
    read(&mut p);
    // Trace 2 closed (12 s ≤ 12.1 s); trace 1 is open and holds offset 0.
    assert_eq!((p.analyzer.stats.traces, p.outputs().open_traces), (1, 2));
    assert_eq!(p.committable(0), Some(0));
    p.push(Input::Committed { partition: 0, offset: 0 });
    // Taken away and given back: read again from offset 0. Trace 2's copies are
    // dropped; traces 1 and 3 are assembled whole.
    p.push(Input::Revoked(0));
    p.push(Input::Assigned { partition: 0, gated: false });
    read(&mut p);
    assert_eq!(p.input.replayed_spans, 2);
    p.push(Input::End);
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
    p.push(Input::Assigned { partition: 7, gated: true });
    p.push(Input::UpstreamWatermark { partition: 7, offset: 0, producer: 1, event_time: EventTime::MIN });
    p.push(Input::Shuffled { partition: 7, offset: 1, spans: &mut vec![span(1, 10), span(2, 11)] });
    p.push(Input::UpstreamWatermark { partition: 7, offset: 2, producer: 1, event_time: EventTime::MAX });
    assert_eq!(
        p.outputs().watermark,
        10 * S,
        "idle at once, from the spans it saw less the out-of-orderness"
    );
    assert_eq!(p.outputs().open_traces, 2);
    clock.advance(2 * S);
    p.push(Input::Tick);
    assert_eq!(p.outputs().open_traces, 1, "trace 1: 10 s + 2 s gap");
    clock.advance(S);
    p.push(Input::Tick);
    assert_eq!(p.outputs().open_traces, 0, "trace 2: 11 s + 2 s gap");
    assert_eq!(p.analyzer.stats.late_spans, 0);
}

/// A producer span nobody consumes, in trace `trace`, ending at `end_s`.
fn producer(trace: u64, end_s: i64) -> Span {
    Span { kind: crate::model::SpanKind::Producer, ..span(trace, end_s) }
}

#[test]
fn a_closed_trace_with_a_pending_producer_holds_its_offset_until_decided() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.push(Input::Assigned { partition: 0, gated: false });
    p.push(Input::Spans { partition: 0, offset: Some(0), spans: &mut vec![producer(1, 10)] });
    // Other traffic closes trace 1 (10 s + 2 s gap) long before its 2-minute deadline.
    for (i, t) in (20..100).step_by(10).enumerate() {
        p.push(Input::Spans {
            partition: 0,
            offset: Some(i as i64 + 1),
            spans: &mut vec![span(100 + t as u64, t)],
        });
    }
    assert_eq!(p.analyzer.stats.traces, 8, "trace 1 and the traffic up to 80 s closed");
    assert_eq!(p.analyzer.flows.pending_producers(), 1);
    assert_eq!(p.committable(0), Some(0), "its record is still needed: the next owner decides it");
    assert_eq!(p.drain_anomalies().count(), 0);
    // Event time passes its deadline (closed at 12 s + 120 s): reported, and the offset moves on.
    p.push(Input::Spans { partition: 0, offset: Some(20), spans: &mut vec![span(999, 140)] });
    assert_eq!(p.drain_anomalies().map(|a| a.kind).collect::<Vec<_>>(), [AnomalyKind::MessageLoss]);
    assert!(p.committable(0).is_some_and(|o| o > 1), "{:?}", p.committable(0));
}

#[test]
fn a_trace_read_again_after_an_earlier_owner_wrote_it_rebuilds_only_its_pending_producer() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.push(Input::Assigned { partition: 0, gated: false });
    // An earlier owner finished trace 1 (records up to offset 0) and died before deciding it.
    p.skip_finished(0, [(TraceId::new(0, 1), 0)]);
    p.push(Input::Spans { partition: 0, offset: Some(0), spans: &mut vec![producer(1, 10)] });
    p.push(Input::Spans { partition: 0, offset: Some(1), spans: &mut vec![span(2, 30)] });
    let o = p.outputs();
    assert_eq!((o.stats.traces, o.stats.spans, o.input.replayed_spans), (0, 0, 1), "nothing counted again");
    assert_eq!(o.flows.pending_producers(), 1, "but its producer waits for its deadline again");
    assert_eq!(p.committable(0), Some(0));
    p.push(Input::End);
    let losses: Vec<String> = p.drain_anomalies().map(|a| a.trace_id).collect();
    assert_eq!(losses, [TraceId::new(0, 1).to_string()], "decided once, by this owner");
}

/// A link record as another process sends it: span `from` of trace `from`
/// reduced to its `follows_from` reference to producer span `to` of trace `to`;
/// and the link it carries.
fn link_record(p: &mut Pipeline, from: u64, to: u64, start_s: i64) -> (Vec<u8>, Link) {
    let service = p.names_mut().intern("Archiver");
    let span = Span {
        refs: smallvec::smallvec![crate::model::SpanRef {
            trace_id: TraceId::new(0, to),
            span_id: SpanId(to),
            kind: crate::model::RefKind::FollowsFrom,
        }],
        service,
        // The decoder takes only plausible times (the other spans here never leave the process).
        ..span(from, 1_700_000_000 + start_s)
    };
    let link = Link::of(&span).next().expect("a link");
    (crate::decode::jaeger_proto::encode(&span, p.names(), &[]), link)
}

/// Calls counted on service edges since the last call, and what was registered.
fn new_calls(p: &mut Pipeline) -> (u64, Vec<FinishedTrace>) {
    let (delta, finished) = p.take_finished();
    (delta.services.values().map(|c| c.calls).sum(), finished)
}

/// What registers an applied link record read from `partition`: the link, and the producer it consumed.
fn registered(partition: u32, link: &Link) -> [FinishedTrace; 2] {
    let id = |trace_id| FinishedTrace { trace_id, partition, last_offset: i64::MAX };
    [id(applied::link_id(link)), id(applied::consumed_id(link.to.trace_id, link.to.span_id))]
}

/// Producer trace 1 on input partition 0, closed by other traffic.
fn closed_producer(p: &mut Pipeline) {
    p.push(Input::Assigned { partition: 0, gated: false });
    p.push(Input::Spans { partition: 0, offset: Some(0), spans: &mut vec![producer(1, 10)] });
    p.push(Input::Spans { partition: 0, offset: Some(1), spans: &mut vec![span(2, 20)] });
}

#[test]
fn a_link_record_consumes_its_producer_counts_its_edge_and_is_registered_once() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.enable_deltas();
    p.send_links_elsewhere();
    closed_producer(&mut p);
    assert_eq!(p.analyzer.flows.pending_producers(), 1);
    let _ = new_calls(&mut p);
    let (bytes, link) = link_record(&mut p, 50, 1, 15);
    p.push(Input::LinkRecord { partition: 7, offset: 5, bytes: &bytes });
    assert_eq!(p.analyzer.flows.pending_producers(), 0, "consumed through the link");
    let (calls, finished) = new_calls(&mut p);
    assert_eq!(calls, 1, "the producer → consumer edge");
    assert_eq!(finished, registered(7, &link), "registered with that edge");
    assert_eq!(p.committable(7), Some(6));
    // The sender restarted and sent it again: a copy, not applied twice.
    p.push(Input::LinkRecord { partition: 7, offset: 9, bytes: &bytes });
    assert_eq!(new_calls(&mut p), (0, vec![]));
    assert_eq!(p.analyzer.flows.stats.link_copies, 1);
    assert_eq!(p.committable(7), Some(10));
    p.push(Input::End);
    assert_eq!(p.drain_anomalies().count(), 0, "no message loss");
}

#[test]
fn a_trace_read_again_keeps_what_a_registered_link_consumed_and_counts_it_once() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.enable_deltas();
    p.send_links_elsewhere();
    // An earlier owner finished trace 1 and applied the link into it, then its
    // partitions moved: trace 1 is read again (an older trace held the offset).
    let (bytes, link) = link_record(&mut p, 50, 1, 15);
    p.skip_finished(0, [(TraceId::new(0, 1), 0)]);
    p.skip_finished(7, registered(7, &link).map(|f| (f.trace_id, f.last_offset)));
    closed_producer(&mut p);
    assert_eq!(p.analyzer.flows.pending_producers(), 0, "its consumed producer does not wait again");
    // The link's sender died and sent it again, to the new owner.
    p.push(Input::LinkRecord { partition: 7, offset: 12, bytes: &bytes });
    let (calls, finished) = new_calls(&mut p);
    assert_eq!(calls, 0, "written by the earlier owner");
    assert!(finished.iter().all(|f| f.partition == 0), "nothing registered again for 7: {finished:?}");
    assert_eq!(p.committable(7), Some(13));
    p.push(Input::End);
    assert_eq!(p.drain_anomalies().count(), 0);
}

#[test]
fn a_link_record_waiting_for_its_trace_holds_its_offset_until_applied() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.enable_deltas();
    p.send_links_elsewhere();
    p.push(Input::Assigned { partition: 0, gated: false });
    p.push(Input::Spans { partition: 0, offset: Some(0), spans: &mut vec![producer(1, 10)] });
    let (bytes, link) = link_record(&mut p, 50, 1, 15);
    p.push(Input::LinkRecord { partition: 7, offset: 3, bytes: &bytes });
    p.push(Input::LinkRecord { partition: 7, offset: 4, bytes: &bytes }); // a copy, waiting too
    assert_eq!(p.outputs().flows.waiting_links(), 2);
    assert_eq!(p.committable(7), Some(3), "should poirot die now, the next owner reads them again");
    let _ = new_calls(&mut p);
    // Trace 1 closes: the link is applied once, registered, and both offsets go.
    p.push(Input::Spans { partition: 0, offset: Some(1), spans: &mut vec![span(2, 20)] });
    assert_eq!(p.analyzer.flows.pending_producers(), 0);
    let (calls, finished) = new_calls(&mut p);
    assert_eq!(calls, 1);
    let links: Vec<_> = finished.into_iter().filter(|f| f.partition == 7).collect();
    assert_eq!(links, registered(7, &link), "registered once");
    assert_eq!(p.committable(7), Some(5));
}

#[test]
fn a_revoked_partition_drops_its_waiting_link_records_for_the_next_owner() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.send_links_elsewhere();
    p.push(Input::Assigned { partition: 7, gated: false });
    let (bytes, _) = link_record(&mut p, 50, 1, 15);
    p.push(Input::LinkRecord { partition: 7, offset: 3, bytes: &bytes });
    assert_eq!(p.outputs().flows.waiting_links(), 1);
    p.push(Input::Revoked(7));
    assert_eq!(p.outputs().flows.waiting_links(), 0);
    p.push(Input::End);
    assert_eq!(p.analyzer.flows.stats.links_unresolved, 0, "undecided here: the next owner decides");
}

#[test]
fn spans_past_what_an_earlier_owner_wrote_join_their_trace_read_again_and_count_once() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.enable_deltas();
    p.push(Input::Assigned { partition: 0, gated: false });
    // The earlier owner wrote trace 1 with its records up to offset 0 (its root),
    // then died; its child came later, at offset 1.
    p.skip_finished(0, [(TraceId::new(0, 1), 0)]);
    let root = Span { service: p.names_mut().intern("front"), ..span(1, 10) };
    let child = Span {
        span_id: SpanId(11),
        service: p.names_mut().intern("back"),
        refs: smallvec::smallvec![crate::model::SpanRef {
            trace_id: TraceId::new(0, 1),
            span_id: SpanId(1),
            kind: crate::model::RefKind::ChildOf,
        }],
        ..span(1, 11)
    };
    p.push(Input::Spans { partition: 0, offset: Some(0), spans: &mut vec![root] });
    p.push(Input::Spans { partition: 0, offset: Some(1), spans: &mut vec![child] });
    assert_eq!(p.committable(0), Some(0), "both held with the trace");
    p.push(Input::Spans { partition: 0, offset: Some(2), spans: &mut vec![span(2, 30)] });
    let o = p.outputs();
    assert_eq!((o.stats.spans, o.stats.late_spans), (1, 1), "the child alone counts, joined to its trace");
    let (calls, finished) = new_calls(&mut p);
    assert_eq!(calls, 1, "front → back");
    assert!(finished.contains(&FinishedTrace { trace_id: TraceId::new(0, 1), partition: 0, last_offset: 1 }));
    assert_eq!(p.drain_anomalies().count(), 0, "no orphan: its parent is known");
}

#[test]
fn traces_read_again_in_process_consume_again_through_a_copy_of_their_link_and_count_once() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.enable_deltas();
    let (reporter, archiver) = (p.names_mut().intern("Reporter"), p.names_mut().intern("Archiver"));
    let producer = |trace, end_s| Span { service: reporter, ..producer(trace, end_s) };
    let consumer = Span {
        service: archiver,
        refs: smallvec::smallvec![crate::model::SpanRef {
            trace_id: TraceId::new(0, 1),
            span_id: SpanId(1),
            kind: crate::model::RefKind::FollowsFrom,
        }],
        ..span(50, 11)
    };
    let read = |p: &mut Pipeline| {
        p.push(Input::Spans { partition: 0, offset: Some(0), spans: &mut vec![producer(1, 10)] });
        p.push(Input::Spans { partition: 0, offset: Some(1), spans: &mut vec![consumer.clone()] });
        p.push(Input::Spans { partition: 0, offset: Some(2), spans: &mut vec![span(2, 30)] });
    };
    p.push(Input::Assigned { partition: 0, gated: false });
    read(&mut p);
    assert_eq!(p.analyzer.flows.pending_producers(), 0);
    assert_eq!(new_calls(&mut p).0, 1);
    // The partition moves away and back before its offsets were committed: both
    // traces are read again, as written.
    p.push(Input::Revoked(0));
    p.push(Input::Assigned { partition: 0, gated: false });
    p.skip_finished(0, [(TraceId::new(0, 1), 0), (TraceId::new(0, 50), 1)]);
    read(&mut p);
    assert_eq!(p.analyzer.flows.pending_producers(), 0, "the link's copy consumed the producer again");
    assert_eq!(new_calls(&mut p).0, 0, "and counted nothing");
    p.push(Input::End);
    assert_eq!(p.drain_anomalies().count(), 0, "no message loss");
}

#[test]
fn a_partition_given_back_rebuilds_the_pending_producer_of_a_trace_it_held() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    let read = |p: &mut Pipeline| {
        p.push(Input::Spans { partition: 0, offset: Some(0), spans: &mut vec![producer(1, 10)] });
        p.push(Input::Spans { partition: 0, offset: Some(1), spans: &mut vec![span(2, 20)] });
    };
    p.push(Input::Assigned { partition: 0, gated: false });
    read(&mut p);
    assert_eq!((p.analyzer.flows.pending_producers(), p.committable(0)), (1, Some(0)));
    // Taken away before its deadline (eager rebalances take everything) and given back.
    p.push(Input::Revoked(0));
    p.push(Input::Assigned { partition: 0, gated: false });
    read(&mut p);
    assert_eq!(p.analyzer.flows.pending_producers(), 1, "its record read again, not taken for a copy");
    p.push(Input::End);
    let losses: Vec<_> = p.drain_anomalies().map(|a| a.kind).collect();
    assert_eq!(losses, [AnomalyKind::MessageLoss], "decided once");
}

/// Trace `trace` at `at_s`: a frontend span and a driver span it calls.
fn call(p: &mut Pipeline, trace: u64, at_s: i64) -> Vec<Span> {
    use crate::model::{RefKind, SpanRef};
    let (a, b) = (p.names_mut().intern("frontend"), p.names_mut().intern("driver"));
    let parent = Span { service: a, span_id: SpanId(trace * 10), ..span(trace, at_s) };
    let mut child = Span { service: b, span_id: SpanId(trace * 10 + 1), ..parent.clone() };
    child.refs.push(SpanRef { trace_id: parent.trace_id, span_id: parent.span_id, kind: RefKind::ChildOf });
    vec![parent, child]
}

fn calls_in(buckets: &[DependencyBucket]) -> u64 {
    buckets.iter().flat_map(|b| &b.calls).map(|c| c.2).sum()
}

#[test]
fn dependency_buckets_pin_their_traces_offsets_until_complete_and_come_out_once() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.enable_dependency_buckets(10 * S);
    p.push(Input::Assigned { partition: 0, gated: false });
    for (offset, (trace, at)) in [(1, 100), (2, 101), (3, 104)].into_iter().enumerate() {
        let spans = &mut call(&mut p, trace, at);
        p.push(Input::Spans { partition: 0, offset: Some(offset as i64), spans });
    }
    // Trace 1 closed (its calls are in the bucket from 100 s) but the bucket is open:
    // its first offset stays uncommitted, nothing is handed out.
    assert!(p.outputs().edges.services.values().map(|c| c.calls).sum::<u64>() >= 1);
    assert!(p.take_dependency_buckets().is_empty());
    assert_eq!(p.committable(0), Some(0));
    // Event time jumps to 124 s: the bucket from 100 s (traces 1 and 2, closed
    // by 103 s) is complete, handed out once, and frees its offsets; trace 3
    // closes now, into the bucket from 120 s, which pins its offset.
    let spans = &mut call(&mut p, 4, 125);
    p.push(Input::Spans { partition: 0, offset: Some(3), spans });
    let out = p.take_dependency_buckets();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].partition, out[0].start_us), (0, 100 * S));
    assert_eq!(out[0].calls, [("frontend".to_owned(), "driver".to_owned(), 2)]);
    assert!(p.take_dependency_buckets().is_empty(), "handed out once");
    assert_eq!(p.committable(0), Some(2), "trace 3's bucket and the open trace 4 hold theirs");
    // The end of the input completes the rest; every call is in exactly one bucket.
    p.push(Input::End);
    let rest = p.take_dependency_buckets();
    assert_eq!(calls_in(&rest), 2);
    let total: u64 = p.outputs().edges.services.values().map(|c| c.calls).sum();
    assert_eq!(total, 4, "the totals see every call too");
    assert_eq!(p.committable(0), Some(4));
}

#[test]
fn a_revoked_partitions_buckets_are_left_to_its_next_owner() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.enable_dependency_buckets(60 * S);
    p.push(Input::Assigned { partition: 5, gated: false });
    for (offset, (trace, at)) in [(1, 100), (2, 110)].into_iter().enumerate() {
        let spans = &mut call(&mut p, trace, at);
        p.push(Input::Spans { partition: 5, offset: Some(offset as i64), spans });
    }
    assert_eq!(p.committable(5), Some(0), "trace 1 closed into an open bucket");
    p.push(Input::Revoked(5));
    p.push(Input::End);
    assert!(p.take_dependency_buckets().is_empty(), "the next owner counts them from offset 0");
}

#[test]
fn a_trace_an_earlier_owner_finished_counts_again_in_its_bucket_only() {
    let clock = ManualClock::new(0);
    let mut p = pipeline(&clock);
    p.enable_dependency_buckets(10 * S);
    p.push(Input::Assigned { partition: 0, gated: false });
    // Trace 1 was finished (and its calls written to Neo4j) by the previous owner,
    // whose bucket may never have been written: read again, it counts there only.
    p.skip_finished(0, [(TraceId::new(0, 1), 0)]);
    let spans = &mut call(&mut p, 1, 100);
    p.push(Input::Spans { partition: 0, offset: Some(0), spans });
    // Trace 2 at 130 s closes trace 1 into the bucket from 120 s; trace 3 at 150 s
    // completes that bucket and closes trace 2 into the next.
    for (offset, (trace, at)) in [(1, (2, 130)), (2, (3, 150))] {
        let spans = &mut call(&mut p, trace, at);
        p.push(Input::Spans { partition: 0, offset: Some(offset), spans });
    }
    assert_eq!(p.outputs().input.replayed_spans, 2);
    let out = p.take_dependency_buckets();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].start_us, calls_in(&out)), (120 * S, 1), "trace 1 counts in its bucket");
    let edges = |p: &Pipeline| p.outputs().edges.services.values().map(|c| c.calls).sum::<u64>();
    assert_eq!(edges(&p), 1, "trace 2 only: trace 1 is not counted again in the service edges");
    p.push(Input::End);
    assert_eq!(calls_in(&p.take_dependency_buckets()), 2, "traces 2 and 3");
    assert_eq!(edges(&p), 2);
}
