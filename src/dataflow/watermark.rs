//! Event-time watermarks, one per input partition.
//!
//! Input is keyed by trace id, so each partition carries whole traces and its
//! traces close with its own event time: the largest event time it delivered
//! minus the allowed out-of-orderness. A partition that delivered nothing for
//! `idle_timeout` of processing time, or that has ended, is idle: its event time
//! then moves on at the rate of processing time from where its data left it, so
//! its last traces still close. A partition's watermark never goes back; a
//! partition that is forgotten (revoked) starts anew when it is assigned again.
//!
//! A live source measures processing time on its reading clock
//! ([`crate::dataflow::ReadingClock`]), which stands still while the source
//! cannot read (the pipeline blocked on a sink, every broker unreachable, a
//! rebalance), and registers its partitions with [`WatermarkTracker::register_gated`]:
//! such a partition may turn idle only after the source has read it to its end,
//! so a partition whose backlog has not been delivered yet never moves on.

use super::{Clock, EventTime};
use rustc_hash::FxHashMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
pub struct WatermarkConfig {
    pub out_of_orderness_us: i64,
    pub idle_timeout_us: i64,
}

/// How many idle timeouts a gated partition whose end was never reported stays
/// silent before it moves on all the same.
const GATE_PATIENCE: i64 = 4;

#[derive(Clone, Copy, Debug)]
struct Partition {
    max_event: EventTime,
    /// The largest event time of elements that do not move the watermark while a
    /// bound is known (spans of a shuffled partition, whose upstream producers
    /// bound it): where its event time stands once nothing bounds it.
    max_seen: EventTime,
    last_active_us: i64,
    /// Delivers nothing more (end of a file, or no upstream bounds it): idle now.
    ended: bool,
    /// Idle only once read to its end ([`WatermarkTracker::register_gated`]).
    gated: bool,
    /// The source reported it read to the end and nothing arrived since.
    at_end: bool,
    /// The watermark last given out for it.
    emitted: EventTime,
}

impl Partition {
    fn new(now: i64) -> Self {
        Partition {
            max_event: EventTime::MIN,
            max_seen: EventTime::MIN,
            last_active_us: now,
            ended: false,
            gated: false,
            at_end: false,
            emitted: EventTime::MIN,
        }
    }

    /// Its watermark at processing time `now`.
    fn watermark(&self, config: &WatermarkConfig, now: i64) -> EventTime {
        let silent = (now - self.last_active_us).max(0);
        // A gated partition waits for its end to be reported; should that report never
        // come (the source's statistics can miss it), a much longer silence of reading
        // time still lets it move on, so its last traces close.
        let waited = if !self.gated || self.at_end {
            config.idle_timeout_us
        } else {
            GATE_PATIENCE * config.idle_timeout_us
        };
        let idle = self.ended || silent >= waited;
        let base = if idle { self.max_event.max(self.max_seen) } else { self.max_event };
        if base == EventTime::MIN {
            return EventTime::MIN;
        }
        let w = base.saturating_sub(config.out_of_orderness_us);
        if idle {
            w.saturating_add(silent)
        } else {
            w
        }
    }

    /// Gives out its watermark if it advanced.
    fn advance(&mut self, config: &WatermarkConfig, now: i64) -> Option<EventTime> {
        let w = self.watermark(config, now);
        if w > self.emitted {
            self.emitted = w;
            Some(w)
        } else {
            None
        }
    }
}

pub struct WatermarkTracker {
    config: WatermarkConfig,
    clock: Arc<dyn Clock>,
    /// Partition id (sparse: topic index × 2¹⁶ + partition) → its event time.
    partitions: FxHashMap<u32, Partition>,
}

impl WatermarkTracker {
    pub fn new(config: WatermarkConfig, clock: Arc<dyn Clock>) -> Self {
        WatermarkTracker { config, clock, partitions: FxHashMap::default() }
    }

