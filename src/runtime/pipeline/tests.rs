//! The pipeline through its one entry point, on a manual clock.

use super::*;
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
