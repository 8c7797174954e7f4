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
        Ok(Written::Acknowledged)
    }
}
