//! The keyBy(trace id) stage: how records reach the trace-keyed pipeline.
//!
//! All of a trace's spans must meet in one process. Replay and demo read one
//! stream into one pipeline: [`InProcess`] feeds records straight in. `poirot
//! run` reads Kafka partitions that Jaeger keyed by trace id; spans that arrive
//! unkeyed (an OTLP batch mixing traces) are re-keyed through poirot's
//! repartition topic by [`ThroughTopic`], and come back from it, keyed, with
//! their producers' watermarks. Links between traces take the same way: a link
//! found where the referencing trace closed goes, as a link record, to the
//! process that owns the trace it names. A second exchange keyed by another id
//! would be another implementation of [`Exchange`]; the driver does not change.

use super::{Input, Pipeline, RecordOutcome};
use crate::source::{Assignment, Record};
use std::sync::atomic::AtomicBool;

/// A delivery to another process failed for good: the input behind it must be
/// read again, so poirot stops.
#[derive(Debug, thiserror::Error)]
#[error("spans could not be written to the repartition topic: poirot stops, the input is read again")]
pub struct ExchangeError;

/// Routes records by trace id, to the local pipeline or to the process that owns the trace.
pub trait Exchange {
    /// Hands `record` on: decoded and fed to `pipeline`, or sent to its trace's owner.
    fn route(&mut self, record: &Record, pipeline: &mut Pipeline, stop: &AtomicBool) -> RecordOutcome;

    /// `partition` was assigned at reading time `now_us`; returns whether the
    /// pipeline's event time waits for it.
    fn assigned(&mut self, _partition: u32, _now_us: i64, _stop: &AtomicBool) -> bool {
        true
    }

    fn revoked(&mut self, _partition: u32) {}

    /// Processing time passed (the pipeline took its tick): producers report
    /// their progress, and what the tick produced for elsewhere is sent.
    fn tick(&mut self, _pipeline: &mut Pipeline, _stop: &AtomicBool) {}

    /// Waits for what was sent elsewhere to be acknowledged: `Ok(false)` while it
    /// is not (offsets of [`passes_on`](Self::passes_on) partitions wait).
    fn acked(&mut self, _stop: &AtomicBool) -> Result<bool, ExchangeError> {
        Ok(true)
    }

    /// The partitions the source should stop reading for now, when that changed
    /// (`now_us`: processing time): input read ahead of the rest in event time
    /// holds memory elsewhere.
    fn held_back(&mut self, _now_us: i64) -> Option<Vec<u32>> {
        None
    }

    /// Whether records of `partition` may be sent elsewhere.
    fn passes_on(&self, _partition: u32) -> bool {
        false
    }

    /// Offsets of [`passes_on`](Self::passes_on) partitions, as they stand after a
    /// round: each waits until what was sent elsewhere before it is acknowledged,
    /// without waiting on the brokers. Returns the offsets that no longer wait.
    fn hold(&mut self, offsets: Vec<Offset>, _stop: &AtomicBool) -> Result<Vec<Offset>, ExchangeError> {
        Ok(offsets)
    }
}

/// An offset of a partition under an assignment, to publish.
pub type Offset = (u32, Assignment, i64);

/// Offsets waiting for what a producer queued before them: each round's offsets
/// with the producer epoch sealed after them (every message queued until then
/// belongs to that epoch or an earlier one).
#[derive(Default)]
pub struct HeldOffsets {
    queue: std::collections::VecDeque<(u64, Vec<Offset>)>,
}

impl HeldOffsets {
    /// Rounds whose offsets may wait at once: past that the oldest are dropped
    /// (later ones carry the same partitions further), so a slow broker costs
    /// commit progress, never memory.
    pub const MAX: usize = 4096;

    /// Holds `offsets` until every message up to `epoch` is acknowledged.
    pub fn hold(&mut self, epoch: u64, offsets: Vec<Offset>) {
        // Unchanged offsets need no second entry: the earlier epoch covers them.
        if offsets.is_empty() || self.queue.back().is_some_and(|(_, last)| *last == offsets) {
            return;
        }
        if self.queue.len() == Self::MAX {
            self.queue.pop_front();
        }
        self.queue.push_back((epoch, offsets));
    }

    /// The offsets whose epochs are all acknowledged: every epoch before
    /// `acked_before` is. In the order they were held, so a partition's last wins.
    pub fn release(&mut self, acked_before: u64) -> Vec<Offset> {
        let mut released = Vec::new();
        while self.queue.front().is_some_and(|&(e, _)| e < acked_before) {
            released.extend(self.queue.pop_front().into_iter().flat_map(|(_, o)| o));
        }
        released
    }
}

