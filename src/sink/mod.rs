//! Where results go: Elasticsearch, Neo4j, files, the dead-letter topic, the
//! log, the live page and Prometheus text for scrapers.
//!
//! Every sink takes the pipeline's results through one contract, [`Sink`]: a
//! [`Round`] of results in, acknowledged (or a [`SinkError`] that says whose
//! fault it is) out. The runtime commits input offsets only after every sink
//! acknowledged the round behind them.

#[cfg(feature = "servers")]
pub mod dead_letters;
pub mod documents;
#[cfg(feature = "servers")]
pub mod elasticsearch;
pub mod exposition;
pub mod files;
#[cfg(feature = "servers")]
pub mod graph;
pub mod live;
pub mod log;
#[cfg(feature = "servers")]
pub mod neo4j;
pub mod prometheus;
#[cfg(feature = "servers")]
pub mod retry;
#[cfg(feature = "servers")]
pub mod tls;
#[cfg(feature = "servers")]
pub mod web;
#[cfg(feature = "servers")]
pub mod web_security;

use crate::analysis::{Anomaly, Edges, FinishedTrace, Outputs, Resolution};
use crate::model::TraceId;

use std::sync::atomic::AtomicBool;

/// Whose fault a failed write is, which says whether a retry can help.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// The settings: wrong credentials, an untrusted certificate, a bad address.
    User,
    /// The server: down, unreachable, overloaded, restarting. Waiting helps.
    External,
    /// poirot itself: a request the server rejects as malformed.
    Internal,
}

impl Fault {
    pub fn retryable(self) -> bool {
        self == Fault::External
    }
}

/// An error that knows whose fault it is.
pub trait Classify {
    fn fault(&self) -> Fault;
}

/// What one round of the pipeline produced, handed to every sink in turn.
pub struct Round<'a> {
    /// Anomalies found this round, in the order found.
    pub anomalies: &'a [Anomaly],
    /// Reported message losses a consumer resolved this round (updates of
    /// documents written in earlier rounds, or in this one).
    pub resolutions: &'a [Resolution],
    /// Everything computed so far (RED, the service graph, edges, counters).
    pub outputs: Outputs<'a>,
    /// Edges added this round (for a sink that asked for deltas).
    pub delta: &'a Edges,
    /// Traces that closed this round, with where they ended (deltas only).
    pub finished: &'a [FinishedTrace],
    /// Per partition, an offset that was committed a while ago: records of
    /// finished traces below it are no longer needed.
    pub forget_below: &'a [(u32, i64)],
    /// Buckets of service calls completed this round (Jaeger's dependency
    /// documents; empty unless the pipeline keeps them).
    pub dependencies: &'a [crate::runtime::pipeline::DependencyBucket],
    /// Records the pipeline could not decode, for a dead-letter sink.
    pub rejected: &'a [crate::source::Rejected],
    /// The last round: write what is held for good.
    pub last: Option<Closing>,
}

/// Why a round is the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    /// A finite input ended: every trace closed, the results are whole.
    InputEnded,
    /// poirot is stopping (asked to, or after a failure) and has left the source:
    /// open traces are read again by the next run, nothing more is committed, and
    /// no server is waited for.
    Stopping,
}

/// How a write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Everything handed over is acknowledged.
    Acknowledged,
    /// poirot is stopping: what is not acknowledged is read again by the next run.
    Stopped,
}

/// A write that failed for good: whose fault it is, in one line naming the sink.
#[derive(Debug, thiserror::Error)]
#[error("{sink}: {source}")]
pub struct SinkError {
    pub sink: &'static str,
    pub fault: Fault,
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl SinkError {
    pub fn new<E: std::error::Error + Send + Sync + 'static>(sink: &'static str, fault: Fault, e: E) -> Self {
        SinkError { sink, fault, source: Box::new(e) }
    }

    /// An error that knows whose fault it is.
    pub fn classified<E: Classify + std::error::Error + Send + Sync + 'static>(
        sink: &'static str,
        e: E,
    ) -> Self {
        SinkError { sink, fault: e.fault(), source: Box::new(e) }
    }
}

/// Where results go. A sink retries what the server's faults make fail (waiting
/// out an outage, so the pipeline waits with it and nothing is dropped) and
/// returns an error only for what retrying cannot fix.
pub trait Sink {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;

    /// Whether this sink reads [`Round::delta`] and [`Round::finished`] (the
    /// pipeline keeps them only when one does).
    fn wants_deltas(&self) -> bool {
        false
    }

    /// Whether this sink reads [`Round::rejected`] (undecodable records are kept
    /// for a round only when one does).
    fn wants_rejected(&self) -> bool {
        false
    }

    /// Takes one round and returns once it is acknowledged, or poirot stops.
    fn write(&mut self, round: &Round<'_>, stop: &AtomicBool) -> Result<Written, SinkError>;

    /// The traces an earlier owner of `partition` finished and wrote here, with
    /// the last offset of each: their records are dropped when read again.
    fn finished_before(
        &mut self,
        _partition: u32,
        _stop: &AtomicBool,
    ) -> Result<Vec<(TraceId, i64)>, SinkError> {
        Ok(Vec::new())
    }
}
