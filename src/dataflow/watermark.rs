//! Event-time watermarks across input partitions.
//!
//! Each partition's watermark is the largest event time it delivered minus the
//! allowed out-of-orderness. The pipeline's watermark is the minimum over the
//! partitions that are active: a partition that delivered nothing for
//! `idle_timeout` of processing time, or that has ended, no longer holds time
//! back. When every partition is idle, event time keeps moving at the rate of
//! processing time from where the data left it, so the last traces still close.
//! The watermark never goes back.

use super::{Clock, EventTime};
use rustc_hash::FxHashMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
pub struct WatermarkConfig {
    pub out_of_orderness_us: i64,
    pub idle_timeout_us: i64,
}

#[derive(Clone, Copy, Debug)]
struct Partition {
    max_event: EventTime,
    last_active_us: i64,
    ended: bool,
    /// Registered or delivered at least once (an `end_partition` of an unknown id creates it unknown).
    known: bool,
}

pub struct WatermarkTracker {
    config: WatermarkConfig,
    clock: Arc<dyn Clock>,
    /// Partition id → index in `partitions` (ids are sparse: topic index × 2¹⁶ + partition).
    index: FxHashMap<u32, usize>,
    partitions: Vec<Partition>,
    current: EventTime,
}

impl WatermarkTracker {
    pub fn new(config: WatermarkConfig, clock: Arc<dyn Clock>) -> Self {
        WatermarkTracker {
            config,
            clock,
            index: FxHashMap::default(),
            partitions: Vec::new(),
            current: EventTime::MIN,
        }
    }

    /// Processing time now, from the tracker's clock.
    pub fn now_us(&self) -> i64 {
        self.clock.now_us()
    }

    pub fn current(&self) -> EventTime {
        self.current
    }

    fn partition(&mut self, p: u32) -> &mut Partition {
        let next = self.partitions.len();
        let i = *self.index.entry(p).or_insert(next);
        if i == next {
            self.partitions.push(Partition {
                max_event: EventTime::MIN,
                last_active_us: 0,
                ended: false,
                known: false,
            });
        }
        &mut self.partitions[i]
    }

    /// Notes an element of `partition` with `event_time`; returns the new watermark
    /// if it advanced.
    pub fn observe(&mut self, partition: u32, event_time: EventTime) -> Option<EventTime> {
        let now = self.clock.now_us();
        self.observe_at(partition, event_time, now)
    }

    /// [`observe`](Self::observe) with processing time `now` read by the caller
    /// (once per record rather than once per span).
    pub fn observe_at(&mut self, partition: u32, event_time: EventTime, now: i64) -> Option<EventTime> {
        let part = self.partition(partition);
        part.last_active_us = now;
        part.ended = false;
        part.known = true;
        if event_time <= part.max_event {
            return None; // cannot raise this partition's watermark
        }
        part.max_event = event_time;
        self.recompute(now)
    }

    /// Processing time passed with no element: idle partitions may release time.
    pub fn tick(&mut self) -> Option<EventTime> {
        let now = self.clock.now_us();
        self.recompute(now)
    }

    /// `partition` was assigned: until it delivers or turns idle it holds time back,
    /// so a partition that is merely slower to start does not make others' spans late.
    pub fn register(&mut self, partition: u32) {
        let now = self.clock.now_us();
        let part = self.partition(partition);
        part.ended = false;
        part.known = true;
        part.last_active_us = now;
    }

    /// `partition` delivers records but no event time (they are re-keyed elsewhere):
    /// while it has none, it stops holding time back, as an ended one; its first
    /// element makes it active again. Returns the new watermark if it advanced.
    pub fn release_if_empty(&mut self, partition: u32) -> Option<EventTime> {
        let p = self.partition(partition);
        if p.max_event != EventTime::MIN || p.ended || !p.known {
            return None;
        }
        p.ended = true;
        let now = self.clock.now_us();
        self.recompute(now)
    }