/// One process holds every trace: records go straight into the pipeline.
pub struct InProcess;

impl Exchange for InProcess {
    fn route(&mut self, r: &Record, pipeline: &mut Pipeline, _stop: &AtomicBool) -> RecordOutcome {
        pipeline.push(Input::Record {
            partition: r.partition,
            offset: r.offset,
            format: r.format,
            bytes: &r.payload,
        })
    }
}

#[cfg(feature = "servers")]
pub use through_topic::ThroughTopic;

#[cfg(feature = "servers")]
mod through_topic {
    use super::*;
    use crate::model::Span;
    use crate::source::kafka::split_id;
    use crate::source::partitioner::InputPartitioner;
    use crate::source::repartition::{Mode, Rekeyer};
    use crate::telemetry::work;
    use prometheus_client::metrics::counter::Counter;

    /// Index of the span topic among the topics `poirot run` reads.
    pub const INPUT: usize = 0;
    /// Index of the repartition topic.
    pub const REPARTITIONED: usize = 1;

    /// Re-keys unkeyed input through the repartition topic (topic 1 of the
    /// source), and feeds what comes back from it.
    pub struct ThroughTopic {
        rekeyer: Rekeyer,
        mode: Mode,
        spans: Vec<Span>,
        /// Spans sent to the repartition topic.
        repartitioned: Counter,
        /// Where the input's own producer put keyed traces: where links to them go.
        input_partitioner: InputPartitioner,
        /// Link records were sent: every partition's offsets wait for their acknowledgement.
        sent_links: bool,
        /// Offsets waiting for the re-keyed spans and link records before them.
        held: HeldOffsets,
    }

    impl ThroughTopic {
        /// `pipeline` sends its links through here from now on.
        pub fn new(rekeyer: Rekeyer, mode: Mode, repartitioned: Counter, pipeline: &mut Pipeline) -> Self {
            pipeline.send_links_elsewhere();
            ThroughTopic {
                rekeyer,
                mode,
                spans: Vec::new(),
                repartitioned,
                input_partitioner: InputPartitioner::default(),
                sent_links: false,
                held: HeldOffsets::default(),
            }
        }

        /// Sends the links the pipeline found to the owners of the traces they
        /// name: the partition the input's partitioner gave that trace (its
        /// owner reads both topics' partitions of that number), or, for re-keyed
        /// input, where its id hashes to.
        fn send_links(&mut self, pipeline: &mut Pipeline, stop: &AtomicBool) {
            let links: Vec<_> = pipeline.drain_links().collect();
            if links.is_empty() {
                return;
            }
            let n = self.rekeyer.partitions();
            for link in links {
                let span = link.to_span();
                let partitions = match self.mode {
                    Mode::Always => Vec::new(),
                    _ => self.input_partitioner.candidates(link.to.trace_id, n),
                };
                if partitions.is_empty() {
                    self.rekeyer.send_link(&span, pipeline.names(), None, stop);
                }
                // Until the keyed records read say which partitioner wrote them, to
                // each partition the trace may be in: only its owner applies it.
                for p in partitions {
                    self.rekeyer.send_link(&span, pipeline.names(), Some(p), stop);
                }
            }
            self.sent_links = true;
        }
    }

    impl Exchange for ThroughTopic {
        fn route(&mut self, r: &Record, pipeline: &mut Pipeline, stop: &AtomicBool) -> RecordOutcome {
            let Some(offset) = r.offset else {
                return InProcess.route(r, pipeline, stop);
            };
            let spans = &mut self.spans;
            if r.topic == REPARTITIONED {
                if let Some((producer, event_time)) = r.watermark {
                    pipeline.push(Input::UpstreamWatermark {
                        partition: r.partition,
                        offset,
                        producer,
                        event_time,
                    });
                    return RecordOutcome::default();
                }
                let outcome = if r.link {
                    pipeline.push(Input::LinkRecord { partition: r.partition, offset, bytes: &r.payload })
                } else {
                    // Always Jaeger protobuf, whatever the input's encoding.
                    let outcome = pipeline.decode_shuffled(&r.payload, r.batch, spans);
                    pipeline.push(Input::Shuffled { partition: r.partition, offset, spans });
                    outcome
                };
                self.send_links(pipeline, stop);
                return outcome;
            }
            // Input that may need re-keying: decode, then decide.
            let outcome = pipeline.decode(r.format, &r.payload, spans);
            if self.mode.rekeys(r.key.as_deref(), spans) {
                let now = pipeline.now_us();
                self.rekeyer.send(spans, pipeline.names(), r.partition, now, stop);
                self.repartitioned.inc_by(spans.len() as u64);
                spans.clear();
                pipeline.push(Input::PassedOn { partition: r.partition, offset });
            } else {
                self.rekeyer.keyed(r.partition);
                if let (Some(key), Some(s)) = (r.key.as_deref(), spans.first()) {
                    let n = self.rekeyer.partitions();
                    self.input_partitioner.observe(key, s.trace_id, r.kafka_partition, n);
                }
                pipeline.push(Input::Spans { partition: r.partition, offset: Some(offset), spans });
            }
            self.send_links(pipeline, stop);
            outcome
        }

