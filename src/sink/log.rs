//! Anomalies in poirot's log: each one at debug level (`POIROT_LOG=debug`), and
//! at info level one summary line a minute of what was found, grouped by kind,
//! service and destination, so a busy pipeline does not flood its log.

use super::{Round, Sink, SinkError, Written};
use crate::model::text::thousands;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// How often the summary line is written (and at the last round).
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Groups shown in a summary line; the rest are counted as "more".
const MAX_GROUPS: usize = 8;

pub struct LogAnomalies {
    since: Instant,
    /// (kind, service, destination) → anomalies since the last summary.
    found: BTreeMap<(String, String, String), u64>,
    resolved: u64,
}

impl Default for LogAnomalies {
    fn default() -> Self {
        LogAnomalies { since: Instant::now(), found: BTreeMap::new(), resolved: 0 }
    }
}

impl LogAnomalies {
    /// The summary of what was found since the last one, if anything was.
    fn summary(&mut self) -> Option<String> {
        if self.found.is_empty() && self.resolved == 0 {
            return None;
        }
        let total: u64 = self.found.values().sum();
        let mut groups: Vec<(&(String, String, String), &u64)> = self.found.iter().collect();
        groups.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut parts: Vec<String> = groups
            .iter()
            .take(MAX_GROUPS)
            .map(|((kind, service, destination), n)| match destination.as_str() {
                "" => format!("{} {kind} in {service}", thousands(**n)),
                d => format!("{} {kind} {service} → {d}", thousands(**n)),
            })
            .collect();
        if groups.len() > MAX_GROUPS {
            parts.push(format!("{} more groups", groups.len() - MAX_GROUPS));
        }
        let mut line =
            format!("anomalies in the last {} s: {}", self.since.elapsed().as_secs(), thousands(total));
        if !parts.is_empty() {
            line.push_str(&format!(" ({})", parts.join(", ")));
        }
        if self.resolved > 0 {
            line.push_str(&format!("; {} reported losses resolved", thousands(self.resolved)));
        }
        self.found.clear();
        self.resolved = 0;
        self.since = Instant::now();
        Some(line)
    }
}

impl Sink for LogAnomalies {
    fn name(&self) -> &'static str {
        "log"
    }

    fn write(&mut self, round: &Round<'_>, _stop: &AtomicBool) -> Result<Written, SinkError> {
        for a in round.anomalies {
            tracing::debug!(kind = %a.kind, trace_id = %a.trace_id, "{}", a.summary);
            let destination = a.details.destination.clone().unwrap_or_default();
            *self.found.entry((a.kind.to_string(), a.service.clone(), destination)).or_default() += 1;
        }
        for r in round.resolutions {
            tracing::debug!(
                kind = "message_loss",
                trace_id = %r.trace_id,
                "resolved: the message of span {} was consumed after all, by {}:{} (span {} of trace {})",
                r.span_id,
                r.consumer.service,
                r.consumer.operation,
                r.consumer.span_id,
                r.consumer.trace_id
            );
            self.resolved += 1;
        }
        if self.since.elapsed() >= SUMMARY_EVERY || round.last.is_some() {
            if let Some(line) = self.summary() {
                tracing::info!("{line}");
            }
        }
        Ok(Written::Acknowledged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_groups_and_counts_and_then_starts_over() {
        let mut log = LogAnomalies::default();
        let key = |k: &str, s: &str, d: &str| (k.to_owned(), s.to_owned(), d.to_owned());
        log.found.insert(key("message_loss", "SandboxAnalyser", "SANDBOX_RESULT"), 1200);
        log.found.insert(key("recursive_chain", "Reporter", ""), 3);
        log.resolved = 2;
        let line = log.summary().expect("something was found");
        assert!(
            line.ends_with(
                "1,203 (1,200 message_loss SandboxAnalyser → SANDBOX_RESULT, 3 recursive_chain in Reporter); 2 reported losses resolved"
            ),
            "{line}"
        );
        assert!(log.summary().is_none(), "nothing new");
    }
}
