//! The repartition stage: input that is not keyed by trace id (OTLP batches from
//! an OpenTelemetry collector without `partition_traces_by_id`, say) is decoded,
//! and every span is written again to the internal topic `<group>-repartition`
//! (created with the input's partition count), into the partition its trace id
//! hashes to (Kafka's murmur2 of the 32 hex digits, as a Java client would place
//! a record keyed by them). poirot consumes that topic beside the input, so each
//! of its partitions again holds whole traces — Kafka Streams' repartition topic.
//! Spans bound for one partition travel together, as a `jaeger.api_v2.Batch`
//! (header [`BATCH_HEADER`]) of up to [`BATCH_BYTES`]: one message per span would
//! cost the producer and every reader more than the spans themselves.
//!
//! Event time: several processes write into each partition of the internal
//! topic, each at its own pace, so the spans' event times there are not in the
//! order a keyed partition's are. Every producer therefore also writes watermark
//! records (headers [`WATERMARK_HEADER`], [`PRODUCER_HEADER`]) into every
//! partition, every 200 ms (sooner while a backlog is re-keyed) while it owns
//! input partitions, from the moment they are assigned: the minimum over its input partitions of what each may still
//! send — nothing known yet for a partition not read from yet ([`EventTime::MIN`],
//! for at most the idle timeout), the largest event time re-keyed for an active
//! one, no bound for one that is keyed or idle ([`HOLDS_NOTHING`] when none
//! bounds it). Readers move such a partition's event time with the slowest live
//! producer ([`crate::dataflow::UpstreamWatermarks`]); the partitions hold time
//! back from their assignment until then, as keyed input partitions do.
//!
//! Delivery: the producer is idempotent with unbounded retries, and an input
//! offset is published for commit only after [`Rekeyer::flush`] saw every span
//! sent before it acknowledged; a delivery that fails for good stops poirot, and
//! the next owner re-reads from the last commit (at-least-once; the Neo4j and
//! Elasticsearch sinks are idempotent per trace and anomaly).

use crate::dataflow::EventTime;
use crate::decode::jaeger_proto;
use crate::model::{Interner, Span, TraceId};
use crate::source::partitioner::KeyHash;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub mod alignment;
mod deliveries;
mod progress;
mod topic;
use alignment::Drift;
use deliveries::{note_queued, settle, Deliveries, Outstanding};
use progress::InputProgress;
pub use progress::ALIGN_EVERY_US;
pub use topic::ensure_topic;

#[derive(Debug, thiserror::Error)]
pub enum RepartitionError {
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("topic {0} was not found on the brokers")]
    NoTopic(String),
    #[error("cannot create topic {topic}: {detail}")]
    Create { topic: String, detail: String },
    #[error("cannot start an async runtime: {0}")]
    Runtime(std::io::Error),
}

/// When input goes through the repartition topic (`kafka.repartition`).
pub use crate::config::Repartition as Mode;

impl Mode {
    /// Whether a message with `key` and these decoded `spans` is re-keyed.
    pub fn rekeys(self, key: Option<&[u8]>, spans: &[Span]) -> bool {
        match self {
            Mode::Never => false,
            Mode::Always => !spans.is_empty(),
            Mode::Auto => !spans.is_empty() && !is_keyed(key, spans),
        }
    }
}

/// Header of a watermark record: the producer's progress, µs since the epoch (decimal).
pub const WATERMARK_HEADER: &str = "poirot.watermark";
/// Header of a watermark record: the producer's id (decimal).
pub const PRODUCER_HEADER: &str = "poirot.producer";
/// Header of a link record: a span of one trace reduced to its reference into
/// another (Jaeger protobuf), sent to the owner of the trace it names.
pub const LINK_HEADER: &str = "poirot.link";
/// Header of a batch record: a `jaeger.api_v2.Batch` of re-keyed spans (the
/// value is how many). A record without it is one `jaeger.api_v2.Span`.
pub const BATCH_HEADER: &str = "poirot.batch";
/// A batch record is written once it holds this many bytes (or sooner: before a
/// watermark or link record to its partition, and at the end of every round).
pub const BATCH_BYTES: usize = 64 * 1024;
/// A producer's progress when none of its input partitions bounds what it sends.
pub const HOLDS_NOTHING: EventTime = EventTime::MAX;

