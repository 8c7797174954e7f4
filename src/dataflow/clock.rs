//! Processing-time clocks: the system clock, a manual one for tests, and the
//! reading clock of a live source.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Processing time in microseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now_us(&self) -> i64;
}

#[derive(Clone, Copy, Default, Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Clone, Default, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start_us: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start_us)))
    }

    pub fn advance(&self, by_us: i64) {
        self.0.fetch_add(by_us, Ordering::SeqCst);
    }

    pub fn set(&self, to_us: i64) {
        self.0.store(to_us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Processing time that passes only while a source is really reading its input:
/// its source advances it by the time it spent polling a reachable broker with
/// room to hand records on. Time spent blocked behind a stalled pipeline (a sink
/// that is down), with every broker unreachable, or inside a rebalance hand-off
/// does not pass. Watermark idleness is measured on this clock, so a stall never
/// looks like a silent partition and never turns the spans read after it into
/// late ones.
#[derive(Clone, Default, Debug)]
pub struct ReadingClock(Arc<AtomicI64>);

impl ReadingClock {
    pub fn new() -> Self {
        ReadingClock::default()
    }

    /// `by_us` of reading time passed.
    pub fn advance(&self, by_us: i64) {
        if by_us > 0 {
            self.0.fetch_add(by_us, Ordering::SeqCst);
        }
    }
}

impl Clock for ReadingClock {
    fn now_us(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
