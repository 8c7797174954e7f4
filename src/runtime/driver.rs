//! The driver: the one loop every command runs. It owns the pipeline, the
//! exchange that keys records by trace id, and the sinks, and it talks to a
//! [`Source`]: `poirot run`, `replay` and `demo` differ only in the source and
//! sinks they hand it.
//!
//! Each event from the source is followed by one round: processing time moves
//! the pipeline on, what it produced goes to every sink in turn, and only once
//! every sink acknowledged the round are the offsets behind it published for
//! the source to commit. So nothing is committed that is not written, and a
//! partition taken away in a rebalance is handed over with everything it owed
//! already written (its final offsets are published before the source is told
//! it may let the partition go).

use super::exchange::{Exchange, ExchangeError};
use super::{Input, Pipeline};
use crate::analysis::{Anomaly, Outputs, Resolution};
use crate::sink::{Closing, Round, Sink, SinkError, Written};
use crate::source::{Assignment, Event, Rejected, Source, SourceError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why a run ended early.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// A finite input ended: every trace closed and was written.
    Input,
    /// poirot was asked to stop: open traces stay uncommitted and are read again.
    Stopped,
}

/// How long the driver waits for an event before moving processing time on.
const WAIT: Duration = Duration::from_millis(100);
/// Records of finished traces are forgotten below offsets committed this long
/// ago (the source commits published offsets every second).
pub const FORGET_AFTER: Duration = Duration::from_secs(10);

pub struct Driver {
    pipeline: Pipeline,
    exchange: Box<dyn Exchange>,
    sinks: Vec<Box<dyn Sink>>,
    /// The partitions assigned now, each with the grant it came with.
    assigned: BTreeMap<u32, Assignment>,
    anomalies: Vec<Anomaly>,
    resolutions: Vec<Resolution>,
    rejected: Vec<Rejected>,
    keep_rejected: bool,
    /// Offsets acknowledged as committed when last looked at; sinks forget below
    /// them one period later.
    committed: Vec<(u32, i64)>,
    last_forget: Instant,
    forget_after: Duration,
    /// A round was not acknowledged (poirot stopped first, or a sink failed):
    /// what it held is lost from here, so nothing is published any more and
    /// the next owner reads it again.
    unacknowledged: bool,
}

impl Driver {
    /// Sinks write in the order given, each round.
    pub fn new(mut pipeline: Pipeline, exchange: Box<dyn Exchange>, sinks: Vec<Box<dyn Sink>>) -> Self {
        if sinks.iter().any(|s| s.wants_deltas()) {
            pipeline.enable_deltas();
        }
        Driver {
            pipeline,
            exchange,
            keep_rejected: sinks.iter().any(|s| s.wants_rejected()),
            sinks,
            assigned: BTreeMap::new(),
            anomalies: Vec::new(),
            resolutions: Vec::new(),
            rejected: Vec::new(),
            committed: Vec::new(),
            last_forget: Instant::now(),
            forget_after: FORGET_AFTER,
            unacknowledged: false,
        }
    }

