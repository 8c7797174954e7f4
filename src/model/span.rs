//! The compact span.

use super::{Interner, SpanId, Sym, TraceId};
use smallvec::SmallVec;

/// How a span relates to the span it references.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub enum RefKind {
    /// Jaeger CHILD_OF, or an OTLP parent span id.
    #[default]
    ChildOf,
    /// Jaeger FOLLOWS_FROM, or an OTLP span link.
    FollowsFrom,
}

impl RefKind {
    /// The name poirot writes: `child_of` or `follows_from`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::ChildOf => "child_of",
            RefKind::FollowsFrom => "follows_from",
        }
    }
}

/// A reference from one span to another (usually in the same trace).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SpanRef {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub kind: RefKind,
}

/// References of a span: almost always zero or one, so one is stored inline.
pub type Refs = SmallVec<[SpanRef; 1]>;

/// The span kind, in Jaeger's `span.kind` vocabulary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// From a Jaeger `span.kind` tag value.
    pub fn from_tag(s: &str) -> SpanKind {
        match s {
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            "internal" => SpanKind::Internal,
            _ => SpanKind::Unspecified,
        }
    }

    /// The Jaeger `span.kind` tag value; `None` for unspecified.
    pub fn tag_value(self) -> Option<&'static str> {
        match self {
            SpanKind::Unspecified => None,
            SpanKind::Internal => Some("internal"),
            SpanKind::Server => Some("server"),
            SpanKind::Client => Some("client"),
            SpanKind::Producer => Some("producer"),
            SpanKind::Consumer => Some("consumer"),
        }
    }

    /// The OTLP enum number.
    pub fn otlp_number(self) -> i32 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    pub fn from_otlp_number(n: i32) -> SpanKind {
        match n {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The OTLP enum name, which is also the `span_kind` label value Jaeger's
    /// Monitor tab filters on (`SPAN_KIND_SERVER`, ...).
    pub fn otlp_name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }

    pub fn from_otlp_name(s: &str) -> SpanKind {
        match s {
            "SPAN_KIND_INTERNAL" => SpanKind::Internal,
            "SPAN_KIND_SERVER" => SpanKind::Server,
            "SPAN_KIND_CLIENT" => SpanKind::Client,
            "SPAN_KIND_PRODUCER" => SpanKind::Producer,
            "SPAN_KIND_CONSUMER" => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// Separates the values of a span's dimensions in their joined name.
pub const DIMENSION_SEPARATOR: char = '\u{1f}';

/// One span, as the analyses see it. Strings are interned; an absent attribute is
/// the empty symbol (`Sym(0)`).
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// Start, microseconds since the Unix epoch.
    pub start_us: i64,
    pub duration_us: u64,
    pub refs: Refs,
    pub service: Sym,
    pub operation: Sym,
    /// Messaging destination (topic or queue) of a producer or consumer span.
    pub destination: Sym,
    /// Who a client span calls, when the callee may not be traced: the first
    /// of the peer attributes present, in the configured order
    /// ([`super::PeerAttribute`]; `peer.service`, `db.name`, `db.system`,
    /// `server.address` by default).
    pub peer: Sym,
    /// The values of the configured RED dimensions, in order, joined by
    /// [`DIMENSION_SEPARATOR`]; 0 when none is configured or none is present.
    pub dimensions: Sym,
    /// A hash of the database statement (`db.statement`, `db.query.text`); 0 when
    /// there is none. Calls repeat a statement when their hashes are equal.
    pub statement: u32,
    /// How many spans of real traffic this one stands for, as its sampling
    /// states ([`super::sampling`]): 1/p; 0 when it states nothing.
    pub adjusted_count: f32,
    pub kind: SpanKind,
    /// Tag `error=true`, or OTel status ERROR.
    pub error: bool,
}

impl Span {
    /// Event time of a span: when it ended, which is when a tracer reports it.
    pub fn event_time_us(&self) -> i64 {
        self.start_us.saturating_add(self.duration_us.min(i64::MAX as u64) as i64)
    }

    /// The references to spans of the same trace.
    pub fn local_refs(&self) -> impl Iterator<Item = &SpanRef> + '_ {
        self.refs.iter().filter(move |r| r.trace_id == self.trace_id)
    }

    /// A readable one-line description, for messages and debugging.
    pub fn describe(&self, names: &Interner) -> String {
        format!(
            "{}/{} {}:{}",
            self.trace_id,
            self.span_id,
            names.resolve(self.service),
            names.resolve(self.operation)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_stays_compact() {
        // The buffered-span budget is 160 bytes including assembly state; the span
        // itself must leave room for that.
        assert!(std::mem::size_of::<Span>() <= 112, "{}", std::mem::size_of::<Span>());
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            SpanKind::Unspecified,
            SpanKind::Internal,
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
        ] {
            assert_eq!(SpanKind::from_otlp_number(k.otlp_number()), k);
            assert_eq!(SpanKind::from_otlp_name(k.otlp_name()), k);
            if let Some(t) = k.tag_value() {
                assert_eq!(SpanKind::from_tag(t), k);
            }
        }
    }
}
