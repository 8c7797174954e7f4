//! librdkafka's log lines and error callbacks, rate limited.
//!
//! While a broker is unreachable librdkafka reports every reconnect attempt of
//! every client (consumer, dead-letter and repartition producers): dozens of
//! lines a second that bury the one line a person needs. Each kind of line is
//! logged the first time, then at most once per [`LOG_EVERY`] with the number of
//! similar lines left out.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::Mutex;
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

    /// Logs librdkafka's line through the limiter: warnings and errors by facility,
    /// the rest at debug level.
    pub fn log(&self, client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                if let Some(left_out) = self.admit(&format!("{client}/{fac}"), Instant::now()) {
                    tracing::warn!("kafka {client}: {fac} {message}{}", left_out_note(left_out));
                }
            }
            _ => tracing::debug!("kafka {client}: {fac} {message}"),
        }
    }

    /// Logs an error callback of a client that has no use for it beyond a line.
    pub fn error(&self, client: &str, error: &KafkaError, reason: &str) {
        let kind = format!("{client}/{:?}", error.rdkafka_error_code());
        if let Some(left_out) = self.admit(&kind, Instant::now()) {
            tracing::warn!("kafka {client}: {reason}{}", left_out_note(left_out));
        }
    }
}

pub fn left_out_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar lines left out)")
    }
}

/// The client context of poirot's producers: librdkafka's lines rate limited.
pub struct QuietContext {
    pub client: &'static str,
    pub limiter: LogLimiter,
}

impl QuietContext {
    pub fn new(client: &'static str) -> Self {
        QuietContext { client, limiter: LogLimiter::default() }
    }
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.limiter.log(self.client, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.limiter.error(self.client, &error, reason);
    }
}

impl rdkafka::producer::ProducerContext for QuietContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _result: &rdkafka::producer::DeliveryResult<'_>, _opaque: Self::DeliveryOpaque) {}
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
