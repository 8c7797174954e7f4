//! What the analyzer does past a trace's close: links from other traces (applied
//! when their trace closes, or at once if it is closed), late spans joined to
//! their closed trace, and the message-loss flows decided as event time passes.

use super::*;

impl Analyzer {
    /// Applies links that waited for the trace of `spans` to close: each one
    /// naming a span of it is an edge and consumes it; the others keep waiting.
    /// `replayed`: the trace was read again (an edge from a link read again too
    /// was written by the earlier owner).
    pub(super) fn apply_waiting(
        &mut self,
        spans: &[Span],
        waiting: Vec<Link>,
        consumed: &mut [bool],
        detected_at_us: i64,
        replayed: bool,
        names: &Interner,
    ) {
        let index: FxHashMap<SpanId, usize> = spans.iter().enumerate().map(|(i, s)| (s.span_id, i)).collect();
        for link in waiting {
            let Some(&i) = index.get(&link.to.span_id) else {
                self.flows.wait(link);
                continue;
            };
            // A copy of a link applied before still consumes (a trace read again
            // waits for it again), but counts nothing.
            let written = !self.first_application(&link) || link.written(replayed);
            let callee = Callee::of(&spans[i]);
            self.applied_record(&link, &callee, written);
            if callee.producer {
                consumed[i] = true;
            }
            let consumer = || flows::consumer_ref(link.from_trace, link.from_span, &link.caller, names);
            let to = (link.to.trace_id, link.to.span_id, link.to.kind);
            let edges = new_edges(&mut self.recent, &mut self.delta, &mut self.edges);
            flows::apply_reference(
                &mut self.flows,
                edges,
                to,
                callee,
                &link.caller,
                consumer,
                detected_at_us,
                written,
                &mut self.flow_out,
            );
        }
    }

    /// Whether `link` is applied for the first time (not a copy of one applied before).
    fn first_application(&mut self, link: &Link) -> bool {
        let first = self.flows.first_application(link);
        if first {
            self.flows.stats.links_resolved += 1;
        }
        first
    }

    /// A link record applied to `callee`: released, and registered when its edge counted here.
    fn applied_record(&mut self, link: &Link, callee: &Callee, written: bool) {
        if let Some(via) = link.via {
            let consumed = callee.producer.then_some((link.to.trace_id, link.to.span_id));
            let counted = (!written).then_some(*link);
            self.flows.released.push(flows::Released {
                via,
                counted,
                consumed: consumed.filter(|_| !written),
            });
        }
    }

    /// A reference from a span of another trace into a trace this analyzer owns
    /// (routed here by trace id): applied now if that trace closed, else it waits.
    pub fn link(&mut self, link: Link, ctx: &mut Context<'_, Anomaly>) {
        self.flows.stats.links += 1;
        match self.flows.link_to_closed(&link) {
            Some((callee, replayed)) => {
                let written = !self.first_application(&link) || link.written(replayed);
                self.applied_record(&link, &callee, written);
                let detected_at_us = self.detected_us(link.caller.start_us);
                let names = &*ctx.names;
                let consumer = || flows::consumer_ref(link.from_trace, link.from_span, &link.caller, names);
                let to = (link.to.trace_id, link.to.span_id, link.to.kind);
                let edges = new_edges(&mut self.recent, &mut self.delta, &mut self.edges);
                flows::apply_reference(
                    &mut self.flows,
                    edges,
                    to,
                    callee,
                    &link.caller,
                    consumer,
                    detected_at_us,
                    written,
                    &mut self.flow_out,
                );
                self.flush_flows(ctx);
            }
            None => self.flows.wait(link),
        }
    }

    /// A span that arrived after its trace closed. A copy of a counted span is
    /// dropped; otherwise it counts for RED, and when its trace is still in the
    /// closed-trace index it is joined to it: its references are edges, it
    /// consumes producers, and links waiting for it are applied.
    pub fn late_span(&mut self, span: Span, ctx: &mut Context<'_, Anomaly>) -> Late {
        self.join_late(span, false, ctx)
    }

