//! Links between traces: found by analyses and routed to the owner of the trace
//! they name (applied here, or handed to the exchange), and link records read
//! back from the repartition topic.

use super::*;
use crate::decode::Format;

impl Pipeline {
    /// Links between traces leave through [`drain_links`](Self::drain_links)
    /// instead of being applied here: other processes own some of the traces.
    pub fn send_links_elsewhere(&mut self) {
        self.links_out.get_or_insert_with(Vec::new);
    }

    /// Links found since the last call, for the exchange to send.
    pub fn drain_links(&mut self) -> std::vec::Drain<'_, Link> {
        match &mut self.links_out {
            Some(out) => out.drain(..),
            None => self.analyzer.links.drain(..0),
        }
    }

    /// A link record (see [`Input::LinkRecord`]); its input record was counted
    /// where it was read, so it counts as a link record only.
    pub(super) fn push_link_record(&mut self, partition: u32, offset: i64, bytes: &[u8]) -> RecordOutcome {
        let mut spans = std::mem::take(&mut self.spans);
        let outcome = self.decode(Some(Format::JaegerProto), bytes, &mut spans);
        self.input.records -= 1;
        self.input.link_records += 1;
        // One reference per record, as poirot writes them.
        let link = spans.iter().flat_map(Link::of).next();
        spans.clear();
        self.spans = spans;
        if let Some(mut link) = link {
            link.via = Some((partition, offset));
            // Applied and written before (read again, or a copy its sender sent
            // again): it consumes, but its edge is not counted twice.
            link.replayed = self.analyzer.flows.applied.applied(&link);
            // Released (by `settle`) once applied, given up or dropped as a copy.
            self.offsets.pin(partition, offset);
            self.analyzer.link(link, &mut Context::new(&mut self.names, &mut self.anomalies));
        }
        self.offsets.processed(partition, offset);
        self.settle();
        outcome
    }

    /// Routes the links analyses found to the owner of the trace they name:
    /// this pipeline, which holds every trace of its input.
    pub(super) fn route_links(&mut self) {
        if let Some(out) = &mut self.links_out {
            out.append(&mut self.analyzer.links);
            return;
        }
        while !self.analyzer.links.is_empty() {
            let links = std::mem::take(&mut self.analyzer.links);
            let mut ctx = Context::new(&mut self.names, &mut self.anomalies);
            for link in links {
                self.analyzer.link(link, &mut ctx);
            }
        }
    }
}
