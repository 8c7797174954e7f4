//! What owning input partitions takes: the offsets that may be committed, the
//! traces finished (and held) per partition, and what a partition taken away
//! or given back changes.

use super::*;

impl Pipeline {
    /// Traces of `partition` that a previous owner already finished and wrote:
    /// when their spans are read again (up to the recorded offset), they are dropped.
    pub fn skip_finished(&mut self, partition: u32, traces: impl IntoIterator<Item = (TraceId, i64)>) {
        for (t, last) in traces {
            self.skip.insert(t, (partition, last));
        }
    }

    /// Closed traces whose producers are all decided stop holding their offsets.
    pub(super) fn settle(&mut self) {
        for t in self.analyzer.settled.drain(..) {
            self.offsets.release(&t);
        }
    }

    /// A closed trace with producers still waiting for a consumer keeps its
    /// first offset uncommitted: should its partition move or poirot die, the
    /// next owner reads it again and decides them.
    pub(super) fn hold_if_pending(&mut self, trace: TraceId, partition: Option<u32>, first: Option<i64>) {
        if let (Some(partition), Some(first)) = (partition, first) {
            if self.analyzer.flows.has_pending(&trace) {
                self.offsets.hold(trace, partition, first);
            }
        }
    }

    /// Records a finished trace (or a late span of one) with where its records end.
    pub(super) fn finished_trace(&mut self, f: FinishedTrace) {
        let own = self.own_finished.entry(f.partition).or_default();
        if own.len() < MAX_OWN_FINISHED {
            own.push((f.trace_id, f.last_offset));
        }
        if self.analyzer.delta.is_some() {
            self.finished.push(f);
        }
    }

    /// The offset of `partition` that may be committed: the first one an open
    /// trace still needs, or one past the last processed.
    pub fn committable(&self, partition: u32) -> Option<i64> {
        self.offsets.committable(partition)
    }

    /// The group coordinator acknowledged `offset` as `partition`'s committed offset:
    /// what lies below it is never read again, so finished traces that ended there
    /// need no remembering.
    pub(super) fn committed(&mut self, partition: u32, offset: i64) {
        if let Some(own) = self.own_finished.get_mut(&partition) {
            own.retain(|&(_, last)| last >= offset);
        }
        self.skip.retain(|_, &mut (p, last)| p != partition || last >= offset);
    }

    /// `partition` came back to this pipeline after it was taken away: the traces
    /// it had finished from there are skipped when their records are read again.
    pub(super) fn regained(&mut self, partition: u32) {
        if let Some(own) = self.own_finished.get(&partition) {
            for &(t, last) in own {
                self.skip.insert(t, (partition, last));
            }
        }
    }

    /// `partition` was taken away: its open traces are dropped unanalysed (the new
    /// owner re-reads them from the committed offset) and its event time is
    /// forgotten (an owner that gets it again starts from what it reads).
    pub(super) fn revoke(&mut self, partition: u32) {
        for t in self.offsets.traces_of(partition) {
            self.assembler.discard(&t);
            self.replayed.discard(&t);
        }
        for t in self.offsets.forget(partition) {
            // The next owner reads it again and decides its producers.
            self.analyzer.flows.drop_pending(&t);
        }
        self.replayed.forget_partition(partition);
        self.upstream.forget(partition);
        self.skip.retain(|_, (p, _)| *p != partition);
        self.tracker.forget(partition);
        self.assembler.forget_partition(partition);
    }
}
