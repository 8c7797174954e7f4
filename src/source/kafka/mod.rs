//! The Kafka source: a consumer group member on its own thread.
//!
//! A `BaseConsumer` is polled on a dedicated thread into a bounded channel of
//! events. When the pipeline falls behind, records wait in a one-batch outbox
//! and the thread reads nothing more; a pipeline that takes nothing for [`PAUSE_AFTER`] (blocked on a sink that is
//! down) gets the assigned partitions paused while the thread goes on polling,
//! so the member stays in its group however long the outage lasts and memory
//! stays flat. Rebalances are cooperative-sticky (range when `poirot run`
//! needs co-partitioned topics) and reported as events, in
//! order with the records before them. Auto-commit is off: the pipeline
//! publishes, per partition, the first offset an open trace still needs, and
//! this thread commits exactly that, every second, before giving up partitions
//! in a rebalance, and at shutdown.
//!
//! The thread also keeps the source's [`ReadingClock`]: processing time that
//! passes only while it is really reading (the pipeline takes records, the
//! brokers leading the assigned partitions are up, no rebalance hand-off is in
//! progress), and reports partitions it has read to their end
//! ([`Event::AtEnd`]). The pipeline measures idleness on both, so a stall
//! never makes a partition look idle and never makes later spans late.
//!
//! The source may read several topics (the span topic and poirot's repartition
//! topic); the pipeline sees one partition id space: topic index × 2¹⁶ + partition
//! ([`partition_id`]).

mod context;
mod pausing;
use pausing::{set_paused, HeldBack, Stall};

use super::kafka_log::LogLimiter;
use super::{Assignment, Event, Record, Source, SourceError};
use crate::dataflow::ReadingClock;
use crate::decode::Format;
use crate::telemetry::health::{Component, Health};
use crate::telemetry::process::ProcessMetrics;
use bytes::BytesMut;
use context::Context;
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
    /// The encoding of each topic's messages (`None`: detected per message).
    pub formats: Vec<Option<Format>>,
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

/// Offsets the pipeline allows to commit, per partition, with the assignment
/// they were published under.
type Committable = Arc<Mutex<BTreeMap<u32, (Assignment, i64)>>>;
/// Offsets per partition.
type Offsets = Arc<Mutex<BTreeMap<u32, i64>>>;

/// A pipeline stalled this long ([`context::STALL_GRACE`] stops reading time)
/// has its assignment paused while polling goes on (well
/// below librdkafka's `max.poll.interval.ms`; kept for real outages, since
/// librdkafka's pause and resume are best used sparingly).
pub const PAUSE_AFTER: Duration = Duration::from_secs(20);

/// A running consumer group member, read through [`Source`].
pub struct KafkaSource {
    events: Receiver<Event>,
    brokers: String,
    /// Readiness: the brokers reachable or not, and why.
    health: Health,
    committable: Committable,
    /// Offsets actually committed (acknowledged by the group coordinator) for the
    /// partitions assigned now: what a new owner would start reading from.
    committed: Offsets,
    /// Processing time that passes only while the source is really reading.
    pub clock: ReadingClock,
    context: Arc<Context>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A batch handed to the pipeline ends at this many records or this many payload
/// bytes, whichever comes first, and at most [`IN_FLIGHT`] batches wait in the
/// channel: what is read ahead is bounded in bytes (8 MiB), whatever the size of
/// a message (one span, or an OTLP request of hundreds).
const BATCH: usize = 512;
const BATCH_BYTES: usize = 1 << 20;
const IN_FLIGHT: usize = 8;
/// Keys and payloads are copied into buffers of this size, freed once the
/// last record in them is.
const ARENA_BYTES: usize = 256 << 10;

/// librdkafka settings poirot chooses over librdkafka's defaults; any of them can
/// be overridden in `[kafka.properties]`.
pub const CONSUMER_DEFAULTS: [(&str, &str); 4] = [
    // librdkafka postpones the next fetch of a partition whose prefetch queue was
    // full by this long (1 s by default): a consumer faster than one fetch then
    // idles in bursts. 10 ms keeps the pipeline fed.
    ("fetch.queue.backoff.ms", "10"),
    // The prefetch queue, for all partitions together (64 MiB by default): 8 MiB
    // is several batches of any message size, and keeps memory flat.
    ("queued.max.messages.kbytes", "8192"),
    // What one fetch brings per partition (1 MiB by default). A fetch response
    // stays in memory until its last message is consumed, and poirot reads the
    // input's and the repartition topic's partitions at once: 256 KiB each still
    // fills a batch per round trip.
    ("max.partition.fetch.bytes", "262144"),
    // Messages per partition librdkafka tries to keep queued (100,000 by default).
    ("queued.min.messages", "20000"),
];
const COMMIT_EVERY: Duration = Duration::from_secs(1);

impl KafkaSource {
    pub fn start(
        config: &KafkaSourceConfig,
        metrics: ProcessMetrics,
        health: Health,
    ) -> Result<KafkaSource, KafkaSourceError> {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let committable: Committable = Arc::default();
        let committed: Offsets = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let context = Context {
            topics: config.topics.clone(),
            formats: config.formats.clone(),
            brokers: config.brokers.clone(),
            events: tx,
            outbox: Mutex::default(),
            committable: committable.clone(),
            committed: committed.clone(),
            stop: stop.clone(),
            metrics,
            state: Mutex::default(),
            limiter: LogLimiter::default(),
            started: Instant::now(),
            last_asked_us: Default::default(),
        };
        let consumer: BaseConsumer<Context> = client_config(config).create_with_context(context)?;
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
        Ok(KafkaSource {
            events: rx,
            brokers: config.brokers.clone(),
            health,
            committable,
            committed,
            clock,
            context,
            stop,
            thread: Some(thread),
        })
    }

