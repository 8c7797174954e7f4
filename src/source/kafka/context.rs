//! What the poll thread and librdkafka's callbacks share: the connection state,
//! the statistics (lag, leaders up, partitions read to their end), error
//! classification with rate-limited logs, the rebalance hand-off and commits.

use super::{partition_id, split_id, Committable, Connection, Offsets};
use crate::decode::Format;
use crate::source::kafka_log::{left_out_note, LogLimiter};
use crate::source::{Assignment, Event};
use crate::telemetry::process::{EventLabels, ProcessMetrics};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the poll thread and librdkafka's callbacks share.
#[derive(Default)]
pub(super) struct State {
    pub(super) connection: Option<Connection>,
    /// When the brokers became unreachable.
    pub(super) unreachable_since: Option<Instant>,
    /// The latest statistics found every assigned partition's leader up (and no
    /// transport error came after them).
    pub(super) leaders_up: bool,
    /// The partitions assigned now, each with the grant it came with.
    pub(super) assigned: BTreeMap<u32, Assignment>,
    /// Grants handed out so far.
    pub(super) grants: u64,
    /// Partitions read to their end, not reported yet.
    pub(super) at_end: BTreeSet<u32>,
    /// Time spent in rebalance callbacks since the poll thread last looked.
    pub(super) rebalancing: Duration,
    /// The assignment changed: the pause state is applied to all of it again
    /// (librdkafka keeps a partition paused across a revoke and a new assignment).
    pub(super) assignment_changed: bool,
    /// Partitions assigned whose first record has not been read yet: where
    /// reading starts is logged, for anyone following a hand-off.
    pub(super) fresh: BTreeSet<u32>,
    /// Per assigned partition, the offset after the last record handed on.
    pub(super) next_offset: BTreeMap<u32, i64>,
    /// Partitions revoked inside a `poll` since the poll thread last looked: the
    /// records of its batch in progress read from them before belong to the
    /// assignment that ended (their next owner reads them again).
    pub(super) revoked_in_poll: Vec<u32>,
    /// Partitions the pipeline asked to hold back, not applied yet.
    pub(super) hold_back: Option<BTreeSet<u32>>,
}

impl State {
    /// Whether the record at `offset` of `partition` is handed on for the first
    /// time in this assignment. Within one assignment offsets only grow: a lower
    /// one is the client fetching again what it already gave (around a pause and
    /// resume), which must not reach the pipeline twice.
    pub(super) fn first_delivery(&mut self, partition: u32, offset: i64) -> bool {
        let next = self.next_offset.entry(partition).or_insert(offset);
        if offset < *next {
            return false;
        }
        *next = offset + 1;
        true
    }
}

pub(super) struct Context {
    pub(super) topics: Vec<String>,
    /// The encoding of each topic's messages.
    pub(super) formats: Vec<Option<Format>>,
    pub(super) brokers: String,
    pub(super) events: SyncSender<Event>,
    /// Events waiting for room in `events`, oldest first (order is kept).
    pub(super) outbox: Mutex<VecDeque<Event>>,
    pub(super) committable: Committable,
    /// Offsets the group's coordinator acknowledged as committed.
    pub(super) committed: Offsets,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) metrics: ProcessMetrics,
    pub(super) state: Mutex<State>,
    pub(super) limiter: LogLimiter,
    pub(super) started: Instant,
    /// When the pipeline last asked for an event, µs after `started`.
    pub(super) last_asked_us: AtomicU64,
}

/// How long a rebalance waits for the pipeline to hand revoked partitions back
/// (it may be blocked on a sink that is down). Below librdkafka's default
/// `max.poll.interval.ms` (5 min), past which the broker would drop this member.
pub(super) const HANDOFF_TIMEOUT: Duration = Duration::from_secs(240);
/// A pipeline that takes nothing for this long is stalled: reading time stops.
pub(super) const STALL_GRACE: Duration = Duration::from_millis(500);