    /// `partition` will deliver nothing more (end of a file, or revoked).
    pub fn end_partition(&mut self, partition: u32) -> Option<EventTime> {
        self.partition(partition).ended = true;
        let now = self.clock.now_us();
        self.recompute(now)
    }

    fn recompute(&mut self, now: i64) -> Option<EventTime> {
        let ooo = self.config.out_of_orderness_us;
        let idle = self.config.idle_timeout_us;
        let mut active_min: Option<EventTime> = None;
        let mut latest: Option<(EventTime, i64)> = None; // max event, its last activity
        for p in &self.partitions {
            let active = p.known && !p.ended && now - p.last_active_us < idle;
            if active {
                // A registered partition without data yet holds time at its start.
                let w = if p.max_event == EventTime::MIN {
                    EventTime::MIN
                } else {
                    p.max_event.saturating_sub(ooo)
                };
                active_min = Some(active_min.map_or(w, |m| m.min(w)));
            }
            if p.max_event == EventTime::MIN {
                continue;
            }
            if latest.is_none_or(|(e, _)| p.max_event > e) {
                latest = Some((p.max_event, p.last_active_us));
            }
        }
        let candidate = match (active_min, latest) {
            (Some(EventTime::MIN), _) => return None,
            (Some(w), _) => w,
            // Everything idle or ended: time flows on from the newest data.
            (None, Some((e, active))) => e.saturating_sub(ooo).saturating_add((now - active).max(0)),
            (None, None) => return None,
        };
        if candidate > self.current {
            self.current = candidate;
            Some(candidate)
        } else {
            None
        }
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
    fn minimum_over_partitions_minus_out_of_orderness() {
        let clock = ManualClock::new(0);
        let mut w = tracker(&clock);
        assert_eq!(w.observe(0, 100), Some(95));
        assert_eq!(w.observe(1, 50), None, "partition 1 holds time back");
        assert_eq!(w.current(), 95, "the watermark never goes back");
        assert_eq!(w.observe(0, 200), None);
        assert_eq!(w.observe(1, 150), Some(145));
    }

    #[test]
    fn idle_partition_does_not_stall_time() {
        let clock = ManualClock::new(0);
        let mut w = tracker(&clock);
        w.observe(0, 100);
        w.observe(1, 40);
        assert_eq!(w.current(), 95);
        clock.advance(60);
        assert_eq!(w.observe(0, 300), None, "partition 1 is still active");
        clock.advance(60); // partition 1 idle for 120 > 100; partition 0 was active 60 ago
        assert_eq!(w.tick(), Some(295));
    }

    #[test]
    fn all_idle_lets_time_flow_with_processing_time() {
        let clock = ManualClock::new(0);
        let mut w = tracker(&clock);
        w.observe(0, 1000);
        clock.advance(150);
        assert_eq!(w.tick(), Some(1000 - 5 + 150));
        clock.advance(10);
        assert_eq!(w.tick(), Some(1000 - 5 + 160));
    }

    #[test]
    fn a_registered_partition_without_data_holds_time_until_idle() {
        let clock = ManualClock::new(1);
        let mut w = tracker(&clock);
        w.register(1);
        assert_eq!(w.observe(0, 100), None, "partition 1 has not delivered yet");
        clock.advance(150);
        assert_eq!(w.tick(), Some(95 + 150), "idle now; then everything is idle and time flows");
        w.register(2);
        assert_eq!(w.observe(0, 1000), None);
        assert_eq!(w.observe(2, 500), Some(495), "partition 2 now holds time at its own pace");
        assert_eq!(w.observe(2, 2000), Some(995));
    }

    #[test]
    fn ended_partition_releases_time() {
        let clock = ManualClock::new(0);
        let mut w = tracker(&clock);
        w.observe(0, 100);
        w.observe(1, 500);
        assert_eq!(w.current(), 95);
        assert_eq!(w.end_partition(0), Some(495));
    }
}
