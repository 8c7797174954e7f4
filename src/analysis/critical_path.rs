//! The critical path of a closed trace: the chain of spans that set its
//! end-to-end latency, and each span's self time on it.
//!
//! From the trace's end, walking back: the current span (first the root) hands
//! the time down to the child whose subtree finished last before the cursor; the
//! time between that end and the cursor that no child covered is the current
//! span's own; once no child is left before the cursor, the rest down to the span's
//! start is its own too, and the walk returns to its parent from that start.
//! Subtrees count with the time they end (a consumer that finishes after its
//! producer returned carries the trace on), so the self times of one trace add up
//! to its duration: last end minus the root's start.
//!
//! Iterative (an explicit stack), O(n log n) in the trace's spans.

use super::dag::TraceDag;
use super::red::Latency;
use crate::model::{Span, Sym};
use rustc_hash::FxHashMap;

/// Critical-path time across traces, per service and operation.
#[derive(Debug, Default)]
pub struct CriticalPaths {
    /// Per-trace self time on the path of each (service, operation): its sum is the
    /// time on the path, its histogram how much one trace spends there.
    series: FxHashMap<(Sym, Sym), Latency>,
    max_series: usize,
    overflow: Sym,
    /// Traces whose path was taken, and their durations (µs) in all: the series' sums add up to it.
    pub traces: u64,
    pub duration_us: u64,
    scratch: Scratch,
    per_trace: FxHashMap<(Sym, Sym), u64>,
}

impl CriticalPaths {
    pub fn with_limit(max_series: usize, overflow: Sym) -> Self {
        CriticalPaths { max_series, overflow, ..CriticalPaths::default() }
    }

    /// Takes the critical path of one closed trace.
    pub fn add_trace(&mut self, spans: &[Span], dag: &TraceDag) {
        self.scratch.walk(spans, dag);
        let times = &self.scratch.out;
        self.per_trace.clear();
        for (s, &t) in spans.iter().zip(times) {
            if t > 0 {
                *self.per_trace.entry((s.service, s.operation)).or_default() += t;
            }
        }
        let trace_id = spans.first().map(|s| s.trace_id).unwrap_or_default();
        self.traces += 1;
        self.duration_us += times.iter().sum::<u64>();
        for (&key, &t) in &self.per_trace {
            let mut key = key;
            if self.max_series > 0 && self.series.len() >= self.max_series && !self.series.contains_key(&key)
            {
                key = (self.overflow, self.overflow);
            }
            // Time on the path is measured, not extrapolated: sampling does not weigh it.
            self.series.entry(key).or_default().record(t, trace_id, 1.0);
        }
    }

    /// (service, operation) → per-trace self times, in no order.
    pub fn series(&self) -> impl Iterator<Item = (&(Sym, Sym), &Latency)> {
        self.series.iter()
    }
}

/// Self time (µs) on the critical path of each span of the trace, by span index;
/// zero for spans off the path. Empty when the trace has no span.
pub fn self_times(spans: &[Span], dag: &TraceDag) -> Vec<u64> {
    let mut scratch = Scratch::default();
    scratch.walk(spans, dag);
    scratch.out
}

/// The walk's buffers, kept between traces so that a trace costs no allocation
/// once they have grown.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Self time per span (the result).
    pub out: Vec<u64>,
    parent_of: Vec<u32>,
    subtree_end: Vec<i64>,
    /// The path's tree as adjacency lists in one array: children of span `i` are
    /// `children[first[i]..first[i + 1]]`, latest-ending subtree first.
    first: Vec<u32>,
    children: Vec<u32>,
    fill: Vec<u32>,
    on_path: Vec<bool>,
    stack: Vec<Frame>,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    span: u32,
    /// The next of its children to look at.
    next: u32,
    cursor: i64,
    /// The span's start, but never before its parent's (clock skew): time
    /// before the root's start belongs to nobody.
    floor: i64,
}

const NONE: u32 = u32::MAX;

