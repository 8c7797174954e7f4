//! Event-time alignment of the input partitions a producer re-keys. The readers
//! of the repartition topic move with the producer's progress, the least over
//! its input partitions of what each re-keyed; an input partition read ahead of
//! the others (a backlog is rarely read evenly) makes readers hold every span
//! between the slowest partition and the fastest. Holding back the partitions
//! that run ahead (pausing them at the consumer until the slowest catches up),
//! as Flink's watermark alignment does, bounds that memory by event time.

use crate::dataflow::EventTime;
use std::collections::BTreeSet;

/// How far ahead of the slowest partition one may run, and how far it must fall
/// back once held before it is read again (the gap keeps pause and resume rare:
/// librdkafka drops what it prefetched for a paused partition).
#[derive(Clone, Copy, Debug)]
pub struct Drift {
    pub pause_us: i64,
    pub resume_us: i64,
}

impl Drift {
    /// From the event-time window a trace needs to close (inactivity gap plus
    /// out-of-orderness): partitions may run ten windows apart, and are read
    /// again within five (closer bounds paused the partitions in turns, each
    /// fetch taking one past the limit, on the bench-peers topics).
    pub fn for_window(window_us: i64) -> Drift {
        let w = window_us.max(1_000_000);
        Drift { pause_us: 10 * w, resume_us: 5 * w }
    }
}

/// The partitions to hold back, given each candidate's recent event time (the
/// latest of its last re-keyed record, which one outlying span cannot keep high)
/// and the partitions held now.
pub fn running_ahead(recent: &[(u32, EventTime)], held: &BTreeSet<u32>, drift: Drift) -> BTreeSet<u32> {
    let Some(slowest) = recent.iter().map(|&(_, t)| t).min() else { return BTreeSet::new() };
    recent
        .iter()
        .filter(|&&(p, t)| {
            let limit = if held.contains(&p) { drift.resume_us } else { drift.pause_us };
            t.saturating_sub(slowest) > limit
        })
        .map(|&(p, _)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn partitions_ahead_are_held_until_the_slowest_catches_up() {
        let drift = Drift { pause_us: 12 * S, resume_us: 6 * S };
        let none = BTreeSet::new();
        // 1 is 20 s ahead of 0, 2 only 5 s.
        let held = running_ahead(&[(0, 100 * S), (1, 120 * S), (2, 105 * S)], &none, drift);
        assert_eq!(held, BTreeSet::from([1]));
        // 0 moved up 10 s: 1 is 10 s ahead, within the pause limit but not yet back within 6 s.
        let held = running_ahead(&[(0, 110 * S), (1, 120 * S), (2, 112 * S)], &held, drift);
        assert_eq!(held, BTreeSet::from([1]));
        // 0 at 115 s: 1 is 5 s ahead, read again.
        assert!(running_ahead(&[(0, 115 * S), (1, 120 * S), (2, 116 * S)], &held, drift).is_empty());
        assert_eq!(Drift::for_window(15 * S).pause_us, 150 * S, "ten windows of the defaults");
    }

    #[test]
    fn the_slowest_is_never_held_and_nothing_is_held_alone() {
        let drift = Drift::for_window(S);
        let none = BTreeSet::new();
        assert!(running_ahead(&[], &none, drift).is_empty());
        assert!(running_ahead(&[(3, 500 * S)], &none, drift).is_empty());
        let held = running_ahead(&[(0, 0), (1, 100 * S), (2, 200 * S)], &none, drift);
        assert_eq!(held, BTreeSet::from([1, 2]), "everything far ahead of the slowest");
        // The slowest left (idle, or revoked): the next slowest is the reference.
        let held = running_ahead(&[(1, 100 * S), (2, 200 * S)], &held, drift);
        assert_eq!(held, BTreeSet::from([2]));
    }
}
