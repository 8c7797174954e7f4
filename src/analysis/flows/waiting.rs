//! Links waiting for the trace they name: kept until it closes, given up when it
//! never does in time or too many wait, dropped when their partition moves; and
//! whether a link is applied to its trace for the first time.

use super::index::LINKED_TRACE_BYTES;
use super::{Flows, Link, Released};
use crate::model::TraceId;

impl Flows {
    /// The links waiting for `trace`, taken: it just closed (or a late span joined it).
    pub fn take_waiting(&mut self, trace: &TraceId) -> Vec<Link> {
        let links = self.waiting.remove(trace).map(|(_, l)| l).unwrap_or_default();
        self.waiting_links -= links.len();
        links
    }

    /// The links waiting for `trace` are unresolved: their trace never closed here
    /// in time (or too many waited).
    pub(super) fn give_up_waiting(&mut self, trace: &TraceId) {
        for link in self.take_waiting(trace) {
            self.stats.links_unresolved += 1;
            tracing::debug!(
                "link from span {} of trace {} to span {} of trace {} unresolved",
                link.from_span,
                link.from_trace,
                link.to.span_id,
                link.to.trace_id
            );
            if let Some(via) = link.via {
                self.released.push(Released { via, counted: None, consumed: None });
            }
        }
    }

    /// Drops the link records of `partition` still waiting, undecided: the
    /// partition moved to another owner, which reads them again.
    pub fn drop_links_via(&mut self, partition: u32) {
        let mut emptied = Vec::new();
        for (trace, (_, links)) in self.waiting.iter_mut() {
            let before = links.len();
            links.retain(|l| l.via.is_none_or(|(p, _)| p != partition));
            self.waiting_links -= before - links.len();
            if links.is_empty() {
                emptied.push(*trace);
            }
        }
        for t in emptied {
            self.waiting.remove(&t);
        }
    }

    /// Whether `link` is applied for the first time to the trace it names (a
    /// copy — a link record sent again after its sender restarted, a span
    /// delivered twice — is not applied again). Remembered while that trace is
    /// in the closed-trace index.
    pub fn first_application(&mut self, link: &Link) -> bool {
        let fingerprint = link.fingerprint();
        let applied = self.closed.linked.entry(link.to.trace_id).or_default();
        if applied.contains(&fingerprint) {
            self.stats.link_copies += 1;
            return false;
        }
        if applied.is_empty() {
            self.closed.bytes += LINKED_TRACE_BYTES;
        }
        applied.push(fingerprint);
        self.closed.bytes += std::mem::size_of::<u64>();
        true
    }

    /// Links that found no span in their trace wait on, until they expire.
    pub fn wait(&mut self, link: Link) {
        let trace = link.to.trace_id;
        // From the later of event time now and the linking span's start (before
        // the first watermark, event time is not known yet).
        let from = self.watermark.max(link.caller.start_us);
        let expires_at = from.saturating_add(self.config.closed_retention_us);
        let entry = self.waiting.entry(trace).or_insert((expires_at, Vec::new()));
        if entry.1.is_empty() {
            entry.0 = expires_at;
            self.waiting_order.push_back((expires_at, trace));
        }
        entry.1.push(link);
        self.waiting_links += 1;
        while self.waiting_links > self.config.max_waiting_links {
            let Some((_, id)) = self.waiting_order.pop_front() else { break };
            self.give_up_waiting(&id);
        }
    }
}
