//! Anomalies in poirot's log, one line each as they are found.

use super::{Round, Sink, SinkError, Written};
use std::sync::atomic::AtomicBool;

pub struct LogAnomalies;

impl Sink for LogAnomalies {
    fn name(&self) -> &'static str {
        "log"
    }

    fn write(&mut self, round: &Round<'_>, _stop: &AtomicBool) -> Result<Written, SinkError> {
        for a in round.anomalies {
            tracing::info!(kind = %a.kind, trace_id = %a.trace_id, "{}", a.summary);
        }
        for r in round.resolutions {
            tracing::info!(
                kind = "message_loss",
                trace_id = %r.trace_id,
                "resolved: the message of span {} was consumed after all, by {}:{} (span {} of trace {})",
                r.span_id,
                r.consumer.service,
                r.consumer.operation,
                r.consumer.span_id,
                r.consumer.trace_id
            );
        }
        Ok(Written::Acknowledged)
    }
}