/// The internal topic of a consumer group.
pub fn topic_name(group: &str) -> String {
    format!("{group}-repartition")
}

/// True when `key` names one trace id (hex, as Jaeger writes it, or 16 raw
/// bytes) and every span belongs to that trace.
pub fn is_keyed(key: Option<&[u8]>, spans: &[Span]) -> bool {
    let Some(key) = key else { return false };
    let trace = match std::str::from_utf8(key).ok().and_then(TraceId::from_hex) {
        Some(t) => t,
        None => match TraceId::from_bytes(key) {
            Some(t) if key.len() == 16 => t,
            _ => return false,
        },
    };
    spans.iter().all(|s| s.trace_id == trace)
}

/// librdkafka's bound on what a producer queues, overridable in `[kafka.properties]`.
const PRODUCER_QUEUE_KBYTES: &str = "queue.buffering.max.kbytes";

fn client_config(brokers: &str, props: &BTreeMap<String, String>, id: &str) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers).set("client.id", id);
    for (k, v) in props {
        cc.set(k, v);
    }
    cc
}

/// Re-keyed spans not yet written, for one partition of the repartition topic.
#[derive(Default)]
struct Pending {
    /// The body of a `jaeger.api_v2.Batch`.
    body: Vec<u8>,
    spans: usize,
}

/// Why a message was not queued.
enum NotQueued {
    /// Kafka's queue was full when poirot was stopping.
    Abandoned,
    Failed(rdkafka::error::KafkaError),
}

/// The partition of the repartition topic a trace lives in.
pub fn partition_of(trace: TraceId, partitions: i32) -> i32 {
    KeyHash::Murmur2.partition(&trace.to_hex(), partitions)
}

/// Writes spans, keyed by trace id, to the repartition topic, and this
/// process's progress as watermark records.
pub struct Rekeyer {
    producer: BaseProducer<Deliveries>,
    topic: String,
    partitions: i32,
    /// One per partition.
    pending: Vec<Pending>,
    /// Random per process: readers keep one progress per producer.
    id: u64,
    progress: FxHashMap<u32, InputProgress>,
    idle_us: i64,
    last_watermark: Option<(EventTime, i64)>,
    /// Spans re-keyed since the last watermark was written.
    since_watermark: u64,
    /// Input partitions held back (paused) for running ahead of the slowest.
    held: BTreeSet<u32>,
    /// The held set changed without [`running_ahead`](Self::running_ahead) saying so.
    held_changed: bool,
    drift: Drift,
    last_aligned_us: i64,
    failed: Arc<AtomicBool>,
    /// The epoch messages queued now belong to, and how many of each epoch are not
    /// yet acknowledged: offsets wait for their epoch without waiting on Kafka.
    epoch: u64,
    outstanding: Outstanding,
    /// Spans were left unsent at shutdown.
    abandoned: bool,
    unflushed: bool,
    pub spans: u64,
    /// Link records queued.
    pub links: u64,
}