    /// How the connection to the brokers stands now.
    pub fn connection(&self) -> Connection {
        self.context.connection()
    }

    /// Reports the connection on /readyz; brokers that refused poirot end the run.
    fn check_connection(&self) -> Result<(), SourceError> {
        match self.connection() {
            Connection::Up => self.health.ok(Component::Kafka),
            Connection::Starting => {}
            Connection::Unreachable { reason } => self
                .health
                .failing(Component::Kafka, format!("cannot reach kafka at {}: {reason}", self.brokers)),
            Connection::Refused { reason } => {
                let line =
                    format!("kafka at {} refused poirot (authentication or TLS): {reason}", self.brokers);
                self.health.failing(Component::Kafka, line.clone());
                return Err(SourceError::Refused(line));
            }
        }
        Ok(())
    }
}

impl Source for KafkaSource {
    /// Refused credentials end the run before the next event, so an event
    /// received before (a revocation) was handled in full.
    fn next(&mut self, wait: Duration) -> Result<Option<Event>, SourceError> {
        self.context.asked();
        self.check_connection()?;
        match self.events.recv_timeout(wait) {
            Ok(e) => Ok(Some(e)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(SourceError::Stopped("the kafka consumer"))
            }
        }
    }

    /// Checked against the partition's current assignment when committing.
    fn publish(&mut self, partition: u32, assignment: Assignment, offset: i64) {
        if let Ok(mut m) = self.committable.lock() {
            m.insert(partition, (assignment, offset));
        }
    }

    fn committed(&self) -> Vec<(u32, i64)> {
        self.committed.lock().map(|m| m.iter().map(|(&p, &o)| (p, o)).collect()).unwrap_or_default()
    }

    /// Applied by the poll thread, which owns the consumer.
    fn hold_back(&mut self, partitions: Vec<u32>) {
        if let Ok(mut s) = self.context.state.lock() {
            s.hold_back = Some(partitions.into_iter().collect());
        }
    }

    /// Stops polling, commits what may be committed, and leaves the group.
    fn stop(&mut self) {
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
        Source::stop(self);
    }
}

/// The consumer's settings: poirot's, then [`CONSUMER_DEFAULTS`], then the
/// user's `[kafka.properties]`, each overriding what came before.
fn client_config(config: &KafkaSourceConfig) -> ClientConfig {
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
    for (k, v) in CONSUMER_DEFAULTS
        .iter()
        .copied()
        .chain(config.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        cc.set(k, v);
    }
    cc
}

/// The record of message `m`, its key and payload copied into `arena`: records
/// share its allocations, one per [`ARENA_BYTES`] read (unless a message is larger).
fn record(context: &Context, m: &rdkafka::message::BorrowedMessage<'_>, arena: &mut BytesMut) -> Record {
    let topic = context.topics.iter().position(|t| t == m.topic()).unwrap_or(0);
    let mut copy = |b: &[u8]| {
        arena.extend_from_slice(b);
        arena.split().freeze()
    };
    let mut record = Record {
        partition: partition_id(topic, m.partition()),
        topic,
        kafka_partition: m.partition(),
        offset: Some(m.offset()),
        key: m.key().map(&mut copy),
        payload: copy(m.payload().unwrap_or_default()),
        format: context.formats.get(topic).copied().flatten(),
        ..Record::default()
    };
    if let Some(headers) = m.headers() {
        read_headers(headers, &mut record);
    }
    record
}

/// What the repartition topic's headers say about a record.
fn read_headers(headers: &rdkafka::message::BorrowedHeaders, record: &mut Record) {
    use crate::source::repartition::{BATCH_HEADER, LINK_HEADER, PRODUCER_HEADER, WATERMARK_HEADER};
    use rdkafka::message::Headers;
    let number = |v: Option<&[u8]>| v.and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok());
    let (mut event_time, mut producer) = (None, None);
    for h in headers.iter() {
        match h.key {
            LINK_HEADER => record.link = true,
            BATCH_HEADER => record.batch = true,
            WATERMARK_HEADER => event_time = number(h.value),
            PRODUCER_HEADER => producer = number(h.value).and_then(|p| u64::try_from(p).ok()),
            _ => {}
        }
    }
    // A watermark record: (producer, event time).
    record.watermark = producer.zip(event_time);
}