/// Whether a client error means the brokers refused us (credentials, TLS), or
/// cannot be reached, or neither.
pub(super) fn classify(error: &KafkaError) -> Option<bool> {
    match error.rdkafka_error_code()? {
        RDKafkaErrorCode::Authentication
        | RDKafkaErrorCode::SaslAuthenticationFailed
        | RDKafkaErrorCode::SSL => Some(true),
        RDKafkaErrorCode::AllBrokersDown
        | RDKafkaErrorCode::BrokerTransportFailure
        | RDKafkaErrorCode::Resolve => Some(false),
        _ => None,
    }
}

/// The published offsets that may be committed: those published under the
/// assignment `current` holds for their partition. An offset published under an
/// earlier grant (by a pipeline that answered a revocation too late) is stale
/// even when the partition is assigned again: the owners in between moved on.
fn owned_offsets(
    published: &BTreeMap<u32, (Assignment, i64)>,
    current: &BTreeMap<u32, Assignment>,
) -> Vec<(u32, i64)> {
    published.iter().filter(|(p, (a, _))| current.get(p) == Some(a)).map(|(&p, &(_, o))| (p, o)).collect()
}

/// Whether every record of a partition up to its end (as of the latest fetch
/// response) was handed to the poll thread: the application's position (or, before the first record, the
/// committed offset, or the start of an empty partition) is at the last
/// stable offset (the high watermark outside transactions).
fn read_to_end(part: &rdkafka::statistics::Partition) -> bool {
    let end = if part.ls_offset >= 0 { part.ls_offset } else { part.hi_offset };
    let position = if part.app_offset >= 0 {
        part.app_offset
    } else if part.committed_offset >= 0 {
        part.committed_offset
    } else if part.lo_offset == end {
        part.lo_offset // nothing to read at all
    } else {
        return false;
    };
    end >= 0 && position >= end
}

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
        let Ok(mut state) = self.state.lock() else { return };
        let up: BTreeSet<i32> = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state == "UP")
            .map(|b| b.nodeid)
            .collect();
        let mut leaders_up = !up.is_empty();
        let mut at_end = Vec::new();
        for &id in state.assigned.keys() {
            let (t, p) = split_id(id);
            let part = self.topics.get(t).and_then(|name| statistics.topics.get(name)?.partitions.get(&p));
            let Some(part) = part else {
                continue; // not in these statistics yet: nothing known against it
            };
            leaders_up &= up.contains(&part.leader);
            if read_to_end(part) {
                at_end.push(id);
            }
        }
        state.at_end.extend(at_end);
        state.leaders_up = leaders_up;
        if leaders_up {
            if let Some(since) = state.unreachable_since.take() {
                tracing::info!("kafka at {} reachable again after {:.0?}", self.brokers, since.elapsed());
            }
            if !matches!(state.connection, Some(Connection::Refused { .. })) {
                state.connection = Some(Connection::Up);
            }
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.limiter.log("consumer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let Ok(mut state) = self.state.lock() else { return };
        match classify(&error) {
            Some(true) => {
                if !matches!(state.connection, Some(Connection::Refused { .. })) {
                    tracing::error!("kafka at {} refused poirot: {reason}", self.brokers);
                }
                state.connection = Some(Connection::Refused { reason: reason.to_owned() });
                state.leaders_up = false;
            }
            Some(false) => {
                state.leaders_up = false;
                let all_down = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
                if all_down && state.unreachable_since.is_none() {
                    state.unreachable_since = Some(Instant::now());
                    tracing::error!(
                        "cannot reach kafka at {}: {reason}; retrying with backoff",
                        self.brokers
                    );
                    let _ = self.limiter.admit("unreachable", Instant::now());
                } else if let Some(since) = state.unreachable_since {
                    if let Some(left_out) = self.limiter.admit("unreachable", Instant::now()) {
                        tracing::warn!(
                            "still cannot reach kafka at {} after {:.0?}: {reason}{}",
                            self.brokers,
                            since.elapsed(),
                            left_out_note(left_out)
                        );
                    }
                } else {
                    self.limiter.error("consumer", &error, reason);
                }
                if all_down && !matches!(state.connection, Some(Connection::Refused { .. })) {
                    state.connection = Some(Connection::Unreachable { reason: reason.to_owned() });
                }
            }
            None => self.limiter.error("consumer", &error, reason),
        }
    }
}

