//! The Kafka source: a consumer group member on its own thread.
//!
//! A `BaseConsumer` is polled on a dedicated thread into a bounded channel of
//! events. When the pipeline falls behind, records wait in a one-batch outbox
//! and the thread reads nothing more; a pipeline that takes nothing for [`PAUSE_AFTER`] (blocked on a sink that is
//! down) gets the assigned partitions paused while the thread goes on polling,
//! so the member stays in its group however long the outage lasts and memory
//! stays flat. Rebalances are cooperative-sticky and reported as events, in
//! order with the records before them. Auto-commit is off: the pipeline
//! publishes, per partition, the first offset an open trace still needs, and
//! this thread commits exactly that, every second, before giving up partitions
//! in a rebalance, and at shutdown.
//!
//! The thread also keeps the source's [`ReadingClock`]: processing time that
//! passes only while it is really reading (the pipeline takes records, the
//! brokers leading the assigned partitions are up, no rebalance hand-off is in
//! progress), and reports partitions it has read to their end
//! ([`SourceEvent::AtEnd`]). The pipeline measures idleness on both, so a stall
//! never makes a partition look idle and never makes later spans late.
//!
//! The source may read several topics (the span topic and poirot's repartition
//! topic); the pipeline sees one partition id space: topic index × 2¹⁶ + partition
//! ([`partition_id`]).

mod context;

use super::kafka_log::LogLimiter;
use crate::dataflow::ReadingClock;
use crate::telemetry::process::ProcessMetrics;
use context::{Context, STALL_GRACE};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("cannot start the kafka consumer thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Clone, Debug)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    /// Topics read; a record's partition id carries the index of its topic here.
    pub topics: Vec<String>,
    pub group: String,
    /// Passed to librdkafka as they are (security.protocol, sasl.*, ssl.*, ...).
    pub properties: BTreeMap<String, String>,
}

/// How the source's connection to the brokers stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// No answer from a broker yet.
    Starting,
    /// The brokers leading the assigned partitions are up.
    Up,
    /// No broker (or not the leader of an assigned partition) can be reached;
    /// librdkafka retries with backoff.
    Unreachable { reason: String },
    /// The brokers refused the credentials or the TLS handshake: retrying cannot help.
    Refused { reason: String },
}

/// The pipeline's id of partition `partition` of the `topic`-th topic.
pub fn partition_id(topic: usize, partition: i32) -> u32 {
    ((topic as u32) << 16) | (partition as u32 & 0xffff)
}

/// The topic index and Kafka partition of a [`partition_id`].
pub fn split_id(id: u32) -> (usize, i32) {
    ((id >> 16) as usize, (id & 0xffff) as i32)
}

/// One consumed message.
#[derive(Debug)]
pub struct KafkaRecord {
    /// The pipeline's partition id ([`partition_id`]).
    pub partition: u32,
    /// Index of the topic in [`KafkaSourceConfig::topics`].
    pub topic: usize,
    pub kafka_partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// A watermark record of the repartition topic: (producer, event time µs).
    pub watermark: Option<(u64, i64)>,
}

/// One grant of partitions to this member: offsets published under an
/// assignment that has since been revoked are never committed, even when the
/// same partition was granted again meanwhile (a pipeline that answered a
/// rebalance too late must not overwrite what the next owner committed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Assignment(u64);

#[derive(Debug)]
pub enum SourceEvent {
    Batch(Vec<KafkaRecord>),
    Assigned {
        partitions: Vec<u32>,
        assignment: Assignment,
    },
    /// These partitions were read to their end (after the records before this
    /// event): their silence from now on is idleness.
    AtEnd(Vec<u32>),
    /// These partitions are being taken away. The pipeline finishes what it owes
    /// for them, publishes their final committable offsets, drops their state and
    /// then answers on `done`; only then are the offsets committed and the
    /// partitions released.
    Revoked {
        partitions: Vec<u32>,
        done: std::sync::mpsc::Sender<()>,
    },
}

/// Offsets the pipeline allows to commit, per partition, with the assignment
/// they were published under.
type Committable = Arc<Mutex<BTreeMap<u32, (Assignment, i64)>>>;
/// Offsets per partition.
pub type Offsets = Arc<Mutex<BTreeMap<u32, i64>>>;