impl Rekeyer {
    /// A producer for `topic` with `partitions` partitions; input partitions that
    /// re-keyed nothing for `idle_us` stop holding its progress back, and those
    /// that run ahead of the slowest by `drift` are held back.
    pub fn new(
        brokers: &str,
        props: &BTreeMap<String, String>,
        topic: &str,
        partitions: usize,
        idle_us: i64,
        drift: Drift,
    ) -> Result<Self, RepartitionError> {
        let failed = Arc::new(AtomicBool::new(false));
        let outstanding = Outstanding::default();
        let mut cc = client_config(brokers, props, "poirot-repartition");
        // Spans queued for Kafka (1 GiB by default): 16 MiB keeps memory flat, and a
        // full queue only makes `send` wait for deliveries.
        if !props.contains_key(PRODUCER_QUEUE_KBYTES) {
            cc.set(PRODUCER_QUEUE_KBYTES, "16384");
        }
        cc.set("enable.idempotence", "true")
            // Never give up on a message: an outage stalls poirot instead of losing spans.
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            // Java clients' partitioner, so Kafka tools agree on where a trace lives.
            .set("partitioner", "murmur2_random");
        let producer =
            cc.create_with_context(Deliveries { failed: failed.clone(), outstanding: outstanding.clone() })?;
        Ok(Rekeyer {
            producer,
            topic: topic.to_owned(),
            partitions: partitions.max(1) as i32,
            pending: (0..partitions.max(1)).map(|_| Pending::default()).collect(),
            id: rand::random::<u64>() >> 1,
            progress: FxHashMap::default(),
            idle_us,
            last_watermark: None,
            since_watermark: 0,
            held: BTreeSet::new(),
            held_changed: false,
            drift,
            last_aligned_us: i64::MIN,
            failed,
            epoch: 0,
            outstanding,
            abandoned: false,
            unflushed: false,
            spans: 0,
            links: 0,
        })
    }

    /// Adds every span of a record of input partition `input` to the batch of
    /// the partition its trace id hashes to (`now`: processing time, µs); a full
    /// batch is queued at once. While Kafka's queue is full it waits, unless
    /// `stop` is set: then the rest is abandoned and nothing of the input behind
    /// it may be committed ([`flush`](Self::flush) says false).
    pub fn send(&mut self, spans: &[Span], names: &Interner, input: u32, now: i64, stop: &AtomicBool) {
        let mut max_event = match self.progress.get(&input) {
            Some(InputProgress::Active { max_event, .. }) => *max_event,
            _ => EventTime::MIN,
        };
        let recent = spans.iter().map(Span::event_time_us).max().unwrap_or(max_event);
        max_event = max_event.max(recent);
        self.progress.insert(input, InputProgress::Active { max_event, recent, at_us: now });
        for s in spans {
            let p = partition_of(s.trace_id, self.partitions) as usize;
            let pending = &mut self.pending[p];
            jaeger_proto::write_batch_span(&mut pending.body, s, names);
            pending.spans += 1;
            self.spans += 1;
            self.since_watermark += 1;
            if pending.body.len() >= BATCH_BYTES && !self.write_batch(p, stop) {
                return;
            }
        }
        self.producer.poll(Duration::ZERO);
    }

    /// Queues the batch waiting for partition `p`, if any; false when it could
    /// not be (abandoned at shutdown, or failed for good).
    fn write_batch(&mut self, p: usize, stop: &AtomicBool) -> bool {
        let Some(pending) = self.pending.get(p).filter(|b| b.spans > 0) else { return true };
        let count = pending.spans.to_string();
        let headers = OwnedHeaders::new().insert(Header { key: BATCH_HEADER, value: Some(count.as_str()) });
        let record = BaseRecord::with_opaque_to(&self.topic, self.epoch as usize)
            .partition(p as i32)
            .payload(&pending.body[..])
            .headers(headers);
        let queued = self.queue(record, stop);
        if let Some(pending) = self.pending.get_mut(p) {
            pending.body.clear();
            pending.spans = 0;
        }
        self.queued(queued, "a batch of spans")
    }

    /// Queues every batch waiting; false when one could not be.
    pub fn write_pending(&mut self, stop: &AtomicBool) -> bool {
        (0..self.pending.len()).all(|p| self.write_batch(p, stop))
    }