    /// Processing time now, from the tracker's clock.
    pub fn now_us(&self) -> i64 {
        self.clock.now_us()
    }

    /// The least watermark over the partitions with data (for people to read:
    /// how far behind the slowest partition is).
    pub fn current(&self) -> EventTime {
        self.partitions
            .values()
            .map(|p| p.emitted)
            .filter(|&w| w != EventTime::MIN)
            .min()
            .unwrap_or(EventTime::MIN)
    }

    /// The watermark last given out for `partition` (`EventTime::MIN` before any).
    pub fn watermark_of(&self, partition: u32) -> EventTime {
        self.partitions.get(&partition).map_or(EventTime::MIN, |p| p.emitted)
    }

    fn partition(&mut self, p: u32, now: i64) -> &mut Partition {
        self.partitions.entry(p).or_insert_with(|| Partition::new(now))
    }

    /// Notes an element of `partition` with `event_time`; returns the partition's
    /// new watermark if it advanced.
    pub fn observe(&mut self, partition: u32, event_time: EventTime) -> Option<EventTime> {
        let now = self.clock.now_us();
        self.observe_at(partition, event_time, now)
    }

    /// [`observe`](Self::observe) with processing time `now` read by the caller
    /// (once per record rather than once per span).
    pub fn observe_at(&mut self, partition: u32, event_time: EventTime, now: i64) -> Option<EventTime> {
        let config = self.config;
        let part = self.partition(partition, now);
        part.last_active_us = now;
        part.ended = false;
        part.at_end = false;
        if event_time <= part.max_event {
            return None; // cannot raise this partition's watermark
        }
        part.max_event = event_time;
        part.advance(&config, now)
    }

    /// Notes an element of `partition` with `event_time` that does not move its
    /// watermark while something bounds it (a shuffled span): it counts once the
    /// partition is idle, so that a partition whose upstream went from "nothing
    /// known" straight to "bounds nothing" still closes its traces. Silence is
    /// counted from it.
    pub fn saw(&mut self, partition: u32, event_time: EventTime, now: i64) {
        let part = self.partition(partition, now);
        part.max_seen = part.max_seen.max(event_time);
        part.last_active_us = part.last_active_us.max(now);
    }

    /// Processing time passed: the partitions whose watermark idleness moved on.
    pub fn tick(&mut self) -> Vec<(u32, EventTime)> {
        let now = self.clock.now_us();
        let config = self.config;
        let mut moved: Vec<(u32, EventTime)> =
            self.partitions.iter_mut().filter_map(|(&id, p)| Some((id, p.advance(&config, now)?))).collect();
        moved.sort_unstable();
        moved
    }

    /// `partition` was assigned: its event time starts from its first element.
    pub fn register(&mut self, partition: u32) {
        let now = self.clock.now_us();
        let part = self.partition(partition, now);
        part.ended = false;
        part.last_active_us = now;
    }

    /// Like [`register`](Self::register), for a source that can tell when it read a
    /// partition to its end ([`at_end`](Self::at_end)): until then the partition never
    /// counts as idle, however long it stays silent (its backlog may still be on
    /// its way).
    pub fn register_gated(&mut self, partition: u32) {
        self.register(partition);
        let now = self.clock.now_us();
        let part = self.partition(partition, now);
        part.gated = true;
        part.at_end = false;
    }

    /// The source read `partition` to its end: from now on its silence counts as
    /// idleness.
    pub fn at_end(&mut self, partition: u32) {
        let now = self.clock.now_us();
        if let Some(part) = self.partitions.get_mut(&partition) {
            if !part.at_end {
                part.at_end = true;
                // Silence is counted from here: before, the partition was still being read.
                part.last_active_us = part.last_active_us.max(now);
            }
        }
    }

