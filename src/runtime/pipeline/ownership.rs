//! What owning input partitions takes: the offsets that may be committed, the
//! traces finished (and held) per partition, and what a partition taken away
//! or given back changes.

use super::*;
use crate::analysis::flows::applied;

impl Pipeline {
    /// Traces of `partition` that a previous owner already finished and wrote:
    /// when their spans are read again (up to the recorded offset), they are dropped.
    /// Links applied through link records (registered under pseudo trace ids)
    /// are remembered instead.
    pub fn skip_finished(&mut self, partition: u32, traces: impl IntoIterator<Item = (TraceId, i64)>) {
        let now = self.tracker.now_us();
        for (t, last) in traces {
            if !self.analyzer.flows.applied.remember(t, now) {
                self.skip.insert(t, (partition, last));
            }
        }
    }

    /// A span past what the previous owner wrote of a trace being read again:
    /// kept (its offset held with the trace's) until that trace closes.
    pub(super) fn fresh_of_replayed_span(
        &mut self,
        partition: u32,
        offset: i64,
        span: Span,
        now: i64,
        event_time: bool,
    ) {
        let (trace, event) = (span.trace_id, span.event_time_us());
        self.offsets.span_seen(&trace, offset);
        self.fresh_of_replayed.entry(trace).or_default().push((partition, offset, span));
        if event_time {
            if let Some(wm) = self.tracker.observe_at(partition, event, now) {
                self.close_until(partition, wm);
            }
        } else {
            self.tracker.saw(partition, event, now);
        }
    }

    /// Closed traces whose producers are all decided stop holding their offsets.
    /// Link records done with release their offsets; one whose edge was counted
    /// here is registered, with the producer it consumed, in the same write as
    /// that edge (see [`crate::analysis::flows::applied`]).
    pub(super) fn settle(&mut self) {
        for t in self.analyzer.settled.drain(..) {
            self.offsets.release(&t);
        }
        if self.analyzer.flows.released.is_empty() {
            return;
        }
        let now = self.tracker.now_us();
        let released = std::mem::take(&mut self.analyzer.flows.released);
        for r in released {
            let (partition, offset) = r.via;
            self.offsets.unpin(partition, offset);
            let ids = r.counted.map(|l| applied::link_id(&l)).into_iter();
            let ids = ids.chain(r.consumed.map(|(t, s)| applied::consumed_id(t, s)));
            for trace_id in ids {
                self.analyzer.flows.applied.remember(trace_id, now);
                if self.analyzer.delta.is_some() {
                    // Never below a committed offset: removed by age, not by commits.
                    self.finished.push(FinishedTrace { trace_id, partition, last_offset: i64::MAX });
                }
            }
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
            self.fresh_of_replayed.remove(&t);
        }
        self.drop_buckets(partition);
        let held = self.offsets.forget(partition);
        for t in &held {
            // The next owner reads it again and decides its producers.
            self.analyzer.flows.drop_pending(t);
        }
        // Should that be this process again, it assembles them anew rather than
        // take their records for copies of traces it still knows.
        self.analyzer.flows.forget_closed(&held);
        // Link records waiting for their trace: the next owner reads them again.
        self.analyzer.flows.drop_links_via(partition);
        self.analyzer.flows.released.retain(|r| r.via.0 != partition);
        self.replayed.forget_partition(partition);
        self.upstream.forget(partition);
        self.skip.retain(|_, (p, _)| *p != partition);
        self.tracker.forget(partition);
        self.assembler.forget_partition(partition);
    }
}
