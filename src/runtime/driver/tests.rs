//! The driver against a scripted source and recording sinks: what reaches the
//! sinks, what is published for commit, and in which order.

use super::*;
use crate::analysis::{AnalysisConfig, AssemblyConfig, DetectedAt};
use crate::dataflow::{ManualClock, WatermarkConfig};
use crate::decode::{jaeger_proto, Format};
use crate::model::{Interner, Span, SpanId, TraceId};
use crate::runtime::{InProcess, PipelineConfig};
use crate::sink::Fault;
use crate::source::Record;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const S: i64 = 1_000_000;
/// Spans start in 2023: times before 1990 are refused as input.
const T0: i64 = 1_700_000_000 * S;

/// What happened, in order, across the source and the sinks.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().expect("log").push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("log").clone()
    }

    fn position(&self, line: &str) -> usize {
        let lines = self.lines();
        lines.iter().position(|l| l == line).unwrap_or_else(|| panic!("no {line:?} in {lines:?}"))
    }
}

/// Hands out its events, then asks the driver to stop.
struct Script {
    events: VecDeque<Event>,
    log: Log,
    stop: Arc<AtomicBool>,
}

impl Source for Script {
    fn next(&mut self, _wait: Duration) -> Result<Option<Event>, SourceError> {
        let event = self.events.pop_front();
        if event.is_none() {
            self.stop.store(true, Ordering::Relaxed);
        }
        Ok(event)
    }

    fn publish(&mut self, partition: u32, _assignment: Assignment, offset: i64) {
        self.log.push(format!("publish {partition}@{offset}"));
    }

    fn stop(&mut self) {
        self.log.push("source stopped".into());
    }
}

/// How a [`Recorder`] answers a write that carries results.
#[derive(Clone, Copy)]
enum Answer {
    Acknowledge,
    /// Waits for a server until poirot stops.
    StopFirst,
    /// Refuses, and retrying cannot help.
    Refuse,
}

/// Logs the finished traces and the last round it is given.
struct Recorder {
    log: Log,
    answer: Answer,
    /// Traces an earlier owner finished, per partition.
    finished_before: Vec<(u32, TraceId, i64)>,
}

impl Sink for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn wants_deltas(&self) -> bool {
        true
    }

    fn write(&mut self, round: &Round<'_>, _stop: &AtomicBool) -> Result<Written, SinkError> {
        for t in round.finished {
            self.log.push(format!("wrote trace {} of {}", t.trace_id.low, t.partition));
        }
        if round.last.is_some() {
            let o = round.outputs;
            self.log.push(format!("last round: {} traces, {} open", o.stats.traces, o.open_traces));
        }
        if round.finished.is_empty() {
            return Ok(Written::Acknowledged);
        }
        match self.answer {
            Answer::Acknowledge => Ok(Written::Acknowledged),
            Answer::StopFirst => Ok(Written::Stopped),
            Answer::Refuse => Err(SinkError::new(
                "recorder",
                Fault::Internal,
                std::io::Error::other("the server rejected the query"),
            )),
        }
    }

    fn finished_before(
        &mut self,
        partition: u32,
        _stop: &AtomicBool,
    ) -> Result<Vec<(TraceId, i64)>, SinkError> {
        Ok(self.finished_before.iter().filter(|f| f.0 == partition).map(|f| (f.1, f.2)).collect())
    }
}

struct Harness {
    log: Log,
    stop: Arc<AtomicBool>,
    names: Interner,
}

impl Harness {
    fn new() -> Self {
        Harness { log: Log::default(), stop: Arc::default(), names: Interner::new() }
    }

    /// A record of partition 0 holding one span of `trace` that ends at `end_s`.
    fn record(&mut self, trace: u64, end_s: i64, offset: Option<i64>) -> Record {
        let span = Span {
            trace_id: TraceId::new(0, trace),
            span_id: SpanId(trace * 100 + end_s as u64),
            start_us: T0 + end_s * S - 1000,
            duration_us: 1000,
            service: self.names.intern("checkout"),
            operation: self.names.intern("pay"),
            ..Span::default()
        };
        Record {
            offset,
            payload: jaeger_proto::encode(&span, &self.names, &[]).into(),
            format: Some(Format::JaegerProto),
            ..Record::default()
        }
    }

    fn driver(&self, answer: Answer, finished_before: Vec<(u32, TraceId, i64)>) -> Driver {
        let config = PipelineConfig {
            assembly: AssemblyConfig { inactivity_gap_us: 2 * S, ..AssemblyConfig::default() },
            watermark: WatermarkConfig { out_of_orderness_us: S, idle_timeout_us: 30 * S },
            analysis: AnalysisConfig::default(),
            flows: Default::default(),
            detected_at: DetectedAt::TraceClose,
            dimensions: Vec::new(),
        };
        let pipeline = Pipeline::new(config, Arc::new(ManualClock::new(0)));
        let sink = Recorder { log: self.log.clone(), answer, finished_before };
        Driver::new(pipeline, Box::new(InProcess), vec![Box::new(sink)])
    }

    fn run(&self, driver: &mut Driver, events: Vec<Event>) -> Result<Ended, DriverError> {
        let mut source = Script { events: events.into(), log: self.log.clone(), stop: self.stop.clone() };
        driver.run(&mut source, &self.stop)
    }
}

