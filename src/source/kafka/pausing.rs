//! What keeps the consumer from reading: the whole assignment paused while the
//! pipeline is stalled ([`Stall`], [`set_paused`]), and partitions held back at
//! the pipeline's request ([`HeldBack`]).

use super::context::{Context, STALL_GRACE};
use super::split_id;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Pauses the assignment, or resumes exactly what was paused (a partition
/// revoked meanwhile included: librdkafka keeps it paused should it come back).
pub(super) fn set_paused(
    consumer: &BaseConsumer<Context>,
    pause: bool,
    paused: &mut Option<TopicPartitionList>,
) {
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

/// Partitions held back at the pipeline's request ([`Source::hold_back`]).
#[derive(Default)]
pub(super) struct HeldBack {
    /// What the pipeline asked for.
    pub(super) want: BTreeSet<u32>,
    /// What is paused at the consumer for it.
    paused: BTreeSet<u32>,
    pub(super) dirty: bool,
}

impl HeldBack {
    /// Pauses what is wanted and assigned, resumes what no longer is. `reset`:
    /// the assignment changed or everything was resumed, so what was paused for
    /// it is resumed first (librdkafka keeps a revoked partition paused should it
    /// come back).
    pub(super) fn apply(&mut self, consumer: &BaseConsumer<Context>, context: &Context, reset: bool) {
        self.dirty = false;
        let assigned: BTreeSet<u32> =
            context.state.lock().map(|s| s.assigned.keys().copied().collect()).unwrap_or_default();
        let want: BTreeSet<u32> = self.want.intersection(&assigned).copied().collect();
        let resume: Vec<u32> = if reset {
            std::mem::take(&mut self.paused).into_iter().collect()
        } else {
            self.paused.difference(&want).copied().collect()
        };
        let pause: Vec<u32> = want.difference(&self.paused).copied().collect();
        let list = |ids: &[u32]| {
            let mut tpl = TopicPartitionList::new();
            for &id in ids {
                let (topic, partition) = split_id(id);
                if let Some(name) = context.topics.get(topic) {
                    tpl.add_partition(name, partition);
                }
            }
            tpl
        };
        if !resume.is_empty() {
            if let Err(e) = consumer.resume(&list(&resume)) {
                tracing::warn!("kafka: cannot resume partitions held back: {e}");
            }
        }
        if !pause.is_empty() {
            if let Err(e) = consumer.pause(&list(&pause)) {
                tracing::warn!("kafka: cannot hold back partitions running ahead: {e}");
            }
        }
        if !resume.is_empty() || !pause.is_empty() {
            tracing::debug!("kafka: holding back {want:?} (resumed {resume:?})");
        }
        self.paused = want;
        context.metrics.held_back_partitions.set(self.paused.len() as i64);
    }
}

/// Whether the pipeline keeps up with the source. It does while it asks for
/// events ([`Source::next`]) and takes what is handed to it; a pipeline blocked
/// on a sink does neither, however much room is left in the channel, and the
/// events already in the channel wait unseen. While it is stalled reading time
/// stands still, so no partition looks idle because of the stall and no span
/// that waited in the channel is late when it is finally seen.
#[derive(Default)]
pub(super) struct Stall {
    since: Option<Instant>,
    /// The pipeline has not asked for an event for [`STALL_GRACE`].
    pipeline_away: bool,
}

impl Stall {
    /// Notes a cycle at `now`: whether everything queued was handed over, and how
    /// long ago the pipeline last asked for an event. Returns how long it has been stalled.
    pub(super) fn update(&mut self, now: Instant, delivered: bool, pipeline_silent: Duration) -> Duration {
        self.pipeline_away = pipeline_silent >= STALL_GRACE;
        if delivered && !self.pipeline_away {
            self.since = None;
        } else {
            self.since.get_or_insert(now);
        }
        self.since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Whether reading time passes: the pipeline asks for events, and a
    /// backlog it cannot take at once is brief.
    pub(super) fn reading(&self, stalled_for: Duration) -> bool {
        !self.pipeline_away && stalled_for < STALL_GRACE
    }
}