impl Context {
    pub(super) fn partitions(&self, tpl: &TopicPartitionList) -> Vec<u32> {
        tpl.elements()
            .iter()
            .filter_map(|e| {
                let t = self.topics.iter().position(|t| t == e.topic())?;
                Some(partition_id(t, e.partition()))
            })
            .collect()
    }

    /// Commits the offsets published under the current assignment of each partition
    /// or, during a revocation, under the assignment being given up (`revoking`).
    pub(super) fn commit(
        &self,
        consumer: &BaseConsumer<Self>,
        revoking: Option<&BTreeMap<u32, Assignment>>,
        mode: CommitMode,
    ) {
        let offsets = match self.committable.lock() {
            Ok(m) => m.clone(),
            Err(_) => return,
        };
        let current = match (revoking, self.state.lock()) {
            (Some(r), _) => r.clone(),
            (None, Ok(s)) => s.assigned.clone(),
            (None, Err(_)) => return,
        };
        let mut tpl = TopicPartitionList::new();
        for (id, o) in owned_offsets(&offsets, &current) {
            let (t, p) = split_id(id);
            if let Some(topic) = self.topics.get(t) {
                let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
                self.metrics.committable_offset.get_or_create(&ProcessMetrics::partition(topic, p)).set(o);
            }
        }
        if tpl.count() > 0 {
            match consumer.commit(&tpl, mode) {
                Ok(()) if matches!(mode, CommitMode::Sync) => self.record_committed(&tpl),
                Ok(()) => {}
                Err(e) => self.limiter.error("commit", &e, &format!("kafka commit failed: {e}")),
            }
        }
    }

    /// Notes the offsets of `tpl` that the coordinator acknowledged, for the
    /// partitions still assigned (an answer may come after a revocation).
    pub(super) fn record_committed(&self, tpl: &TopicPartitionList) {
        let Ok(assigned) = self.state.lock().map(|s| s.assigned.clone()) else { return };
        let Ok(mut committed) = self.committed.lock() else { return };
        for e in tpl.elements() {
            let Some(t) = self.topics.iter().position(|t| t == e.topic()) else { continue };
            let id = partition_id(t, e.partition());
            if let (Ok(()), Offset::Offset(o), true) = (e.error(), e.offset(), assigned.contains_key(&id)) {
                let entry = committed.entry(id).or_insert(o);
                *entry = (*entry).max(o);
            }
        }
    }

    pub(super) fn enqueue(&self, event: Event) {
        if let Ok(mut q) = self.outbox.lock() {
            q.push_back(event);
        }
    }