fn assigned(partition: u32) -> Event {
    Event::Assigned { partitions: vec![partition], assignment: Assignment(1) }
}

/// A revocation, and a thread that logs when the driver answers it.
fn revoked(partition: u32, log: &Log) -> (Event, std::thread::JoinHandle<()>) {
    let (done, answered) = std::sync::mpsc::channel();
    let log = log.clone();
    let waiter = std::thread::spawn(move || {
        if answered.recv().is_ok() {
            log.push("handed back".into());
        }
    });
    (Event::Revoked { partitions: vec![partition], done }, waiter)
}

#[test]
fn a_revoked_partition_is_written_then_published_then_handed_back() {
    let mut h = Harness::new();
    let mut driver = h.driver(Answer::Acknowledge, Vec::new());
    // Trace 2 at 100 s moves event time past trace 1 (10 s + the 2 s gap): trace 1
    // closes, trace 2 stays open and still needs offset 1.
    let batch = Event::Batch(vec![h.record(1, 10, Some(0)), h.record(2, 100, Some(1))]);
    let (revoke, waiter) = revoked(0, &h.log);
    let ended = h.run(&mut driver, vec![assigned(0), batch, revoke]).expect("run");
    waiter.join().expect("waiter");
    assert_eq!(ended, Ended::Stopped);
    let lines = h.log.lines();
    let wrote = h.log.position("wrote trace 1 of 0");
    let handed_back = h.log.position("handed back");
    let publishes: Vec<usize> =
        lines.iter().enumerate().filter(|(_, l)| l.starts_with("publish 0@")).map(|(i, _)| i).collect();
    assert!(!publishes.is_empty(), "{lines:?}");
    assert!(publishes.iter().all(|&i| wrote < i && i < handed_back), "{lines:?}");
    assert_eq!(
        lines[*publishes.last().expect("a publish")],
        "publish 0@1",
        "trace 2 is still open at offset 1"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("wrote trace 2")),
        "an open trace of a revoked partition is dropped"
    );
}

#[test]
fn nothing_is_published_past_what_a_sink_has_not_acknowledged() {
    let mut h = Harness::new();
    let mut driver = h.driver(Answer::StopFirst, Vec::new());
    let batch = Event::Batch(vec![h.record(1, 10, Some(0)), h.record(2, 100, Some(1))]);
    let ended = h.run(&mut driver, vec![assigned(0), batch]).expect("run");
    assert_eq!(ended, Ended::Stopped);
    let lines = h.log.lines();
    assert!(lines.contains(&"wrote trace 1 of 0".to_string()), "{lines:?}");
    assert!(!lines.iter().any(|l| l.starts_with("publish")), "{lines:?}");
    // The source is left before the last round: other members take over at once.
    assert!(h.log.position("source stopped") < h.log.position("last round: 1 traces, 1 open"), "{lines:?}");
}

#[test]
fn a_sink_error_that_retrying_cannot_fix_ends_the_run_with_its_name_and_commits_nothing() {
    let mut h = Harness::new();
    let mut driver = h.driver(Answer::Refuse, Vec::new());
    let batch = Event::Batch(vec![h.record(1, 10, Some(0)), h.record(2, 100, Some(1))]);
    let error = h.run(&mut driver, vec![assigned(0), batch]).expect_err("the sink refused");
    assert_eq!(error.to_string(), "recorder: the server rejected the query");
    match &error {
        DriverError::Sink(e) => assert_eq!(e.fault, Fault::Internal),
        other => panic!("{other:?}"),
    }
    let lines = h.log.lines();
    assert!(!lines.iter().any(|l| l.starts_with("publish")), "{lines:?}");
    assert!(lines.contains(&"source stopped".to_string()), "{lines:?}");
}

#[test]
fn the_end_of_a_finite_input_closes_and_writes_every_trace() {
    let mut h = Harness::new();
    let mut driver = h.driver(Answer::Acknowledge, Vec::new());
    // Three traces within the gap of one another: none closes before the end.
    let batch = Event::Batch(vec![h.record(1, 10, None), h.record(2, 10, None), h.record(3, 11, None)]);
    let ended = h.run(&mut driver, vec![batch, Event::End]).expect("run");
    assert_eq!(ended, Ended::Input);
    let lines = h.log.lines();
    assert!(lines.contains(&"last round: 3 traces, 0 open".to_string()), "{lines:?}");
    assert!(h.log.position("last round: 3 traces, 0 open") < h.log.position("source stopped"));
}

#[test]
fn traces_an_earlier_owner_finished_are_dropped_when_read_again() {
    let mut h = Harness::new();
    // The earlier owner finished trace 1, whose records end at offset 0.
    let mut driver = h.driver(Answer::Acknowledge, vec![(0, TraceId::new(0, 1), 0)]);
    let batch =
        Event::Batch(vec![h.record(1, 10, Some(0)), h.record(2, 11, Some(1)), h.record(3, 100, Some(2))]);
    h.run(&mut driver, vec![assigned(0), batch]).expect("run");
    let lines = h.log.lines();
    assert!(lines.contains(&"wrote trace 2 of 0".to_string()), "{lines:?}");
    assert!(!lines.contains(&"wrote trace 1 of 0".to_string()), "a copy was analysed again: {lines:?}");
    assert_eq!(driver.outputs().input.replayed_spans, 1);
}
