//! Event-time watermarks across input partitions.
//!
//! Each partition's watermark is the largest event time it delivered minus the
//! allowed out-of-orderness. The pipeline's watermark is the minimum over the
//! partitions that are active: a partition that delivered nothing for
//! `idle_timeout` of processing time, or that has ended, no longer holds time
//! back. When every partition is idle, event time keeps moving at the rate of
//! processing time from where the data left it, so the last traces still close.
//! The watermark never goes back.
//!
//! A live source measures processing time on its reading clock
//! ([`crate::dataflow::ReadingClock`]), which stands still while the source
//! cannot read (the pipeline blocked on a sink, every broker unreachable, a
//! rebalance), and registers its partitions with [`WatermarkTracker::register_gated`]:
//! such a partition may turn idle only after the source has read it to its end,
//! so a partition whose backlog has not been delivered yet never releases time.

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
    /// Idle only once read to its end ([`WatermarkTracker::register_gated`]).
    gated: bool,
    /// The source reported it read to the end and nothing arrived since.
    at_end: bool,
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
                gated: false,
                at_end: false,
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
        part.at_end = false;
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

    /// Like [`register`](Self::register), for a source that can tell when it read a
    /// partition to its end ([`at_end`](Self::at_end)): until then the partition never
    /// counts as idle, however long it stays silent (its backlog may still be on
    /// its way).
    pub fn register_gated(&mut self, partition: u32) {
        self.register(partition);
        let part = self.partition(partition);
        part.gated = true;
        part.at_end = false;
    }

    /// The source read `partition` to its end: from now on its silence counts as
    /// idleness. Returns the new watermark if it advanced.
    pub fn at_end(&mut self, partition: u32) -> Option<EventTime> {
        let now = self.clock.now_us();
        let part = self.partition(partition);
        if !part.known || part.at_end {
            return None;
        }
        part.at_end = true;
        // Silence is counted from here: before, the partition was still being read.
        part.last_active_us = part.last_active_us.max(now);
        self.recompute(now)
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
            let waiting_for_end = p.gated && !p.at_end;
            let active = p.known && !p.ended && (waiting_for_end || now - p.last_active_us < idle);
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
    fn a_gated_partition_is_not_idle_before_it_was_read_to_its_end() {
        let clock = ManualClock::new(0);
        let mut w = tracker(&clock);
        w.register_gated(0);
        w.register_gated(1);
        assert_eq!(w.observe(0, 1000), None);
        clock.advance(500);
        assert_eq!(w.tick(), None, "partition 1 was never read to its end: its backlog may be on its way");
        assert_eq!(w.at_end(1), None, "at its end now: its silence starts counting");
        clock.advance(99);
        assert_eq!(w.tick(), None);
        clock.advance(2);
        assert_eq!(w.tick(), Some(995), "idle after the timeout, counted from its end");
        // New data makes it hold time again until it is read to the end once more.
        assert_eq!(w.observe(1, 2000), None);
        assert_eq!(w.observe(0, 3000), Some(1995));
        clock.advance(1000);
        assert_eq!(w.tick(), None, "partition 1 has not reported its end since its data");
    }

    #[test]
    fn a_stopped_reading_clock_keeps_every_partition_active() {
        // While the source cannot read, its reading clock stands still: however long
        // the stall lasts in wall time, nothing turns idle and event time does not run on.
        let reading = crate::dataflow::ReadingClock::new();
        let config = WatermarkConfig { out_of_orderness_us: 5, idle_timeout_us: 100 };
        let mut w = WatermarkTracker::new(config, Arc::new(reading.clone()));
        w.register_gated(0);
        w.observe(0, 1000);
        w.at_end(0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(w.tick(), None);
        assert_eq!(w.current(), 995);
        reading.advance(150);
        assert_eq!(w.tick(), Some(995 + 150), "idle, then time flows with reading time only");
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
