//! Where spans come from: Kafka (run), files (replay), and the built-in simulator
//! (demo, simulate). Each hands the runtime [`Event`]s through [`Source`].

pub mod demo;
pub mod file;
#[cfg(feature = "servers")]
pub mod kafka;
#[cfg(feature = "servers")]
pub mod kafka_check;
#[cfg(feature = "servers")]
pub mod kafka_log;
pub mod partitioner;
#[cfg(feature = "servers")]
pub mod repartition;
pub mod simulator;

use crate::decode::{DecodeError, Format};
use bytes::Bytes;
use std::time::Duration;

/// One input record: a Kafka message, a frame of a file, a simulated span.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// The pipeline's partition id (for Kafka: topic index × 2¹⁶ + partition).
    pub partition: u32,
    /// Index of the topic it was read from, among the source's topics.
    pub topic: usize,
    /// The partition in its topic.
    pub kafka_partition: i32,
    /// Where it was read, for a source whose offsets can be committed.
    pub offset: Option<i64>,
    /// Key and payload: for Kafka, slices of one buffer per batch (no allocation per record).
    pub key: Option<Bytes>,
    pub payload: Bytes,
    /// Its encoding (`None`: detected from its first bytes).
    pub format: Option<Format>,
    /// A watermark record of the repartition topic: (producer, event time µs).
    pub watermark: Option<(u64, i64)>,
    /// A link record of the repartition topic (header `poirot.link`).
    pub link: bool,
    /// A batch record of the repartition topic (header `poirot.batch`): a
    /// `jaeger.api_v2.Batch` of spans bound for its partition.
    pub batch: bool,
}

/// A record that could not be decoded, and why: for the dead-letter topic.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub record: Record,
    pub error: DecodeError,
}

/// One grant of partitions to this member of a consumer group. Offsets
/// published under an assignment that has since been revoked are never
/// committed, even when the same partition was granted again meanwhile (a
/// pipeline that answered a rebalance too late must not overwrite what the next
/// owner committed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Assignment(pub u64);

/// What a source has to say, in order.
#[derive(Debug)]
pub enum Event {
    Batch(Vec<Record>),
    /// Partitions granted to this process.
    Assigned {
        partitions: Vec<u32>,
        assignment: Assignment,
    },
    /// These partitions were read to their end (after the records before this
    /// event): their silence from now on is idleness.
    AtEnd(Vec<u32>),
    /// These partitions are being taken away. The runtime writes what it owes,
    /// publishes their final committable offsets, drops their state and then
    /// answers on `done`; only then are the offsets committed and the partitions
    /// released.
    Revoked {
        partitions: Vec<u32>,
        done: std::sync::mpsc::Sender<()>,
    },
    /// Input that could not be used at all (an unreadable file, a bad frame).
    Unreadable(DecodeError),
    /// A finite input ended.
    End,
}

/// Why a source cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The servers refused poirot (credentials, TLS): retrying cannot help.
    #[error("{0}")]
    Refused(String),
    /// The source's reader is gone.
    #[error("{0} stopped")]
    Stopped(&'static str),
    /// An input cannot be read.
    #[error("{0}")]
    Read(String),
}

/// Where records come from: the runtime's driver asks for events one at a time
/// and tells the source which offsets it may commit.
pub trait Source {
    /// The next event, waiting at most `wait`; `Ok(None)` when none came.
    fn next(&mut self, wait: Duration) -> Result<Option<Event>, SourceError>;

    /// Everything before `offset` of `partition` is written where it belongs:
    /// the source may commit it (ignored unless `assignment` is still current).
    fn publish(&mut self, _partition: u32, _assignment: Assignment, _offset: i64) {}

    /// Read nothing more from `partitions` until told otherwise (the set replaces
    /// the one before): they run ahead of the others in event time.
    fn hold_back(&mut self, _partitions: Vec<u32>) {}

    /// Offsets the group coordinator acknowledged as committed, for the
    /// partitions assigned now: what lies below is never read again.
    fn committed(&self) -> Vec<(u32, i64)> {
        Vec::new()
    }

    /// Stops reading; commits what may be committed.
    fn stop(&mut self) {}
}
