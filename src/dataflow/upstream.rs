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
    /// time `now`); returns the partition's event time: the minimum over live producers.
    pub fn heard(
        &mut self,
        partition: u32,
        producer: u64,
        event_time: EventTime,
        now: i64,
        idle_us: i64,
    ) -> EventTime {
        let producers = self.partitions.entry(partition).or_default();
        let h = producers.entry(producer).or_insert(Heard { event_time, at_us: now });
        h.event_time = h.event_time.max(event_time);
        h.at_us = now;
        producers.retain(|_, h| now - h.at_us < idle_us);
        producers.values().map(|h| h.event_time).min().unwrap_or(event_time)
    }

    /// Forgets producers not heard from within `idle_us`; returns the partitions
    /// whose event time that raised, with the new value.
    pub fn expire(&mut self, now: i64, idle_us: i64) -> Vec<(u32, EventTime)> {
        let mut raised = Vec::new();
        for (&p, producers) in &mut self.partitions {
            let before = producers.values().map(|h| h.event_time).min();
            producers.retain(|_, h| now - h.at_us < idle_us);
            let after = producers.values().map(|h| h.event_time).min();
            if let (Some(b), Some(a)) = (before, after) {
                if a > b {
                    raised.push((p, a));
                }
            }
        }
        raised
    }

    /// `partition` was revoked.
    pub fn forget(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_moves_with_its_slowest_live_producer() {
        let mut u = UpstreamWatermarks::default();
        assert_eq!(u.heard(7, 1, 100, 0, 50), 100);
        assert_eq!(u.heard(7, 2, 40, 1, 50), 40, "a second, slower producer holds it back");
        assert_eq!(u.heard(7, 1, 200, 2, 50), 40);
        assert_eq!(u.heard(7, 2, 90, 3, 50), 90);
        assert_eq!(u.heard(7, 2, 80, 4, 50), 90, "progress never goes back");
        // Producer 2 dies: once it is silent for the idle timeout, producer 1 alone counts.
        assert_eq!(u.heard(7, 1, 210, 40, 50), 90);
        assert_eq!(u.expire(60, 50), vec![(7, 210)]);
        assert_eq!(u.heard(8, 3, 5, 60, 50), 5, "partitions are independent");
    }
}