    /// Queues `record` under the current epoch, waiting while Kafka's queue is
    /// full unless `stop` is set.
    fn queue(
        &self,
        mut record: BaseRecord<'_, [u8], [u8], usize>,
        stop: &AtomicBool,
    ) -> Result<(), NotQueued> {
        loop {
            note_queued(&self.outstanding, self.epoch);
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, back)) => {
                    settle(&self.outstanding, self.epoch);
                    if e.rdkafka_error_code() != Some(RDKafkaErrorCode::QueueFull) {
                        return Err(NotQueued::Failed(e));
                    }
                    if stop.load(Ordering::Relaxed) {
                        return Err(NotQueued::Abandoned);
                    }
                    // Queue full: let deliveries drain, then try again.
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
            }
        }
    }

    /// Notes how queueing `what` went; true when it was queued.
    fn queued(&mut self, result: Result<(), NotQueued>, what: &str) -> bool {
        match result {
            Ok(()) => {
                self.unflushed = true;
                true
            }
            Err(NotQueued::Abandoned) => {
                self.abandoned = true;
                false
            }
            Err(NotQueued::Failed(e)) => {
                tracing::error!("repartition: cannot queue {what}: {e}");
                self.failed.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a link record: `span` (a span reduced to its one reference into
    /// another trace) keyed by the trace it names, to `partition` when the
    /// input's partitioner placed that trace (else where its key hashes to, as
    /// re-keyed spans). Spans waiting for that partition go first. Waits while
    /// Kafka's queue is full, unless `stop` is set (then nothing behind it may
    /// be committed).
    pub fn send_link(&mut self, span: &Span, names: &Interner, partition: Option<i32>, stop: &AtomicBool) {
        let Some(to) = span.refs.first() else { return };
        let partition = partition.unwrap_or_else(|| partition_of(to.trace_id, self.partitions));
        if !self.write_batch(partition as usize, stop) {
            return;
        }
        let key = to.trace_id.to_hex();
        let payload = jaeger_proto::encode(span, names, &[]);
        let headers = OwnedHeaders::new().insert(Header { key: LINK_HEADER, value: Some("1") });
        let record = BaseRecord::with_opaque_to(&self.topic, self.epoch as usize)
            .key(&key[..])
            .payload(&payload[..])
            .headers(headers)
            .partition(partition);
        let queued = self.queue(record, stop);
        if self.queued(queued, "a link record") {
            self.links += 1;
        }
        self.producer.poll(Duration::ZERO);
    }

    /// Partitions of the repartition topic.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Queues the spans waiting, ends the current epoch and returns it: once
    /// [`acked_before`](Self::acked_before) is past it, every span sent up to now
    /// was acknowledged (unless [`abandoned`](Self::abandoned) or [`failed`](Self::failed)).
    pub fn seal(&mut self, stop: &AtomicBool) -> u64 {
        self.write_pending(stop);
        self.epoch += 1;
        self.epoch - 1
    }

    /// Every message of the epochs before the returned one is acknowledged (or
    /// failed for good, which [`failed`](Self::failed) says). Serves the
    /// deliveries waiting, without blocking.
    pub fn acked_before(&self) -> u64 {
        self.producer.poll(Duration::ZERO);
        let oldest = self.outstanding.lock().ok().and_then(|o| o.keys().next().copied());
        oldest.unwrap_or(self.epoch)
    }

    /// Spans were left unsent at shutdown.
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }

    /// Spans sent since the last acknowledged flush, or abandoned at shutdown.
    pub fn has_unflushed(&self) -> bool {
        self.unflushed || self.abandoned || self.pending.iter().any(|p| p.spans > 0)
    }

    /// Queues the spans waiting, and waits until every queued span is
    /// acknowledged. False while that is not the case (offsets of re-keyed input
    /// must not be committed yet).
    pub fn flush(&mut self, stop: &AtomicBool) -> bool {
        if !self.write_pending(stop) || self.abandoned {
            return false;
        }
        if self.unflushed {
            match self.producer.flush(Duration::from_secs(5)) {
                // librdkafka's queue is empty; a delivery that failed meanwhile set `failed`.
                Ok(()) => self.unflushed = false,
                Err(e) => {
                    tracing::warn!("repartition: waiting for acknowledgements: {e}");
                    return false;
                }
            }
        }
        !self.failed()
    }

    /// A delivery failed for good: the input offsets behind it must never be committed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
