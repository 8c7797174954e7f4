//! What every sink does with a failed write: say whose fault it is, wait and try
//! again while waiting can help, and stop with one clear line when it cannot.
//!
//! A write that fails because the server is down, overloaded or restarting is
//! the external system's fault: it is retried with exponential backoff (doubling
//! up to a cap, so recovery is noticed at most that late) until it succeeds or
//! poirot is stopping, and nothing is dropped meanwhile. A write refused for the
//! user's settings (credentials, TLS) or for poirot's own mistake (a query the
//! server rejects as malformed) would fail the same way every time: it is not
//! retried, and poirot ends naming the cause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use super::{Classify, Fault};

/// Exponential backoff: `first`, doubling, at most `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first.min(max), max }
    }

    /// The wait before the next try, and doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// How a retried operation ended.
#[derive(Debug)]
pub enum Retried<T, E> {
    Done(T),
    /// It failed for good (not the external system's fault): retrying cannot help.
    Failed(E),
    /// poirot is stopping; the last error.
    Stopped(E),
}

/// Runs `attempt` until it succeeds, fails with an error that is not retryable,
/// or `stop` is set. Before each wait `on_retry(error, delay)` reports the
/// failure (log line, metrics, readiness).
pub fn retry<T, E: Classify>(
    mut backoff: Backoff,
    stop: &AtomicBool,
    mut attempt: impl FnMut() -> Result<T, E>,
    mut on_retry: impl FnMut(&E, Duration),
) -> Retried<T, E> {
    loop {
        match attempt() {
            Ok(v) => return Retried::Done(v),
            Err(e) if !e.fault().retryable() => return Retried::Failed(e),
            Err(e) if stop.load(Ordering::Relaxed) => return Retried::Stopped(e),
            Err(e) => {
                let delay = backoff.next_delay();
                on_retry(&e, delay);
                sleep_unless_stopped(delay, stop);
            }
        }
    }
}

/// Sleeps `d`, waking early (within 100 ms) when `stop` is set.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct E(Fault);
    impl Classify for E {
        fn fault(&self) -> Fault {
            self.0
        }
    }

    fn quick() -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(4))
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let waits: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
    }

    #[test]
    fn an_outage_is_waited_out_and_reported_before_each_wait() {
        let stop = AtomicBool::new(false);
        let mut tries = 0;
        let mut reported = Vec::new();
        let r = retry(
            quick(),
            &stop,
            || {
                tries += 1;
                if tries < 4 {
                    Err(E(Fault::External))
                } else {
                    Ok(tries)
                }
            },
            |_, d| reported.push(d.as_millis()),
        );
        assert!(matches!(r, Retried::Done(4)));
        assert_eq!(reported, [1, 2, 4]);
    }

    #[test]
    fn settings_and_poirots_own_mistakes_are_not_retried() {
        let stop = AtomicBool::new(false);
        for fault in [Fault::User, Fault::Internal] {
            let mut tries = 0;
            let r: Retried<(), E> = retry(
                quick(),
                &stop,
                || {
                    tries += 1;
                    Err(E(fault))
                },
                |_, _| panic!("no retry"),
            );
            assert!(matches!(r, Retried::Failed(E(f)) if f == fault));
            assert_eq!(tries, 1);
        }
    }

    #[test]
    fn stopping_ends_the_wait_with_the_last_error() {
        let stop = AtomicBool::new(true);
        let r: Retried<(), E> = retry(quick(), &stop, || Err(E(Fault::External)), |_, _| panic!("no wait"));
        assert!(matches!(r, Retried::Stopped(E(Fault::External))));
    }
}