    /// What the pipeline computed, for a summary after the run.
    pub fn outputs(&self) -> Outputs<'_> {
        self.pipeline.outputs()
    }

    /// Runs until the input ends, `stop` is set, or something fails for good,
    /// and gives every sink a last round. When the input ended, that round holds
    /// the traces the end closed and is written like any other before the source
    /// stops. Otherwise the source is left first (its partitions go to other
    /// members at once), nothing more is committed, and the last round only
    /// rewrites files and flushes dead letters.
    pub fn run(&mut self, source: &mut dyn Source, stop: &AtomicBool) -> Result<Ended, DriverError> {
        let ended = self.run_until_end(source, stop);
        if matches!(ended, Ok(Ended::Input)) && !stop.load(Ordering::Relaxed) {
            let last = self.round(source, stop, Some(Closing::InputEnded));
            source.stop();
            return match last? {
                Written::Acknowledged => Ok(Ended::Input),
                Written::Stopped => Ok(Ended::Stopped),
            };
        }
        source.stop();
        self.unacknowledged = true;
        let last = self.round(source, &AtomicBool::new(true), Some(Closing::Stopping));
        ended?;
        last?;
        Ok(Ended::Stopped)
    }

    fn run_until_end(&mut self, source: &mut dyn Source, stop: &AtomicBool) -> Result<Ended, DriverError> {
        while !stop.load(Ordering::Relaxed) {
            match source.next(WAIT)? {
                Some(Event::Batch(records)) => self.route(records, stop),
                Some(Event::Assigned { partitions, assignment }) => {
                    self.assign(&partitions, assignment, stop)?
                }
                Some(Event::AtEnd(partitions)) => {
                    for p in partitions {
                        self.pipeline.push(Input::AtEnd(p));
                    }
                }
                Some(Event::Revoked { partitions, done }) => {
                    self.revoke(source, &partitions, stop)?;
                    // Only now may the source commit and let the partitions go.
                    let _ = done.send(());
                }
                Some(Event::Unreadable(e)) => {
                    self.pipeline.push(Input::Rejected(e));
                }
                Some(Event::End) => {
                    self.pipeline.push(Input::End);
                    return Ok(Ended::Input);
                }
                None => {}
            }
            self.pipeline.push(Input::Tick);
            self.exchange.tick(&mut self.pipeline, stop);
            if let Some(held) = self.exchange.held_back(self.pipeline.now_us()) {
                source.hold_back(held);
            }
            if self.round(source, stop, None)? == Written::Stopped {
                return Ok(Ended::Stopped);
            }
        }
        Ok(Ended::Stopped)
    }

    fn route(&mut self, records: Vec<crate::source::Record>, stop: &AtomicBool) {
        for record in records {
            let outcome = self.exchange.route(&record, &mut self.pipeline, stop);
            if let (0, Some(error), true) = (outcome.spans, outcome.error, self.keep_rejected) {
                self.rejected.push(Rejected { record, error });
            }
        }
    }

    /// Registers new partitions; traces a sink says an earlier owner finished are
    /// dropped when their records are read again.
    fn assign(
        &mut self,
        partitions: &[u32],
        assignment: Assignment,
        stop: &AtomicBool,
    ) -> Result<(), DriverError> {
        tracing::info!("partitions assigned: {partitions:?}");
        let now = self.pipeline.now_us();
        for &p in partitions {
            if self.exchange.assigned(p, now, stop) {
                self.pipeline.push(Input::Assigned { partition: p, gated: true });
            }
            for sink in &mut self.sinks {
                let finished = sink.finished_before(p, stop)?;
                if let Some(last) = finished.iter().map(|&(_, o)| o).max() {
                    tracing::info!(
                        "partition {p}: {} traces finished by an earlier owner (up to offset {last}) are dropped when read again",
                        finished.len()
                    );
                }
                self.pipeline.skip_finished(p, finished);
            }
            self.assigned.insert(p, assignment);
        }
        Ok(())
    }

    /// Hands partitions back: what they owed was written in the rounds before
    /// (every event is followed by one); their final offsets are published (input
    /// that went through the exchange only once acknowledged), then their open
    /// traces are dropped for the next owner to read again.
    fn revoke(
        &mut self,
        source: &mut dyn Source,
        partitions: &[u32],
        stop: &AtomicBool,
    ) -> Result<(), DriverError> {
        tracing::info!("partitions revoked: {partitions:?}");
        let acked = self.exchange.acked(stop).unwrap_or(false);
        let revoked = partitions.iter().filter_map(|p| Some((*p, *self.assigned.get(p)?)));
        if !self.unacknowledged {
            publish(&self.pipeline, &*self.exchange, source, revoked, acked);
        }
        for &p in partitions {
            self.exchange.revoked(p);
            self.pipeline.push(Input::Revoked(p));
            self.assigned.remove(&p);
        }
        Ok(())
    }

    /// Hands what the pipeline produced to every sink; once all acknowledged it,
    /// publishes the offsets no open trace needs.
    fn round(
        &mut self,
        source: &mut dyn Source,
        stop: &AtomicBool,
        last: Option<Closing>,
    ) -> Result<Written, DriverError> {
        self.anomalies.clear();
        self.anomalies.extend(self.pipeline.drain_anomalies());
        self.resolutions.clear();
        self.resolutions.extend(self.pipeline.drain_resolutions());
        // Empty unless a sink asked for deltas.
        let (delta, finished) = self.pipeline.take_finished();
        let dependencies = self.pipeline.take_dependency_buckets();
        let forget_due = last.is_none() && self.last_forget.elapsed() >= self.forget_after;
        let forget_below = if forget_due { std::mem::take(&mut self.committed) } else { Vec::new() };
        let round = Round {
            anomalies: &self.anomalies,
            resolutions: &self.resolutions,
            outputs: self.pipeline.outputs(),
            delta: &delta,
            finished: &finished,
            forget_below: &forget_below,
            dependencies: &dependencies,
            rejected: &self.rejected,
            last,
        };
        // A sink that did not acknowledge ends the round, except the last one,
        // which every sink gets (the first error is the one reported).
        let mut written = Ok(Written::Acknowledged);
        for sink in &mut self.sinks {
            let w = sink.write(&round, stop);
            if matches!(written, Ok(Written::Acknowledged)) {
                written = w;
            }
            if last.is_none() && !matches!(written, Ok(Written::Acknowledged)) {
                break;
            }
        }
        self.rejected.clear();
        if !matches!(written, Ok(Written::Acknowledged)) {
            self.unacknowledged = true;
        }
        if written? == Written::Stopped {
            return Ok(Written::Stopped);
        }
        if forget_due {
            // Only below what the coordinator acknowledged: a commit that failed
            // (Kafka down, a rebalance) means those records are read again, and
            // what says they were finished must still be there to drop them.
            self.committed = source.committed();
            self.committed.retain(|(p, _)| self.assigned.contains_key(p));
            for &(partition, offset) in &self.committed {
                self.pipeline.push(Input::Committed { partition, offset });
            }
            self.last_forget = Instant::now();
        }
        if !self.unacknowledged {
            let assigned = self.assigned.iter().map(|(&p, &a)| (p, a));
            if last.is_some() {
                // The last round waits for what was sent elsewhere.
                let acked = self.exchange.acked(stop)?;
                publish(&self.pipeline, &*self.exchange, source, assigned, acked);
            } else {
                let mut passed_on = Vec::new();
                for (p, a) in assigned {
                    match self.pipeline.committable(p) {
                        Some(o) if self.exchange.passes_on(p) => passed_on.push((p, a, o)),
                        Some(o) => source.publish(p, a, o),
                        None => {}
                    }
                }
                // Offsets of an assignment that ended meanwhile are refused by the source.
                for (p, a, o) in self.exchange.hold(passed_on, stop)? {
                    source.publish(p, a, o);
                }
            }
        }
        Ok(Written::Acknowledged)
    }
}

/// Publishes the offsets `pipeline` no longer needs for `partitions`; those of
/// partitions whose records the exchange may have passed on only when `acked`.
fn publish(
    pipeline: &Pipeline,
    exchange: &dyn Exchange,
    source: &mut dyn Source,
    partitions: impl Iterator<Item = (u32, Assignment)>,
    acked: bool,
) {
    for (p, a) in partitions.filter(|&(p, _)| acked || !exchange.passes_on(p)) {
        if let Some(o) = pipeline.committable(p) {
            source.publish(p, a, o);
        }
    }
}

#[cfg(test)]
mod tests;