        /// With every input message re-keyed, input partitions carry no event time
        /// and must not hold the watermark back. Repartition-topic partitions hold
        /// it until their producers' watermark records arrive (every producer
        /// announces itself when it is assigned input).
        fn assigned(&mut self, partition: u32, now_us: i64, stop: &AtomicBool) -> bool {
            let input = split_id(partition).0 == INPUT;
            if input {
                self.rekeyer.assigned(partition, now_us, stop);
            }
            !(self.mode == Mode::Always && input)
        }

        fn revoked(&mut self, partition: u32) {
            self.rekeyer.forget(partition);
        }

        fn held_back(&mut self, now_us: i64) -> Option<Vec<u32>> {
            self.rekeyer.running_ahead(now_us)
        }

        /// Also when no input came: readers learn this process's final progress promptly.
        fn tick(&mut self, pipeline: &mut Pipeline, stop: &AtomicBool) {
            self.send_links(pipeline, stop);
            self.rekeyer.send_watermarks(pipeline.now_us(), stop);
        }

        fn acked(&mut self, stop: &AtomicBool) -> Result<bool, ExchangeError> {
            let rk = &mut self.rekeyer;
            if !rk.has_unflushed() && !rk.failed() {
                return Ok(true);
            }
            let mut w = work("repartition.flush", Vec::new());
            let acked = rk.flush(stop);
            if rk.failed() {
                w.fail("a delivery failed for good");
                return Err(ExchangeError);
            }
            if !acked {
                w.fail("not acknowledged yet");
            }
            Ok(acked)
        }

        fn hold(&mut self, offsets: Vec<Offset>, stop: &AtomicBool) -> Result<Vec<Offset>, ExchangeError> {
            let epoch = self.rekeyer.seal(stop);
            if self.rekeyer.failed() {
                work("repartition.deliveries", Vec::new()).fail("a delivery failed for good");
                return Err(ExchangeError);
            }
            self.held.hold(epoch, offsets);
            // Spans left unsent at shutdown: nothing read after them may be committed.
            if self.rekeyer.abandoned() {
                return Ok(Vec::new());
            }
            Ok(self.held.release(self.rekeyer.acked_before()))
        }

        /// Input partitions re-key records; once links were sent, a record of
        /// any partition may have closed a trace whose links are not yet acknowledged.
        fn passes_on(&self, partition: u32) -> bool {
            self.sent_links || split_id(partition).0 == INPUT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_offsets_are_released_once_their_epoch_and_every_earlier_one_are_acknowledged() {
        let a = Assignment::default();
        let mut held = HeldOffsets::default();
        held.hold(0, vec![(1, a, 10), (2, a, 5)]);
        held.hold(1, vec![(1, a, 20), (2, a, 5)]);
        // The same offsets again: no entry of their own, released with epoch 1.
        held.hold(2, vec![(1, a, 20), (2, a, 5)]);
        held.hold(3, vec![(1, a, 30), (2, a, 8)]);
        // Epoch 0 still has messages outstanding: nothing goes.
        assert!(held.release(0).is_empty());
        // Epochs 0 and 1 acknowledged (2 has some outstanding).
        assert_eq!(held.release(2), [(1, a, 10), (2, a, 5), (1, a, 20), (2, a, 5)]);
        assert!(held.release(2).is_empty());
        assert_eq!(held.release(4), [(1, a, 30), (2, a, 8)]);
        assert!(held.release(u64::MAX).is_empty());
    }

    #[test]
    fn held_offsets_stay_bounded_by_dropping_the_oldest() {
        let a = Assignment::default();
        let mut held = HeldOffsets::default();
        for e in 0..HeldOffsets::MAX as u64 + 10 {
            held.hold(e, vec![(1, a, e as i64)]);
        }
        let released = held.release(u64::MAX);
        assert_eq!(released.len(), HeldOffsets::MAX);
        // The newest offset is kept: dropping old rounds only delays commits.
        assert_eq!(released.last(), Some(&(1, a, HeldOffsets::MAX as i64 + 9)));
        assert_eq!(released.first(), Some(&(1, a, 10)));
    }
}
