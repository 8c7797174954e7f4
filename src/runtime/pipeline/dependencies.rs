//! Service calls in buckets of event time, per input partition: what Jaeger's
//! dependency view reads (one document per bucket and partition, written once).
//!
//! The calls of a trace go to the bucket its partition's watermark stands in when
//! it closes. The bucket pins the first offset of its oldest trace, so nothing it
//! counted is committed before it is handed out, once the partition's watermark
//! passes its end. A new owner after a crash re-reads its records and counts it
//! again; a bucket written before the crash and counted again gets the same id,
//! and the sink keeps the first copy. A revoked partition's buckets are dropped
//! for the same reason.
//!
//! Traces the old owner already finished (its Neo4j registry, or this process's
//! own memory of a partition it gets back) are read again apart and count nothing
//! elsewhere; they count again here, since the old owner's bucket may never have
//! been written. Not exact yet: a trace re-read across a bucket boundary can
//! close into a neighbouring bucket.

use super::Pipeline;
use crate::analysis::Edges;
use crate::dataflow::EventTime;
use crate::model::Sym;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// The calls between services of one bucket of one partition's traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyBucket {
    /// The input partition (sparse id: topic index × 2¹⁶ + partition).
    pub partition: u32,
    /// Start of the bucket, event time in µs since the epoch.
    pub start_us: i64,
    /// (caller service, called service, calls), sorted.
    pub calls: Vec<(String, String, u64)>,
}

#[derive(Default)]
struct Open {
    calls: FxHashMap<(Sym, Sym), u64>,
    /// The offset pinned for it: the first offset of its oldest trace.
    pinned: Option<i64>,
}

pub(super) struct Buckets {
    width_us: i64,
    /// By (partition, bucket start).
    open: BTreeMap<(u32, i64), Open>,
    done: Vec<DependencyBucket>,
    /// Where calls found outside a partition's record go (link decisions as
    /// processing time passes): the partition read last.
    last_partition: u32,
}

impl Pipeline {
    /// Keeps service calls in buckets of `width_us` of event time for
    /// [`take_dependency_buckets`](Self::take_dependency_buckets).
    pub fn enable_dependency_buckets(&mut self, width_us: i64) {
        self.buckets = Some(Buckets {
            width_us: width_us.max(1),
            open: BTreeMap::new(),
            done: Vec::new(),
            last_partition: 0,
        });
        self.analyzer.recent = Some(Edges::default());
        self.analyzer.replayed_calls = Some(Edges::default());
    }

    /// Buckets complete since the last call.
    pub fn take_dependency_buckets(&mut self) -> Vec<DependencyBucket> {
        self.settle_edges(None, None);
        self.buckets.as_mut().map(|b| std::mem::take(&mut b.done)).unwrap_or_default()
    }

    /// Moves the edges the analyses just added on, counting their service calls
    /// into the bucket of `partition` (the one read last when `None`) and pinning
    /// `first`, the first offset of the records they came from.
    pub(super) fn settle_edges(&mut self, partition: Option<u32>, first: Option<i64>) {
        if self.buckets.is_none() {
            return;
        }
        let mut calls: Vec<(Sym, Sym, u64)> = Vec::new();
        self.analyzer.settle_recent(|source, target, n| calls.push((source, target, n)));
        if let Some(replayed) = self.analyzer.replayed_calls.as_mut() {
            calls.extend(replayed.services.drain().map(|(e, stats)| (e.source, e.target, stats.calls)));
            replayed.clear();
        }
        self.count_calls(partition, first, calls);
    }

    fn count_calls(&mut self, partition: Option<u32>, first: Option<i64>, calls: Vec<(Sym, Sym, u64)>) {
        let Some(b) = self.buckets.as_mut() else { return };
        let partition = partition.unwrap_or(b.last_partition);
        b.last_partition = partition;
        if calls.is_empty() {
            return;
        }
        let wm = self.tracker.watermark_of(partition);
        let at = if wm == EventTime::MIN { self.tracker.now_us() } else { wm };
        let start = at.div_euclid(b.width_us) * b.width_us;
        let open = b.open.entry((partition, start)).or_default();
        for (source, target, n) in calls {
            *open.calls.entry((source, target)).or_default() += n;
        }
        if let Some(first) = first {
            match open.pinned {
                Some(p) if p <= first => {}
                Some(p) => {
                    self.offsets.pin(partition, first);
                    self.offsets.unpin(partition, p);
                    open.pinned = Some(first);
                }
                None => {
                    self.offsets.pin(partition, first);
                    open.pinned = Some(first);
                }
            }
        }
    }

    /// `partition`'s event time reached `wm`: its buckets that end by then are complete.
    pub(super) fn complete_buckets(&mut self, partition: u32, wm: EventTime) {
        let Some(b) = self.buckets.as_ref() else { return };
        let width = b.width_us;
        let due: Vec<(u32, i64)> = b
            .open
            .range((partition, i64::MIN)..(partition, wm.saturating_sub(width).saturating_add(1)))
            .map(|(k, _)| *k)
            .collect();
        self.hand_out(due);
    }

    /// The end of a finite input: every bucket is complete.
    pub(super) fn complete_all_buckets(&mut self) {
        self.settle_edges(None, None);
        let Some(b) = self.buckets.as_ref() else { return };
        let due: Vec<(u32, i64)> = b.open.keys().copied().collect();
        self.hand_out(due);
    }

    /// `partition` was taken away: its buckets go unwritten, the next owner
    /// counts them again from the offsets they pinned (forgotten with the partition).
    pub(super) fn drop_buckets(&mut self, partition: u32) {
        if let Some(b) = self.buckets.as_mut() {
            b.open.retain(|&(p, _), _| p != partition);
        }
    }

    fn hand_out(&mut self, due: Vec<(u32, i64)>) {
        let Some(b) = self.buckets.as_mut() else { return };
        for key in due {
            let Some(open) = b.open.remove(&key) else { continue };
            if let Some(p) = open.pinned {
                self.offsets.unpin(key.0, p);
            }
            let mut calls: Vec<(String, String, u64)> = open
                .calls
                .into_iter()
                .map(|((s, t), n)| (self.names.resolve(s).to_owned(), self.names.resolve(t).to_owned(), n))
                .collect();
            calls.sort();
            b.done.push(DependencyBucket { partition: key.0, start_us: key.1, calls });
        }
    }
}