    /// Hands queued events on without waiting: `Some(true)` when none is left,
    /// `None` when the pipeline is gone.
    pub(super) fn deliver(&self) -> Option<bool> {
        let mut q = self.outbox.lock().ok()?;
        while let Some(event) = q.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(back)) => {
                    q.push_front(back);
                    return Some(false);
                }
                Err(TrySendError::Disconnected(_)) => return None,
            }
        }
        Some(true)
    }

    /// Hands every queued event on, waiting for the pipeline until `deadline`;
    /// false when it is gone, a stop was asked for, or the deadline passed.
    pub(super) fn deliver_all(&self, deadline: Instant) -> bool {
        loop {
            match self.deliver() {
                Some(true) => return true,
                None => return false,
                Some(false) if self.stop.load(Ordering::Relaxed) || Instant::now() >= deadline => {
                    return false
                }
                Some(false) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// The pipeline asks for an event (it is not blocked).
    pub(super) fn asked(&self) {
        self.last_asked_us.store(self.started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// How long ago the pipeline last asked for an event.
    pub(super) fn pipeline_silent_for(&self) -> Duration {
        let asked = Duration::from_micros(self.last_asked_us.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(asked)
    }

    pub(super) fn connection(&self) -> Connection {
        self.state.lock().ok().and_then(|s| s.connection.clone()).unwrap_or(Connection::Starting)
    }

    /// Whether the brokers the source reads from are reachable right now.
    pub(super) fn reading_possible(&self) -> bool {
        self.state.lock().is_ok_and(|s| s.leaders_up && s.connection == Some(Connection::Up))
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let started = Instant::now();
        if let Rebalance::Revoke(tpl) = rebalance {
            let ps = self.partitions(tpl);
            self.metrics.rebalances.get_or_create(&EventLabels { event: "revoked" }).inc();
            self.metrics.assigned_partitions.dec_by(ps.len() as i64);
            let mut revoking = BTreeMap::new();
            if let Ok(mut s) = self.state.lock() {
                for p in &ps {
                    if let Some(a) = s.assigned.remove(p) {
                        revoking.insert(*p, a);
                    }
                    s.at_end.remove(p);
                    s.fresh.remove(p);
                    s.next_offset.remove(p);
                }
                s.revoked_in_poll.extend(ps.iter().copied());
            }
            let _work = crate::telemetry::work(
                "kafka.revoke",
                vec![opentelemetry::KeyValue::new("partitions", format!("{ps:?}"))],
            );
            // Hand off cleanly: the pipeline first gets every record read before
            // (in order), writes everything it owes for these partitions (so the
            // next owner sees their finished traces), then their offsets are committed.
            let (done, acked) = std::sync::mpsc::channel();
            if !self.stop.load(Ordering::Relaxed) {
                self.enqueue(Event::Revoked { partitions: ps.clone(), done });
                let deadline = started + HANDOFF_TIMEOUT;
                let handed_back = self.deliver_all(deadline)
                    && acked.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok();
                if !handed_back && !self.stop.load(Ordering::Relaxed) {
                    tracing::warn!("the pipeline did not hand back partitions {ps:?} in time");
                }
            }
            self.commit(consumer, Some(&revoking), CommitMode::Sync);
            if let Ok(mut m) = self.committable.lock() {
                for p in &ps {
                    m.remove(p);
                }
            }
            if let Ok(mut m) = self.committed.lock() {
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
        if let Ok(mut s) = self.state.lock() {
            s.rebalancing += started.elapsed();
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let ps = self.partitions(tpl);
                self.metrics.rebalances.get_or_create(&EventLabels { event: "assigned" }).inc();
                self.metrics.assigned_partitions.inc_by(ps.len() as i64);
                let Ok(mut s) = self.state.lock() else { return };
                s.grants += 1;
                let assignment = Assignment(s.grants);
                s.assigned.extend(ps.iter().map(|&p| (p, assignment)));
                s.fresh.extend(ps.iter().copied());
                for p in &ps {
                    s.next_offset.remove(p);
                }
                s.assignment_changed = true;
                // The new leaders' state is known with the next statistics.
                s.leaders_up = false;
                drop(s);
                self.enqueue(Event::Assigned { partitions: ps, assignment });
            }
            Rebalance::Error(e) => tracing::warn!("kafka rebalance error: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = &result {
            self.limiter.error("commit", e, &format!("kafka commit failed: {e}"));
        }
        // Per partition: some may have been committed even when others failed.
        self.record_committed(offsets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_fetched_again_within_one_assignment_is_not_handed_on_twice() {
        let mut s = State::default();
        assert!(s.first_delivery(3, 100));
        assert!(s.first_delivery(3, 101));
        assert!(!s.first_delivery(3, 100), "fetched again after a resume");
        assert!(!s.first_delivery(3, 101));
        assert!(s.first_delivery(3, 102));
        assert!(s.first_delivery(4, 7), "partitions apart");
        s.next_offset.remove(&3); // a new assignment starts wherever it is read from
        assert!(s.first_delivery(3, 50));
    }

    #[test]
    fn only_offsets_published_under_the_current_grant_are_committed() {
        let (first, second) = (Assignment(1), Assignment(2));
        // Partition 0 was granted, revoked and granted again; the pipeline's late answer to
        // the revocation published under the first grant. Partition 1 is no longer assigned.
        let published = BTreeMap::from([(0, (first, 900)), (1, (first, 40)), (2, (second, 7))]);
        let current = BTreeMap::from([(0, second), (2, second)]);
        assert_eq!(owned_offsets(&published, &current), vec![(2, 7)]);
        let current = BTreeMap::from([(0, first), (1, first)]);
        assert_eq!(owned_offsets(&published, &current), vec![(0, 900), (1, 40)]);
    }
}