/// A pipeline stalled this long ([`context::STALL_GRACE`] stops reading time)
/// has its assignment paused while polling goes on (well
/// below librdkafka's `max.poll.interval.ms`; kept for real outages, since
/// librdkafka's pause and resume are best used sparingly).
pub const PAUSE_AFTER: Duration = Duration::from_secs(20);

/// A running source: events come out of `events`; set `stop` to end it.
pub struct KafkaSource {
    pub events: Receiver<SourceEvent>,
    committable: Committable,
    /// Offsets actually committed (acknowledged by the group coordinator) for the
    /// partitions assigned now: what a new owner would start reading from.
    pub committed: Offsets,
    /// Processing time that passes only while the source is really reading.
    pub clock: ReadingClock,
    context: Arc<Context>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Records per batch handed to the pipeline, and batches in flight.
const BATCH: usize = 512;
const IN_FLIGHT: usize = 8;
const COMMIT_EVERY: Duration = Duration::from_secs(1);

impl KafkaSource {
    pub fn start(
        config: &KafkaSourceConfig,
        metrics: ProcessMetrics,
    ) -> Result<KafkaSource, KafkaSourceError> {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let committable: Committable = Arc::default();
        let committed: Offsets = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let context = Context {
            topics: config.topics.clone(),
            brokers: config.brokers.clone(),
            events: tx,
            outbox: Mutex::default(),
            committable: committable.clone(),
            committed: committed.clone(),
            stop: stop.clone(),
            metrics,
            state: Mutex::default(),
            limiter: LogLimiter::default(),
        };
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("client.id", "poirot")
            // Statistics say which partitions were read to their end and whether
            // their leaders are up (the reading clock), and carry consumer lag.
            .set("statistics.interval.ms", "1000");
        for (k, v) in &config.properties {
            cc.set(k, v);
        }
        let consumer: BaseConsumer<Context> = cc.create_with_context(context)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let context = consumer.context().clone();
        let clock = ReadingClock::new();
        let thread = {
            let (stop, clock) = (stop.clone(), clock.clone());
            std::thread::Builder::new()
                .name("kafka-source".into())
                .spawn(move || poll_loop(consumer, stop, clock))
                .map_err(KafkaSourceError::Thread)?
        };
        Ok(KafkaSource { events: rx, committable, committed, clock, context, stop, thread: Some(thread) })
    }

    /// Allows `offset` of `partition` to be committed: everything before it is
    /// written where it belongs. Ignored unless `assignment` is the partition's
    /// current one (checked when committing).
    pub fn publish(&self, partition: u32, assignment: Assignment, offset: i64) {
        if let Ok(mut m) = self.committable.lock() {
            m.insert(partition, (assignment, offset));
        }
    }

    /// How the connection to the brokers stands now.
    pub fn connection(&self) -> Connection {
        self.context.connection()
    }

    /// Stops polling, commits what may be committed, and leaves the group.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a poll thread waiting on a full channel.
        while self.events.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop();
    }
}

fn record(topics: &[String], m: &rdkafka::message::BorrowedMessage<'_>) -> KafkaRecord {
    let topic = topics.iter().position(|t| t == m.topic()).unwrap_or(0);
    KafkaRecord {
        partition: partition_id(topic, m.partition()),
        topic,
        kafka_partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().unwrap_or_default().to_vec(),
        watermark: m.headers().and_then(watermark_of),
    }
}

/// The (producer, event time) of a repartition watermark record.
fn watermark_of(headers: &rdkafka::message::BorrowedHeaders) -> Option<(u64, i64)> {
    use crate::source::repartition::{PRODUCER_HEADER, WATERMARK_HEADER};
    use rdkafka::message::Headers;
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| std::str::from_utf8(h.value?).ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let event_time = value(WATERMARK_HEADER)?;
    let producer = u64::try_from(value(PRODUCER_HEADER)?).ok()?;
    Some((producer, event_time))
}