impl Scratch {
    /// Fills `out` with the self times of `spans`' critical path.
    pub fn walk(&mut self, spans: &[Span], dag: &TraceDag) {
        let n = spans.len();
        self.out.clear();
        self.out.resize(n, 0);
        if n == 0 {
            return;
        }
        let end = |i: usize| spans[i].start_us.saturating_add(spans[i].duration_us as i64);
        // A span with several parents (a consumer joining two messages) waited for the
        // one that finished last before it started: that parent alone leads to it on
        // the path, which makes the DAG a tree (or, with a reference cycle, a forest
        // whose cycle nobody reaches).
        self.parent_of.clear();
        self.parent_of.extend((0..n).map(|i| {
            dag.parents(i as u32)
                .filter(|&p| p as usize != i)
                .max_by_key(|&p| {
                    (end(p as usize) <= spans[i].start_us, end(p as usize), std::cmp::Reverse(p))
                })
                .unwrap_or(NONE)
        }));
        // Children lists in one array (counting sort by parent).
        self.first.clear();
        self.first.resize(n + 1, 0);
        for &p in &self.parent_of {
            if p != NONE {
                self.first[p as usize + 1] += 1;
            }
        }
        for i in 0..n {
            self.first[i + 1] += self.first[i];
        }
        self.children.clear();
        self.children.resize(self.first[n] as usize, 0);
        self.fill.clear();
        self.fill.extend_from_slice(&self.first[..n]);
        for (i, &p) in self.parent_of.iter().enumerate() {
            if p != NONE {
                self.children[self.fill[p as usize] as usize] = i as u32;
                self.fill[p as usize] += 1;
            }
        }
        // Subtree ends, children before parents: an iterative post-order from each root.
        self.subtree_end.clear();
        self.subtree_end.extend((0..n).map(end));
        self.stack.clear();
        for root in (0..n).filter(|&i| self.parent_of[i] == NONE) {
            self.stack.push(Frame { span: root as u32, next: 0, cursor: 0, floor: 0 });
            while let Some(top) = self.stack.last_mut() {
                let (s, k) = (top.span as usize, top.next);
                let (lo, hi) = (self.first[s], self.first[s + 1]);
                if lo + k < hi {
                    top.next += 1;
                    let c = self.children[(lo + k) as usize];
                    self.stack.push(Frame { span: c, next: 0, cursor: 0, floor: 0 });
                } else {
                    self.stack.pop();
                    if let Some(&p) = self.parent_of.get(s).filter(|&&p| p != NONE) {
                        self.subtree_end[p as usize] = self.subtree_end[p as usize].max(self.subtree_end[s]);
                    }
                }
            }
        }
        // Each span's children, latest-ending subtree first.
        for i in 0..n {
            let (lo, hi) = (self.first[i] as usize, self.first[i + 1] as usize);
            let ends = &self.subtree_end;
            self.children[lo..hi].sort_unstable_by_key(|&c| (std::cmp::Reverse(ends[c as usize]), c));
        }
        // The root: a span with no parent in the trace, the earliest (then the longest).
        let root = (0..n)
            .filter(|&i| self.parent_of[i] == NONE)
            .min_by_key(|&i| (spans[i].start_us, std::cmp::Reverse(self.subtree_end[i])))
            .unwrap_or(0);
        self.on_path.clear();
        self.on_path.resize(n, false);
        self.on_path[root] = true;
        self.stack.clear();
        let root_start = spans[root].start_us;
        self.stack.push(Frame {
            span: root as u32,
            next: 0,
            cursor: self.subtree_end[root],
            floor: root_start,
        });
        while let Some(top) = self.stack.last_mut() {
            let (span, start) = (top.span as usize, top.floor);
            let (lo, hi) = (self.first[span], self.first[span + 1]);
            let mut descend = None;
            while lo + top.next < hi {
                let c = self.children[(lo + top.next) as usize] as usize;
                top.next += 1;
                if self.on_path[c] || spans[c].start_us >= top.cursor {
                    continue; // already on the path, or after the cursor
                }
                let child_end = self.subtree_end[c].min(top.cursor);
                let child_floor = spans[c].start_us.max(start);
                if child_end <= child_floor {
                    continue;
                }
                // The gap after the child's end that no child covered is the span's own.
                self.out[span] += (top.cursor - child_end).max(0) as u64;
                descend = Some(Frame { span: c as u32, next: 0, cursor: child_end, floor: child_floor });
                break;
            }
            match descend {
                Some(frame) => {
                    self.on_path[frame.span as usize] = true;
                    self.stack.push(frame);
                }
                None => {
                    // Nothing more under this span before the cursor: the rest is its own.
                    let cursor = top.cursor;
                    self.stack.pop();
                    self.out[span] += (cursor - start).max(0) as u64;
                    if let Some(parent) = self.stack.last_mut() {
                        // The parent goes on from where this subtree began.
                        parent.cursor = start.min(parent.cursor);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RefKind, SpanId, SpanRef, TraceId};

    /// A span `id` from `start` to `end` (ms), child of `parent` (0: none).
    fn span(id: u64, parent: u64, start: i64, end: i64) -> Span {
        let mut s = Span {
            trace_id: TraceId::new(0, 1),
            span_id: SpanId(id),
            start_us: start * 1000,
            duration_us: ((end - start) * 1000) as u64,
            ..Span::default()
        };
        if parent != 0 {
            s.refs.push(SpanRef { trace_id: s.trace_id, span_id: SpanId(parent), kind: RefKind::ChildOf });
        }
        s
    }

    fn path(spans: &[Span]) -> Vec<(u64, u64)> {
        let dag = TraceDag::build(spans);
        let t = self_times(spans, &dag);
        spans.iter().zip(&t).filter(|(_, &t)| t > 0).map(|(s, &t)| (s.span_id.0, t / 1000)).collect()
    }

    fn total(spans: &[Span]) -> u64 {
        self_times(spans, &TraceDag::build(spans)).iter().sum::<u64>() / 1000
    }

    #[test]
    fn sequential_children_and_the_gaps_between_them() {
        // root 0..100: child 2 at 10..30, child 3 at 40..90; gaps are the root's.
        let spans = [span(1, 0, 0, 100), span(2, 1, 10, 30), span(3, 1, 40, 90)];
        assert_eq!(path(&spans), [(1, 30), (2, 20), (3, 50)]);
        assert_eq!(total(&spans), 100);
    }

    #[test]
    fn of_overlapping_children_the_last_to_finish_sets_the_path() {
        // Parallel calls 10..60 and 10..80: only the slower one is critical; the
        // faster one's time is covered.
        let spans = [span(1, 0, 0, 100), span(2, 1, 10, 60), span(3, 1, 10, 80)];
        assert_eq!(path(&spans), [(1, 30), (3, 70)]);
    }

    #[test]
    fn an_async_consumer_after_its_producer_carries_the_trace_on() {
        // A producer returns at 20, its consumer runs 50..120: the trace lasts 120.
        let spans = [span(1, 0, 0, 20), span(2, 1, 5, 15), span(3, 2, 50, 120)];
        assert_eq!(total(&spans), 120);
        assert_eq!(path(&spans), [(1, 5), (2, 45), (3, 70)]);
    }

    #[test]
    fn edge_cases_add_up_to_the_duration() {
        assert_eq!(path(&[span(1, 0, 0, 10)]), [(1, 10)], "a root alone");
        assert_eq!(total(&[span(1, 0, 0, 0), span(2, 1, 0, 0)]), 0, "zero durations");
        // Clock skew: a child that starts before its parent and ends after it.
        let skewed = [span(1, 0, 10, 50), span(2, 1, 5, 70)];
        assert_eq!(total(&skewed), 60, "from the root's start to the last end");
        // Several parents (a join) and a second root that started later.
        let mut join = span(4, 2, 60, 80);
        join.refs.push(SpanRef { trace_id: join.trace_id, span_id: SpanId(3), kind: RefKind::ChildOf });
        let spans = [span(1, 0, 0, 100), span(2, 1, 10, 50), span(3, 1, 20, 55), join, span(9, 0, 30, 40)];
        assert_eq!(total(&spans), 100);
        // The join waited for 3 (ended at 55, after 2): it is reached through 3; 2
        // covers only the time before 3 started.
        assert_eq!(path(&spans), [(1, 30), (2, 10), (3, 40), (4, 20)]);
        // A cycle of references does not hang.
        let mut a = span(1, 2, 0, 10);
        a.refs.push(SpanRef { trace_id: a.trace_id, span_id: SpanId(1), kind: RefKind::ChildOf });
        let cycle = [a, span(2, 1, 2, 8)];
        assert!(total(&cycle) <= 10);
    }

    #[test]
    fn deep_and_wide_traces_stay_iterative() {
        let deep: Vec<Span> = (1..=100_000).map(|i| span(i, i - 1, i as i64, 200_000 - i as i64)).collect();
        assert_eq!(total(&deep), 199_998);
        let mut wide = vec![span(1, 0, 0, 1_000_000)];
        wide.extend((2..=100_000).map(|i| span(i, 1, i as i64, i as i64 + 5)));
        assert_eq!(total(&wide), 1_000_000);
    }
}