    /// `partition` will deliver nothing more for now (end of a file; no upstream
    /// producer bounds it): it is idle at once. Returns its watermark if it advanced.
    pub fn end_partition(&mut self, partition: u32) -> Option<EventTime> {
        let now = self.clock.now_us();
        let config = self.config;
        let part = self.partition(partition, now);
        part.ended = true;
        part.advance(&config, now)
    }

    /// `partition` was taken away: its event time is forgotten.
    pub fn forget(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::ManualClock;

    fn tracker(clock: &ManualClock) -> WatermarkTracker {
        let config = WatermarkConfig { out_of_orderness_us: 5, idle_timeout_us: 100 };
        WatermarkTracker::new(config, Arc::new(clock.clone()))
    }

    #[test]
    fn each_partition_has_its_own_watermark() {
        let clock = ManualClock::new(0);
        let mut w = tracker(&clock);
        assert_eq!(w.observe(0, 100), Some(95));
        assert_eq!(w.observe(1, 50), Some(45), "partition 1 does not hold partition 0 back");
        assert_eq!(w.observe(0, 90), None, "a watermark never goes back");
        assert_eq!(w.current(), 45, "the slowest, for people to read");
        assert_eq!(w.observe(1, 150), Some(145));
    }

    #[test]
    fn an_idle_partition_moves_on_with_processing_time() {
        let clock = ManualClock::new(0);
        let mut w = tracker(&clock);
        w.observe(0, 1000);
        w.observe(1, 40);
        clock.advance(60);
        assert_eq!(w.observe(0, 1100), Some(1095));
        assert_eq!(w.tick(), vec![]);
        clock.advance(60); // partition 1 silent for 120 > 100; partition 0 for 60
        assert_eq!(w.tick(), vec![(1, 35 + 120)]);
        clock.advance(10);
        assert_eq!(w.tick(), vec![(1, 35 + 130)]);
    }

    #[test]
    fn a_gated_partition_is_not_idle_before_it_was_read_to_its_end() {
        let clock = ManualClock::new(0);
        let mut w = tracker(&clock);
        w.register_gated(1);
        assert_eq!(w.observe(1, 1000), Some(995));
        clock.advance(300);
        assert_eq!(w.tick(), vec![], "never read to its end: its backlog may be on its way");
        w.at_end(1);
        clock.advance(99);
        assert_eq!(w.tick(), vec![], "its silence counts from its end");
        clock.advance(2);
        assert_eq!(w.tick(), vec![(1, 995 + 101)]);
        // New data: it waits for its end again.
        assert_eq!(w.observe(1, 2000), Some(1995));
        clock.advance(300);
        assert_eq!(w.tick(), vec![]);
        clock.advance(101);
        assert_eq!(
            w.tick(),
            vec![(1, 1995 + 401)],
            "its end never reported: it moves on after 4 idle timeouts"
        );
    }

    #[test]
    fn a_stopped_reading_clock_keeps_every_partition_where_it_is() {
        // While the source cannot read, its reading clock stands still: however long
        // the stall lasts in wall time, nothing turns idle and event time does not run on.
        let reading = crate::dataflow::ReadingClock::new();
        let config = WatermarkConfig { out_of_orderness_us: 5, idle_timeout_us: 100 };
        let mut w = WatermarkTracker::new(config, Arc::new(reading.clone()));
        w.register_gated(0);
        w.observe(0, 1000);
        w.at_end(0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(w.tick(), vec![]);
        reading.advance(150);
        assert_eq!(w.tick(), vec![(0, 995 + 150)], "idle, then it moves with reading time only");
    }

    #[test]
    fn an_ended_partition_is_idle_at_once_and_a_forgotten_one_starts_anew() {
        let clock = ManualClock::new(0);
        let mut w = tracker(&clock);
        w.observe(0, 100);
        clock.advance(10);
        assert_eq!(w.end_partition(0), Some(105));
        w.forget(0);
        assert_eq!(w.current(), EventTime::MIN);
        assert_eq!(w.observe(0, 50), Some(45), "assigned again: from where it is read");
    }
}
