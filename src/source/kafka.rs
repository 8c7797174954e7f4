//! The Kafka source: a consumer group member on its own thread.
//!
//! A `BaseConsumer` is polled on a dedicated thread into a bounded channel of
//! batches (when the pipeline falls behind, the thread blocks and stops polling:
//! no unbounded queue). Rebalances are cooperative-sticky and reported as events.
//! Auto-commit is off: the pipeline publishes, per partition, the first offset an
//! open trace still needs, and this thread commits exactly that, every second,
//! before giving up partitions in a rebalance, and at shutdown.
//!
//! The source may read several topics (the span topic and poirot's repartition
//! topic); the pipeline sees one partition id space: topic index × 2¹⁶ + partition
//! ([`partition_id`]).

use crate::sink::process::{EventLabels, ProcessMetrics};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
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

#[derive(Debug)]
pub enum SourceEvent {
    Batch(Vec<KafkaRecord>),
    Assigned(Vec<u32>),
    /// These partitions are being taken away. The pipeline finishes what it owes
    /// for them, publishes their final committable offsets, drops their state and
    /// then answers on `done`; only then are the offsets committed and the
    /// partitions released.
    Revoked {
        partitions: Vec<u32>,
        done: std::sync::mpsc::Sender<()>,
    },
}

/// Offsets the pipeline allows to commit, per partition.
pub type Committable = Arc<Mutex<BTreeMap<u32, i64>>>;

struct Context {
    topics: Vec<String>,
    events: SyncSender<SourceEvent>,
    committable: Committable,
    stop: Arc<AtomicBool>,
    metrics: ProcessMetrics,
}

/// How long a rebalance waits for the pipeline to hand revoked partitions back.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(60);

impl ClientContext for Context {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lag = &self.metrics.consumer_lag;
        lag.clear();
        for name in &self.topics {
            let Some(topic) = statistics.topics.get(name) else { continue };
            for (p, part) in &topic.partitions {
                // -1 means unknown (not fetching that partition).
                if *p >= 0 && part.consumer_lag >= 0 {
                    lag.get_or_create(&ProcessMetrics::partition(name, *p)).set(part.consumer_lag);
                }
            }
        }
    }
}

impl Context {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<u32> {
        tpl.elements()
            .iter()
            .filter_map(|e| {
                let t = self.topics.iter().position(|t| t == e.topic())?;
                Some(partition_id(t, e.partition()))
            })
            .collect()
    }
}

impl Context {
    fn commit(&self, consumer: &BaseConsumer<Self>, only: Option<&[u32]>, mode: CommitMode) {
        let offsets = match self.committable.lock() {
            Ok(m) => m.clone(),
            Err(_) => return,
        };
        let mut tpl = TopicPartitionList::new();
        for (id, o) in offsets {
            let (t, p) = split_id(id);
            if let (Some(topic), true) = (self.topics.get(t), only.is_none_or(|ps| ps.contains(&id))) {
                let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
                self.metrics.committable_offset.get_or_create(&ProcessMetrics::partition(topic, p)).set(o);
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, mode) {
                tracing::warn!("kafka commit failed: {e}");
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let ps = self.partitions(tpl);
            self.metrics.rebalances.get_or_create(&EventLabels { event: "revoked" }).inc();
            self.metrics.assigned_partitions.dec_by(ps.len() as i64);
            // Hand off cleanly: the pipeline first writes everything it owes for these
            // partitions (so the next owner sees their finished traces), then their
            // offsets are committed.
            let (done, acked) = std::sync::mpsc::channel();
            if !self.stop.load(Ordering::Relaxed)
                && self.events.send(SourceEvent::Revoked { partitions: ps.clone(), done }).is_ok()
                && acked.recv_timeout(HANDOFF_TIMEOUT).is_err()
            {
                tracing::warn!("the pipeline did not hand back partitions {ps:?} in time");
            }
            self.commit(consumer, Some(&ps), CommitMode::Sync);
            if let Ok(mut m) = self.committable.lock() {
                for p in &ps {
                    m.remove(p);
                }
            }
            for &id in &ps {
                let (t, p) = split_id(id);
                let labels = ProcessMetrics::partition(self.topics.get(t).map_or("", |s| s.as_str()), p);
                self.metrics.committable_offset.remove(&labels);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let ps = self.partitions(tpl);
                self.metrics.rebalances.get_or_create(&EventLabels { event: "assigned" }).inc();
                self.metrics.assigned_partitions.inc_by(ps.len() as i64);
                let _ = self.events.send(SourceEvent::Assigned(ps));
            }
            Rebalance::Error(e) => tracing::warn!("kafka rebalance error: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!("kafka commit failed: {e}");
        }
    }
}

/// A running source: events come out of `events`; set `stop` to end it.
pub struct KafkaSource {
    pub events: Receiver<SourceEvent>,
    pub committable: Committable,
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
        let stop = Arc::new(AtomicBool::new(false));
        let context = Context {
            topics: config.topics.clone(),
            events: tx.clone(),
            committable: committable.clone(),
            stop: stop.clone(),
            metrics,
        };
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("client.id", "poirot")
            .set("statistics.interval.ms", "5000");
        for (k, v) in &config.properties {
            cc.set(k, v);
        }
        let consumer: BaseConsumer<Context> = cc.create_with_context(context)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("kafka-source".into())
                .spawn(move || poll_loop(consumer, tx, stop))
                .map_err(KafkaSourceError::Thread)?
        };
        Ok(KafkaSource { events: rx, committable, stop, thread: Some(thread) })
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

/// Sends, waiting while the pipeline is behind (backpressure, not buffering);
/// false when the pipeline is gone or a stop was asked for.
fn send(tx: &SyncSender<SourceEvent>, mut event: SourceEvent, stop: &AtomicBool) -> bool {
    loop {
        match tx.try_send(event) {
            Ok(()) => return true,
            Err(std::sync::mpsc::TrySendError::Full(back)) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                event = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
        }
    }
}

fn poll_loop(consumer: BaseConsumer<Context>, tx: SyncSender<SourceEvent>, stop: Arc<AtomicBool>) {
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        let mut wait = Duration::from_millis(100);
        // The first message may take a while; the rest of a batch is what is already there.
        while batch.len() < BATCH {
            match consumer.poll(wait) {
                Some(Ok(m)) => batch.push(record(&consumer.context().topics, &m)),
                Some(Err(e)) => tracing::warn!("kafka: {e}"),
                None => break,
            }
            wait = Duration::ZERO;
        }
        if !batch.is_empty() && !send(&tx, SourceEvent::Batch(batch), &stop) {
            break;
        }
        if last_commit.elapsed() >= COMMIT_EVERY {
            consumer.context().commit(&consumer, None, CommitMode::Async);
            last_commit = Instant::now();
        }
    }
    consumer.context().commit(&consumer, None, CommitMode::Sync);
    consumer.unsubscribe();
}
