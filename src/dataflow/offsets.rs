//! Which input offsets may be committed: a partition's offset is committed only up
//! to the first offset of the oldest trace still open from it, so after a crash
//! or a reassignment the new owner re-reads every span of every unfinished trace.

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

use crate::model::TraceId;

#[derive(Default, Debug)]
struct PartitionOffsets {
    /// First offsets of open traces, with how many traces opened at each.
    open: BTreeMap<i64, u32>,
    /// One past the last offset processed.
    next: Option<i64>,
}

/// Tracks, per partition, the lowest offset still needed.
#[derive(Default, Debug)]
pub struct OffsetTracker {
    partitions: FxHashMap<u32, PartitionOffsets>,
    /// Open traces: partition, first offset, last offset.
    traces: FxHashMap<TraceId, (u32, i64, i64)>,
    /// Closed traces whose results are not all decided yet (a producer waiting
    /// for its consumer): they hold their first offset like open traces, so a
    /// new owner reads them again.
    held: FxHashMap<TraceId, (u32, i64)>,
}

impl OffsetTracker {
    /// Offset `offset` of `partition` was processed.
    pub fn processed(&mut self, partition: u32, offset: i64) {
        let p = self.partitions.entry(partition).or_default();
        p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// `trace` opened with a span from `offset`.
    pub fn trace_opened(&mut self, trace: TraceId, partition: u32, offset: i64) {
        if self.traces.insert(trace, (partition, offset, offset)).is_none() {
            *self.partitions.entry(partition).or_default().open.entry(offset).or_default() += 1;
        }
    }

    pub fn is_tracked(&self, trace: &TraceId) -> bool {
        self.traces.contains_key(trace)
    }

    /// A further span of open `trace` came from `offset`.
    pub fn span_seen(&mut self, trace: &TraceId, offset: i64) {
        if let Some(t) = self.traces.get_mut(trace) {
            t.2 = t.2.max(offset);
        }
    }

    /// `trace` closed (or was discarded): it no longer holds its offset. Returns
    /// its partition and last offset.
    pub fn trace_closed(&mut self, trace: &TraceId) -> Option<(u32, i64)> {
        let (partition, offset, last) = self.traces.remove(trace)?;
        self.unhold(partition, offset);
        Some((partition, last))
    }

    /// The first offset of open `trace`.
    pub fn first_offset(&self, trace: &TraceId) -> Option<i64> {
        self.traces.get(trace).map(|t| t.1)
    }

    /// Closed `trace` still needs its records from `offset` of `partition` on.
    /// Held already (a second session of the trace, a late producer): the
    /// earlier offset stays held, once.
    pub fn hold(&mut self, trace: TraceId, partition: u32, offset: i64) {
        match self.held.get(&trace).copied() {
            Some((p, o)) if p == partition && o <= offset => {}
            Some((p, o)) => {
                self.unhold(p, o);
                self.held.insert(trace, (partition, offset));
                *self.partitions.entry(partition).or_default().open.entry(offset).or_default() += 1;
            }
            None => {
                self.held.insert(trace, (partition, offset));
                *self.partitions.entry(partition).or_default().open.entry(offset).or_default() += 1;
            }
        }
    }

    /// Closed `trace` no longer needs its records.
    pub fn release(&mut self, trace: &TraceId) {
        if let Some((partition, offset)) = self.held.remove(trace) {
            self.unhold(partition, offset);
        }
    }

    /// A record at `offset` of `partition` still needs reading again should the
    /// partition move (a link waiting for its trace): the offset stays uncommitted
    /// until [`unpin`](Self::unpin). Pins count.
    pub fn pin(&mut self, partition: u32, offset: i64) {
        *self.partitions.entry(partition).or_default().open.entry(offset).or_default() += 1;
    }

    pub fn unpin(&mut self, partition: u32, offset: i64) {
        self.unhold(partition, offset);
    }

    fn unhold(&mut self, partition: u32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            if let Some(n) = p.open.get_mut(&offset) {
                *n -= 1;
                if *n == 0 {
                    p.open.remove(&offset);
                }
            }
        }
    }

    /// The offset to commit for `partition`: the first one still needed.
    pub fn committable(&self, partition: u32) -> Option<i64> {
        let p = self.partitions.get(&partition)?;
        p.open.keys().next().copied().or(p.next)
    }

    /// Traces open from `partition`.
    pub fn traces_of(&self, partition: u32) -> Vec<TraceId> {
        self.traces.iter().filter(|(_, (p, _, _))| *p == partition).map(|(t, _)| *t).collect()
    }

    /// Forgets `partition` entirely (revoked); returns the closed traces it held
    /// (the next owner reads them again and decides what they still owed).
    pub fn forget(&mut self, partition: u32) -> Vec<TraceId> {
        for t in self.traces_of(partition) {
            self.traces.remove(&t);
        }
        self.partitions.remove(&partition);
        let held: Vec<TraceId> =
            self.held.iter().filter(|(_, (p, _))| *p == partition).map(|(t, _)| *t).collect();
        for t in &held {
            self.held.remove(t);
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_held_twice_holds_its_earliest_offset_once() {
        let mut o = OffsetTracker::default();
        let t = TraceId::new(0, 1);
        o.processed(0, 9);
        o.hold(t, 0, 5);
        o.hold(t, 0, 8); // a late producer of the same trace
        assert_eq!(o.committable(0), Some(5));
        o.hold(t, 0, 3);
        assert_eq!(o.committable(0), Some(3));
        o.release(&t);
        assert_eq!(o.committable(0), Some(10), "released once, nothing left held");
    }

    #[test]
    fn a_pinned_record_holds_its_offset_until_unpinned() {
        let mut o = OffsetTracker::default();
        o.pin(2, 7);
        o.processed(2, 7);
        o.pin(2, 9);
        o.processed(2, 9);
        assert_eq!(o.committable(2), Some(7));
        o.unpin(2, 7);
        assert_eq!(o.committable(2), Some(9));
        o.unpin(2, 9);
        o.unpin(2, 9); // once too often: nothing below goes
        assert_eq!(o.committable(2), Some(10));
    }

    #[test]
    fn commits_up_to_the_oldest_open_trace() {
        let mut o = OffsetTracker::default();
        let (a, b) = (TraceId::new(0, 1), TraceId::new(0, 2));
        o.trace_opened(a, 0, 10);
        o.processed(0, 10);
        o.trace_opened(b, 0, 11);
        o.processed(0, 11);
        o.processed(0, 12); // a span of an open trace
        assert_eq!(o.committable(0), Some(10));
        o.trace_closed(&a);
        assert_eq!(o.committable(0), Some(11));
        o.trace_closed(&b);
        assert_eq!(o.committable(0), Some(13), "nothing open: everything processed");
        assert_eq!(o.committable(1), None);
    }

    #[test]
    fn forgetting_a_partition_drops_its_traces() {
        let mut o = OffsetTracker::default();
        o.trace_opened(TraceId::new(0, 1), 3, 5);
        o.trace_opened(TraceId::new(0, 2), 4, 5);
        o.forget(3);
        assert_eq!(o.committable(3), None);
        assert!(!o.is_tracked(&TraceId::new(0, 1)));
        assert!(o.is_tracked(&TraceId::new(0, 2)));
    }
}
