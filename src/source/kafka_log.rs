//! librdkafka's log lines and error callbacks, rate limited.
//!
//! While a broker is unreachable librdkafka reports every reconnect attempt of
//! every client (consumer, dead-letter and repartition producers): dozens of
//! lines a second that bury the one line a person needs. Each kind of line is
//! logged the first time, then at most once per
//! [`LOG_EVERY`](crate::telemetry::events::LOG_EVERY) with the number of
//! similar lines left out.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;
use std::time::Instant;

pub use crate::telemetry::events::{left_out_note, LogLimiter};

/// librdkafka's lines through the limiter (the limiter itself is generic:
/// [`crate::telemetry::events`]).
impl LogLimiter {
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
