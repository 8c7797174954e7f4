//! Event-time timers per key.
//!
//! A min-heap of `(time, key)` holding at most one entry per key: when a key's
//! deadline moves later, its entry stays and is re-queued when it fires early
//! (the owner tells by comparing with its own deadline). This keeps the queue at
//! one entry per open key instead of one per update.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug)]
pub struct TimerQueue<K: Ord> {
    heap: BinaryHeap<Reverse<(i64, K)>>,
}

impl<K: Ord + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue { heap: BinaryHeap::new() }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    pub fn schedule(&mut self, time: i64, key: K) {
        self.heap.push(Reverse((time, key)));
    }

    /// The earliest timer at or before `watermark`, removed from the queue.
    pub fn pop_due(&mut self, watermark: i64) -> Option<(i64, K)> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= watermark => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// The time of the earliest timer.
    pub fn peek(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The earliest timer, due or not, removed from the queue.
    pub fn pop_earliest(&mut self) -> Option<(i64, K)> {
        self.heap.pop().map(|Reverse(e)| e)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_time_order_up_to_the_watermark() {
        let mut q = TimerQueue::default();
        q.schedule(30, 'c');
        q.schedule(10, 'a');
        q.schedule(20, 'b');
        assert_eq!(q.pop_due(25), Some((10, 'a')));
        assert_eq!(q.pop_due(25), Some((20, 'b')));
        assert_eq!(q.pop_due(25), None);
        assert_eq!(q.pop_earliest(), Some((30, 'c')));
    }
}