    /// A late span of a trace read again that an earlier owner already wrote:
    /// joined the same way, but nothing is counted again (its edges were written).
    pub fn replayed_late_span(&mut self, span: Span, ctx: &mut Context<'_, Anomaly>) -> Late {
        self.join_late(span, true, ctx)
    }

    fn join_late(&mut self, span: Span, replayed: bool, ctx: &mut Context<'_, Anomaly>) -> Late {
        let mut parents = Vec::new();
        let late = self.flows.late(&span, &mut parents);
        if late == Late::Copy {
            if !replayed {
                self.stats.duplicate_spans += 1;
            }
            return late;
        }
        if !replayed {
            self.observe_alone(&span);
            self.counters.seen(&span);
            self.stats.spans += 1;
            self.stats.late_spans += 1;
        }
        self.links.extend(Link::of(&span).map(|l| Link { replayed, ..l }));
        if late == Late::Joined {
            let detected_at_us = self.detected_us(span.event_time_us());
            let caller = Caller::of(&span);
            // Pending first: a link that waited for this very producer consumes it below.
            if span.kind == SpanKind::Producer {
                let closes_at = span.event_time_us().max(self.flows_watermark());
                let path = vec![span.clone()];
                self.flows.pend(flows::Evidence { path, trace_spans: 1, closes_at });
            }
            for (r, callee) in parents {
                let names = &*ctx.names;
                let consumer = || flows::consumer_ref(span.trace_id, span.span_id, &caller, names);
                let edges = new_edges(&mut self.recent, &mut self.delta, &mut self.edges);
                flows::apply_reference(
                    &mut self.flows,
                    edges,
                    (r.trace_id, r.span_id, r.kind),
                    callee,
                    &caller,
                    consumer,
                    detected_at_us,
                    replayed,
                    &mut self.flow_out,
                );
            }
            for link in self.flows.take_waiting(&span.trace_id) {
                self.link(link, ctx);
                self.flows.stats.links -= 1; // counted when it first came
            }
        }
        self.flush_flows(ctx);
        late
    }

    fn flows_watermark(&self) -> EventTime {
        self.flows.watermark()
    }

    /// Event time reached `watermark` (the least over the inputs): producers
    /// whose deadline passed without a consumer are reported, expired state leaves.
    pub fn advance(&mut self, watermark: EventTime, ctx: &mut Context<'_, Anomaly>) {
        let now = match &self.detected_at {
            DetectedAt::TraceClose => None,
            DetectedAt::Clock(c) => Some(c.now_us()),
        };
        self.flows.advance(watermark, now, &mut self.flow_out);
        self.flush_flows(ctx);
    }

    /// The input ended: every producer still pending is lost.
    pub fn finish(&mut self, ctx: &mut Context<'_, Anomaly>) {
        self.flows.finish(&mut self.flow_out);
        self.flush_flows(ctx);
    }

    /// Emits and counts what the flows decided.
    pub(super) fn flush_flows(&mut self, ctx: &mut Context<'_, Anomaly>) {
        for (evidence, detected_at_us) in self.flow_out.losses.drain(..) {
            let t = TraceCtx {
                spans: &evidence.path,
                names: ctx.names,
                detected_at_us,
                limits: self.config.documents,
            };
            let mut a = detect::loss_document(&t, evidence.path.len().saturating_sub(1) as u32);
            a.evidence.omitted_spans = evidence.trace_spans.saturating_sub(a.evidence.trace.len() as u64);
            *self.stats.anomalies.entry(a.kind).or_default() += 1;
            self.counters.count(&a, ctx.names);
            ctx.out.push(a);
        }
        for (producer, destination) in self.flow_out.resolved.drain(..) {
            self.counters.resolved(producer, destination);
        }
        self.resolutions.append(&mut self.flow_out.resolutions);
        self.settled.append(&mut self.flow_out.settled);
    }
}
