//! poirot's own events as named types, after Vector's internal events: each one
//! updates its counters, sets readiness (`/readyz`) and writes its log line in
//! one place, so that what a person reads in the log, what `/readyz` says and
//! what a dashboard counts cannot drift apart. Lines that repeat while an outage
//! lasts are rate limited ([`LogLimiter`]): the first is written, then at most
//! one per [`LOG_EVERY`] with the number left out.

use super::health::{Component, Health};
use super::process::SinkMetrics;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one line of a kind this often.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Seen {
    last: Option<Instant>,
    suppressed: u64,
}

/// Decides which lines of each kind are written.
#[derive(Default)]
pub struct LogLimiter {
    kinds: Mutex<HashMap<String, Seen>>,
}

impl LogLimiter {
    /// `Some(n)`: log this line of `kind` now, noting that `n` similar ones were
    /// left out since the last one; `None`: leave it out.
    pub fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().ok()?;
        let seen = kinds.entry(kind.to_owned()).or_default();
        match seen.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                seen.suppressed += 1;
                None
            }
            _ => {
                seen.last = Some(now);
                Some(std::mem::take(&mut seen.suppressed))
            }
        }
    }
}

/// " (n similar lines left out)", or nothing.
pub fn left_out_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar lines left out)")
    }
}

/// What happens to a sink.
pub enum SinkEvent<'a> {
    /// The server cannot be reached at start (`address`); tried again after `delay`.
    Unreachable { address: &'a str, error: &'a dyn Display, delay: Duration },
    /// Connected and set up.
    Ready,
    /// An operation failed in a way waiting can fix; tried again after `delay`.
    Retrying { what: &'a str, error: &'a dyn Display, delay: Duration },
    /// A write was acknowledged `took` after it started.
    Written { took: Duration },
    /// A failure retrying cannot fix: poirot stops with this line.
    Refused { error: &'a dyn Display },
    /// poirot stopped while a write was not acknowledged (it is read again).
    Abandoned { error: &'a dyn Display },
}

/// A sink's counters, its readiness entry and its log lines.
#[derive(Clone)]
pub struct SinkTelemetry {
    name: &'static str,
    component: Component,
    metrics: SinkMetrics,
    health: Health,
    limiter: Arc<LogLimiter>,
}

impl SinkTelemetry {
    /// Registers `component` for `/readyz` (starting until the first event says otherwise).
    pub fn new(name: &'static str, component: Component, metrics: SinkMetrics, health: Health) -> Self {
        health.register(component);
        SinkTelemetry { name, component, metrics, health, limiter: Arc::default() }
    }

    pub fn emit(&self, event: SinkEvent<'_>) {
        let name = self.name;
        match event {
            SinkEvent::Unreachable { address, error, delay } => {
                self.health.failing(self.component, format!("cannot reach {address}: {error}"));
                if let Some(n) = self.limiter.admit("unreachable", Instant::now()) {
                    let note = left_out_note(n);
                    tracing::warn!(
                        "cannot reach {name} at {address}: {error}; trying again in {delay:?}{note}"
                    );
                }
            }
            SinkEvent::Ready => self.health.ok(self.component),
            SinkEvent::Retrying { what, error, delay } => {
                self.metrics.failures.inc();
                self.metrics.retries.inc();
                self.health.failing(self.component, error.to_string());
                if let Some(n) = self.limiter.admit(what, Instant::now()) {
                    let note = left_out_note(n);
                    tracing::warn!("{name}: cannot {what}: {error}; retrying in {delay:?}{note}");
                }
            }
            SinkEvent::Written { took } => {
                self.metrics.writes.inc();
                self.metrics.write_seconds.observe(took.as_secs_f64());
                self.health.ok(self.component);
            }
            SinkEvent::Refused { error } => {
                self.metrics.failures.inc();
                self.health.failing(self.component, error.to_string());
            }
            SinkEvent::Abandoned { error } => {
                self.metrics.failures.inc();
                tracing::warn!("{name}: stopped with a write not acknowledged (it is read again): {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::process::ProcessMetrics;

    #[test]
    fn a_kind_is_logged_once_per_period_with_the_count_left_out() {
        let l = LogLimiter::default();
        let t0 = Instant::now();
        assert_eq!(l.admit("FAIL", t0), Some(0));
        for i in 1..40 {
            assert_eq!(l.admit("FAIL", t0 + Duration::from_millis(25 * i)), None);
        }
        assert_eq!(l.admit("REQTMOUT", t0), Some(0), "kinds are limited apart");
        assert_eq!(l.admit("FAIL", t0 + LOG_EVERY), Some(39));
        assert_eq!(l.admit("FAIL", t0 + LOG_EVERY * 3), Some(0));
        assert_eq!(left_out_note(39), " (39 similar lines left out)");
    }

    #[test]
    fn each_event_moves_its_counters_and_readiness_together() {
        let metrics = ProcessMetrics::new();
        let health = Health::new();
        let t = SinkTelemetry::new("neo4j", Component::Neo4j, metrics.sink("neo4j"), health.clone());
        let m = metrics.sink("neo4j");
        let error = "connection refused";
        t.emit(SinkEvent::Retrying { what: "write", error: &error, delay: Duration::from_millis(100) });
        t.emit(SinkEvent::Retrying { what: "write", error: &error, delay: Duration::from_millis(200) });
        assert_eq!((m.failures.get(), m.retries.get(), m.writes.get()), (2, 2, 0));
        assert!(!health.ready(), "a failing sink is not ready");
        t.emit(SinkEvent::Written { took: Duration::from_millis(5) });
        assert_eq!(m.writes.get(), 1);
        assert!(health.ready());
        t.emit(SinkEvent::Refused { error: &"unauthorized" });
        assert_eq!(m.failures.get(), 3);
        assert!(!health.ready());
    }
}