/// Drops from `batch` the records of partitions revoked since the last look.
fn drop_revoked(context: &Context, batch: &mut Vec<Record>) {
    let Ok(mut s) = context.state.lock() else { return };
    if s.revoked_in_poll.is_empty() {
        return;
    }
    let revoked = std::mem::take(&mut s.revoked_in_poll);
    batch.retain(|r| !revoked.contains(&r.partition));
}

fn poll_loop(consumer: BaseConsumer<Context>, stop: Arc<AtomicBool>, clock: ReadingClock) {
    let context = consumer.context().clone();
    let mut last_commit = Instant::now();
    let mut last_cycle = Instant::now();
    let mut stall = Stall::default();
    let mut paused: Option<TopicPartitionList> = None;
    let mut arena = BytesMut::with_capacity(ARENA_BYTES);
    let mut held = HeldBack::default();
    while !stop.load(Ordering::Relaxed) {
        // What was read before goes first; the pipeline may be behind.
        let Some(delivered) = context.deliver() else { break };
        let stalled_for = stall.update(Instant::now(), delivered, context.pipeline_silent_for());
        // A pipeline blocked on a sink: pause the assignment and keep polling, so
        // the group keeps this member and nothing piles up in memory.
        let pause = stalled_for >= PAUSE_AFTER;
        let changed = context.state.lock().is_ok_and(|mut s| std::mem::take(&mut s.assignment_changed));
        let resumed = !pause && paused.is_some();
        if pause != paused.is_some() || (pause && changed) {
            set_paused(&consumer, pause, &mut paused);
        }
        if let Some(w) = context.state.lock().ok().and_then(|mut s| s.hold_back.take()) {
            held.want = w;
            held.dirty = true;
        }
        // While everything is paused for a stalled pipeline, holding back waits;
        // resuming from that resumed the held partitions too.
        if paused.is_none() && (held.dirty || changed || resumed) {
            held.apply(&consumer, &context, changed || resumed);
        }
        if !delivered && paused.is_none() {
            // Backpressure: wait for room rather than reading more.
            std::thread::sleep(Duration::from_millis(5));
        } else {
            let mut batch = Vec::new();
            let mut bytes = 0;
            let mut wait = Duration::from_millis(100);
            // The first message may take a while; the rest of a batch is what is already there.
            while batch.len() < BATCH && bytes < BATCH_BYTES {
                let polled = consumer.poll(wait);
                // A rebalance runs inside `poll`: what the batch holds of a partition
                // revoked there was read under the assignment that ended, and must not
                // reach the pipeline after it handed the partition back. (What `poll`
                // returns now is of the new assignment.)
                drop_revoked(&context, &mut batch);
                match polled {
                    Some(Ok(m)) => {
                        let r = record(&context, &m, &mut arena);
                        bytes += r.payload.len();
                        batch.push(r);
                    }
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
                                r.offset.unwrap_or(-1)
                            );
                        }
                    }
                    let before = batch.len();
                    batch.retain(|r| s.first_delivery(r.partition, r.offset.unwrap_or(-1)));
                    context.metrics.redelivered_records.inc_by((before - batch.len()) as u64);
                    // Records arriving prove the brokers reachable, whatever the last
                    // statistics or error said.
                    if !matches!(s.connection, Some(Connection::Refused { .. })) {
                        s.leaders_up = true;
                        s.connection = Some(Connection::Up);
                    }
                }
                context.enqueue(Event::Batch(batch));
            }
        }
        let at_end = context.state.lock().map(|mut s| std::mem::take(&mut s.at_end)).unwrap_or_default();
        if !at_end.is_empty() && paused.is_none() {
            context.enqueue(Event::AtEnd(at_end.into_iter().collect()));
        }
        // Reading time: what passed in this cycle, unless the pipeline is stalled,
        // the brokers cannot be reached, or a rebalance hand-off took it.
        let now = Instant::now();
        let cycle = now.duration_since(last_cycle);
        last_cycle = now;
        let rebalancing =
            context.state.lock().map(|mut s| std::mem::take(&mut s.rebalancing)).unwrap_or_default();
        let reachable = context.reading_possible();
        if stall.reading(stalled_for) && reachable {
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

#[cfg(test)]
mod tests;