/// Pauses the assignment, or resumes exactly what was paused (a partition
/// revoked meanwhile included: librdkafka keeps it paused should it come back).
fn set_paused(consumer: &BaseConsumer<Context>, pause: bool, paused: &mut Option<TopicPartitionList>) {
    let result = match (pause, paused.take()) {
        (true, before) => {
            let Ok(assignment) = consumer.assignment() else { return };
            if let Some(before) = before {
                // Partitions revoked meanwhile must not stay paused.
                let _ = consumer.resume(&before);
            }
            let r = consumer.pause(&assignment);
            *paused = Some(assignment);
            r
        }
        (false, Some(before)) => consumer.resume(&before),
        (false, None) => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(
            "kafka: cannot {} the assigned partitions: {e}",
            if pause { "pause" } else { "resume" }
        );
    }
}

fn poll_loop(consumer: BaseConsumer<Context>, stop: Arc<AtomicBool>, clock: ReadingClock) {
    let context = consumer.context().clone();
    let mut last_commit = Instant::now();
    let mut last_cycle = Instant::now();
    let mut stalled_since: Option<Instant> = None;
    let mut paused: Option<TopicPartitionList> = None;
    while !stop.load(Ordering::Relaxed) {
        // What was read before goes first; the pipeline may be behind.
        let Some(delivered) = context.deliver() else { break };
        if delivered {
            stalled_since = None;
        } else {
            stalled_since.get_or_insert_with(Instant::now);
        }
        let stalled_for = stalled_since.map_or(Duration::ZERO, |t| t.elapsed());
        // A pipeline blocked on a sink: pause the assignment and keep polling, so
        // the group keeps this member and nothing piles up in memory.
        let pause = stalled_for >= PAUSE_AFTER;
        let changed = context.state.lock().is_ok_and(|mut s| std::mem::take(&mut s.assignment_changed));
        if pause != paused.is_some() || (pause && changed) {
            set_paused(&consumer, pause, &mut paused);
        }
        if !delivered && paused.is_none() {
            // Backpressure: wait for room rather than reading more.
            std::thread::sleep(Duration::from_millis(5));
        } else {
            let mut batch = Vec::new();
            let mut wait = Duration::from_millis(100);
            // The first message may take a while; the rest of a batch is what is already there.
            while batch.len() < BATCH {
                match consumer.poll(wait) {
                    Some(Ok(m)) => batch.push(record(&context.topics, &m)),
                    Some(Err(e)) => context.limiter.error("consumer", &e, &format!("kafka: {e}")),
                    None => break,
                }
                wait = Duration::ZERO;
            }
            if !batch.is_empty() {
                if let Ok(mut s) = context.state.lock() {
                    // Those partitions delivered again: their end is no longer reported.
                    for r in &batch {
                        s.at_end.remove(&r.partition);
                        if s.fresh.remove(&r.partition) {
                            tracing::info!(
                                "partition {} of {}: reading from offset {}",
                                r.kafka_partition,
                                context.topics.get(r.topic).map_or("?", String::as_str),
                                r.offset
                            );
                        }
                    }
                    // Records arriving prove the brokers reachable, whatever the last
                    // statistics or error said.
                    if !matches!(s.connection, Some(Connection::Refused { .. })) {
                        s.leaders_up = true;
                        s.connection = Some(Connection::Up);
                    }
                }
                context.enqueue(SourceEvent::Batch(batch));
            }
        }
        let at_end = context.state.lock().map(|mut s| std::mem::take(&mut s.at_end)).unwrap_or_default();
        if !at_end.is_empty() && paused.is_none() {
            context.enqueue(SourceEvent::AtEnd(at_end.into_iter().collect()));
        }
        // Reading time: what passed in this cycle, unless the pipeline is stalled,
        // the brokers cannot be reached, or a rebalance hand-off took it.
        let now = Instant::now();
        let cycle = now.duration_since(last_cycle);
        last_cycle = now;
        let rebalancing =
            context.state.lock().map(|mut s| std::mem::take(&mut s.rebalancing)).unwrap_or_default();
        let reachable = context.reading_possible();
        if stalled_for < STALL_GRACE && reachable {
            clock.advance(cycle.saturating_sub(rebalancing).as_micros() as i64);
        }
        context.metrics.kafka_reachable.set(i64::from(reachable));
        context.metrics.reading_seconds.set(crate::dataflow::Clock::now_us(&clock) as f64 / 1e6);
        if last_commit.elapsed() >= COMMIT_EVERY {
            context.commit(&consumer, None, CommitMode::Async);
            last_commit = Instant::now();
        }
    }
    context.commit(&consumer, None, CommitMode::Sync);
    consumer.unsubscribe();
}
