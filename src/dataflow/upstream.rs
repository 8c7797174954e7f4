//! Watermarks that travel through a shuffle. A partition of the repartition
//! topic is written by several upstream producers (every poirot process that
//! re-keys input), each at its own pace, so the event times of its records are
//! not ordered the way a keyed input partition's are. Each producer therefore
//! writes its own progress into every partition — the largest event time it
//! has re-keyed, taken as the minimum over its input partitions — and the
//! partition's event time is the minimum over the producers heard from within
//! the idle timeout: what Flink does with watermarks across an exchange.

use super::EventTime;
use rustc_hash::FxHashMap;

#[derive(Clone, Copy, Debug)]
struct Heard {
    event_time: EventTime,
    at_us: i64,
}

#[derive(Default, Debug)]
pub struct UpstreamWatermarks {
    /// partition → producer → latest progress.
    partitions: FxHashMap<u32, FxHashMap<u64, Heard>>,
}

impl UpstreamWatermarks {
    /// Producer `producer` reached `event_time` on `partition` (heard at processing
    /// time `now`; [`EventTime::MAX`]: it bounds nothing now); returns the
    /// partition's event time, the minimum over live producers, or `None` when no
    /// live producer bounds it.
    pub fn heard(
        &mut self,
        partition: u32,
        producer: u64,
        event_time: EventTime,
        now: i64,
        idle_us: i64,
    ) -> Option<EventTime> {
        let producers = self.partitions.entry(partition).or_default();
        let h = producers.entry(producer).or_insert(Heard { event_time, at_us: now });
        // Progress never goes back, except from "bounds nothing" to a bound again.
        h.event_time = if h.event_time == EventTime::MAX { event_time } else { h.event_time.max(event_time) };
        h.at_us = now;
        producers.retain(|_, h| now - h.at_us < idle_us);
        bound(producers)
    }

    /// Forgets producers not heard from within `idle_us`; returns the partitions
    /// whose bound that changed, with the new one (`None`: no longer bounded).
    pub fn expire(&mut self, now: i64, idle_us: i64) -> Vec<(u32, Option<EventTime>)> {
        let mut changed = Vec::new();
        for (&p, producers) in &mut self.partitions {
            let before = bound(producers);
            producers.retain(|_, h| now - h.at_us < idle_us);
            let after = bound(producers);
            if after != before {
                changed.push((p, after));
            }
        }
        changed
    }

    /// `partition` was revoked.
    pub fn forget(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }
}

/// The smallest progress of the producers that bound anything.
fn bound(producers: &FxHashMap<u64, Heard>) -> Option<EventTime> {
    producers.values().map(|h| h.event_time).filter(|&t| t != EventTime::MAX).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_moves_with_its_slowest_live_producer() {
        let mut u = UpstreamWatermarks::default();
        assert_eq!(u.heard(7, 1, 100, 0, 50), Some(100));
        assert_eq!(u.heard(7, 2, 40, 1, 50), Some(40), "a second, slower producer holds it back");
        assert_eq!(u.heard(7, 1, 200, 2, 50), Some(40));
        assert_eq!(u.heard(7, 2, 90, 3, 50), Some(90));
        assert_eq!(u.heard(7, 2, 80, 4, 50), Some(90), "progress never goes back");
        // Producer 2 dies: once it is silent for the idle timeout, producer 1 alone counts.
        assert_eq!(u.heard(7, 1, 210, 40, 50), Some(90));
        assert_eq!(u.expire(60, 50), vec![(7, Some(210))]);
        assert_eq!(u.heard(8, 3, 5, 60, 50), Some(5), "partitions are independent");
    }

    #[test]
    fn producers_that_bound_nothing_do_not_count() {
        let mut u = UpstreamWatermarks::default();
        assert_eq!(u.heard(1, 1, EventTime::MIN, 0, 50), Some(EventTime::MIN), "assigned, nothing read");
        assert_eq!(u.heard(1, 2, EventTime::MAX, 0, 50), Some(EventTime::MIN));
        assert_eq!(u.heard(1, 1, EventTime::MAX, 1, 50), None, "both keyed or idle");
        assert_eq!(u.heard(1, 1, 30, 2, 50), Some(30));
        assert_eq!(u.heard(1, 1, EventTime::MAX, 3, 50), None);
        assert_eq!(u.heard(1, 1, 30, 4, 50), Some(30), "re-keying again");
        assert_eq!(u.expire(45, 50), vec![]);
        assert_eq!(u.expire(60, 50), vec![(1, None)]);
    }
}
