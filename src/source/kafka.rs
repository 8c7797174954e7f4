//! The Kafka source: a consumer group member on its own thread.
//!
//! A `BaseConsumer` is polled on a dedicated thread into a bounded channel of
//! batches (when the pipeline falls behind, the thread blocks and stops polling:
//! no unbounded queue). Rebalances are cooperative-sticky and reported as events.
//! Auto-commit is off: the pipeline publishes, per partition, the first offset an
//! open trace still needs, and this thread commits exactly that, every second,
//! before giving up partitions in a rebalance, and at shutdown.

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
    pub topic: String,
    pub group: String,
    /// Passed to librdkafka as they are (security.protocol, sasl.*, ssl.*, ...).
    pub properties: BTreeMap<String, String>,
}

/// One consumed message.
#[derive(Debug)]
pub struct KafkaRecord {
    pub partition: u32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
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
    topic: String,
    events: SyncSender<SourceEvent>,
    committable: Committable,
    stop: Arc<AtomicBool>,
    lag: Lag,
}

/// Messages behind the end of each partition, from librdkafka's statistics.
pub type Lag = Arc<Mutex<BTreeMap<u32, i64>>>;

/// How long a rebalance waits for the pipeline to hand revoked partitions back.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(60);

impl ClientContext for Context {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        if let Ok(mut lag) = self.lag.lock() {
            lag.clear();
            for (p, part) in &topic.partitions {
                // -1 means unknown (not fetching that partition).
                if let (Ok(p), true) = (u32::try_from(*p), part.consumer_lag >= 0) {
                    lag.insert(p, part.consumer_lag);
                }
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<u32> {
    tpl.elements().iter().filter_map(|e| u32::try_from(e.partition()).ok()).collect()
}

impl Context {
    fn commit(&self, consumer: &BaseConsumer<Self>, only: Option<&[u32]>, mode: CommitMode) {
        let offsets = match self.committable.lock() {
            Ok(m) => m.clone(),
            Err(_) => return,
        };
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            if only.is_none_or(|ps| ps.contains(&p)) {
                let _ = tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(o));
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
            let ps = partitions(tpl);
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
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let _ = self.events.send(SourceEvent::Assigned(partitions(tpl)));
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
    pub lag: Lag,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Records per batch handed to the pipeline, and batches in flight.
const BATCH: usize = 512;
const IN_FLIGHT: usize = 8;
const COMMIT_EVERY: Duration = Duration::from_secs(1);

impl KafkaSource {
    pub fn start(config: &KafkaSourceConfig) -> Result<KafkaSource, KafkaSourceError> {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let committable: Committable = Arc::default();
        let lag: Lag = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let context = Context {
            topic: config.topic.clone(),
            events: tx.clone(),
            committable: committable.clone(),
            stop: stop.clone(),
            lag: lag.clone(),
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
        consumer.subscribe(&[&config.topic])?;
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("kafka-source".into())
                .spawn(move || poll_loop(consumer, tx, stop))
                .map_err(KafkaSourceError::Thread)?
        };
        Ok(KafkaSource { events: rx, committable, lag, stop, thread: Some(thread) })
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

fn record(m: &rdkafka::message::BorrowedMessage<'_>) -> KafkaRecord {
    KafkaRecord {
        partition: u32::try_from(m.partition()).unwrap_or(0),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().unwrap_or_default().to_vec(),
    }
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
                Some(Ok(m)) => batch.push(record(&m)),
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
