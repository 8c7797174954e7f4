//! Links: references from a span to a span of another trace, and what applying
//! one (or a late span's reference) does.

use super::super::anomaly::ConsumerRef;
use super::super::edges::{Callee, Caller, Edges};
use super::{FlowOut, Flows};
use crate::model::{Interner, RefKind, Span, SpanId, SpanRef, Sym, TraceId};

/// A reference from a span to a span of another trace, sent to the owner of
/// the referenced trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// The referenced span and the relation.
    pub to: SpanRef,
    pub from_trace: TraceId,
    pub from_span: SpanId,
    /// The referencing span's side of the call.
    pub caller: Caller,
    /// From a trace an earlier owner already analysed and wrote (read again
    /// after a rebalance or a crash): it consumes, but its edge counts only if
    /// the trace it names was not written by that owner too.
    pub replayed: bool,
    /// The repartition-topic partition and offset of the link record it came in
    /// (`poirot run`, where links travel between processes): waiting, it holds
    /// that offset; applied, it is registered ([`super::applied`]).
    pub via: Option<(u32, i64)>,
}

impl Link {
    /// The links of `s`: its references to spans of other traces.
    pub fn of(s: &Span) -> impl Iterator<Item = Link> + '_ {
        s.refs.iter().filter(move |r| r.trace_id != s.trace_id && !r.trace_id.is_zero()).map(move |r| Link {
            to: *r,
            from_trace: s.trace_id,
            from_span: s.span_id,
            caller: Caller::of(s),
            replayed: false,
            via: None,
        })
    }

    /// The referencing span reduced to this one reference: what a link record
    /// carries to the owner of the trace it names (as a Jaeger protobuf span).
    pub fn to_span(&self) -> Span {
        let c = &self.caller;
        Span {
            trace_id: self.from_trace,
            span_id: self.from_span,
            refs: smallvec::smallvec![self.to],
            service: c.service,
            operation: c.operation,
            destination: c.destination,
            start_us: c.start_us,
            duration_us: c.duration_us,
            error: c.error,
            ..Span::default()
        }
    }

    /// Whether applying it would count again what an earlier owner wrote.
    /// A link record is exactly once by itself (`replayed`: its own registration
    /// was found); a link passed in process was counted with the later of its
    /// two traces, so only when both were read again.
    pub fn written(&self, target_replayed: bool) -> bool {
        if self.via.is_some() {
            self.replayed
        } else {
            self.replayed && target_replayed
        }
    }

    /// What identifies it among the links into its trace: copies are applied once.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        (
            self.from_trace,
            self.from_span,
            self.to.trace_id,
            self.to.span_id,
            self.to.kind == RefKind::ChildOf,
        )
            .hash(&mut h);
        h.finish()
    }
}

/// The consumer named in a resolution.
pub fn consumer_ref(
    link_trace: TraceId,
    link_span: SpanId,
    caller: &Caller,
    names: &Interner,
) -> ConsumerRef {
    ConsumerRef {
        trace_id: link_trace.to_string(),
        span_id: link_span.to_string(),
        service: names.resolve(caller.service).to_owned(),
        operation: names.resolve(caller.operation).to_owned(),
    }
}

/// Applies what a link or a late span's reference found: the edge and the hop
/// latency of a message (unless `written`: an earlier owner wrote them), and
/// the producer consumed.
#[allow(clippy::too_many_arguments)]
pub fn apply_reference(
    flows: &mut Flows,
    edges: &mut Edges,
    to: (TraceId, SpanId, RefKind),
    callee: Callee,
    caller: &Caller,
    consumer: impl FnOnce() -> ConsumerRef,
    detected_at_us: i64,
    written: bool,
    out: &mut FlowOut,
) {
    if !written {
        edges.add_call(&callee, caller, to.2);
    }
    if callee.producer {
        if !written {
            let destination =
                if callee.destination != Sym(0) { callee.destination } else { caller.destination };
            flows.observe_hop(destination, caller.start_us - callee.start_us);
        }
        flows.consumed(to.0, to.1, consumer, detected_at_us, out);
    }
}
