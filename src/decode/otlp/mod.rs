//! OTLP traces: `ExportTraceServiceRequest` as protobuf (Jaeger v2 / OTel collector
//! `otlp_proto`) and as OTLP JSON (hex ids, enums as numbers or names, 64-bit
//! integers as strings or numbers). One record holds many spans of many traces.
//!
//! Mapping to the Jaeger model: parent span id → `child_of`; links → `follows_from`;
//! OTel span kind → `span.kind`; status ERROR → error span; resource attribute
//! `service.name` → service.

mod encode;
mod json;
mod proto;

pub use encode::{encode_json, encode_proto};
pub use json::decode_json;
pub use proto::decode_proto;

use crate::decode::attrs::{operation_sym, Attrs};
use crate::decode::pb::otlp as pb;
use crate::decode::time;
use crate::decode::{DecodeError, Reason};
use crate::model::{Interner, RefKind, Span, SpanId, SpanKind, SpanRef, Sym, TraceId};
use std::borrow::Cow;

/// The parts of an OTLP span poirot uses, independent of the encoding.
struct Parts<'a> {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    name: Cow<'a, str>,
    kind: SpanKind,
    start_ns: u64,
    end_ns: u64,
    attrs: Attrs<'a>,
    /// Linked spans, with the relation the link's `opentracing.ref_type` names.
    links: smallvec::SmallVec<[(TraceId, SpanId, RefKind); 2]>,
    status_error: bool,
}

fn build(service: Sym, p: Parts<'_>, names: &mut Interner) -> Result<Span, DecodeError> {
    if p.trace_id.is_zero() {
        return Err(DecodeError::new(Reason::InvalidTraceId, "otlp span trace id is zero"));
    }
    if p.span_id.is_zero() {
        return Err(DecodeError::new(Reason::InvalidSpanId, "otlp span id is zero"));
    }
    if p.end_ns < p.start_ns {
        return Err(DecodeError::new(
            Reason::InvalidTime,
            format!("otlp span ends ({}) before it starts ({})", p.end_ns, p.start_ns),
        ));
    }
    let start_us = i64::try_from(p.start_ns / 1000).unwrap_or(i64::MAX);
    let dur_us = i64::try_from((p.end_ns - p.start_ns) / 1000).unwrap_or(i64::MAX);
    let (start_us, duration_us) = time::check(start_us, dur_us)?;
    let mut span = Span {
        trace_id: p.trace_id,
        span_id: p.span_id,
        start_us,
        duration_us,
        service,
        operation: operation_sym(names, &p.name),
        kind: p.kind,
        error: p.status_error,
        ..Span::default()
    };
    if let Some(parent) = p.parent.filter(|s| !s.is_zero()) {
        span.refs.push(SpanRef { trace_id: p.trace_id, span_id: parent, kind: RefKind::ChildOf });
    }
    for (t, s, kind) in p.links {
        if !s.is_zero() {
            let trace_id = if t.is_zero() { p.trace_id } else { t };
            span.refs.push(SpanRef { trace_id, span_id: s, kind });
        }
    }
    // An explicit OTel kind wins over a `span.kind` attribute.
    let mut attrs = p.attrs;
    if span.kind != SpanKind::Unspecified {
        attrs.kind = None;
    }
    attrs.apply(&mut span, names);
    Ok(span)
}

/// A link is `follows_from` unless its `opentracing.ref_type` says `child_of`
/// (what Jaeger's OTLP translator writes for a second parent or a cross-trace parent).
fn link_relation(ref_type: Option<&str>) -> RefKind {
    match ref_type {
        Some(t) if t.eq_ignore_ascii_case("child_of") => RefKind::ChildOf,
        _ => RefKind::FollowsFrom,
    }
}

fn raw_trace(b: &[u8]) -> Result<TraceId, DecodeError> {
    TraceId::from_bytes(b).ok_or_else(|| {
        DecodeError::new(Reason::InvalidTraceId, format!("otlp trace id has {} bytes, not 16", b.len()))
    })
}

fn raw_span(b: &[u8], what: &str) -> Result<SpanId, DecodeError> {
    SpanId::from_bytes(b).ok_or_else(|| {
        DecodeError::new(Reason::InvalidSpanId, format!("otlp {what} has {} bytes, not 8", b.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_otlp_json_with_names_and_numbers() {
        let rec = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"frontend"}}]},
          "scopeSpans":[{"scope":{},"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173",
             "name":"GET /","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000001000000,
             "links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b170"}],
             "status":{"code":"STATUS_CODE_ERROR"}},
            {"traceId":"00","spanId":"eee19b7ec3c1b175","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
        let (mut names, mut spans, mut errors) = (Interner::new(), Vec::new(), Vec::new());
        decode_json(rec, &mut names, &mut spans, &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].reason, Reason::InvalidTraceId);
        let s = &spans[0];
        assert_eq!(s.kind, SpanKind::Server);
        assert!(s.error);
        assert_eq!(s.duration_us, 1000);
        assert_eq!(s.refs.len(), 2);
        assert_eq!(s.refs[1].kind, RefKind::FollowsFrom);
        assert_eq!(names.resolve(s.service), "frontend");
    }

    #[test]
    fn a_link_is_child_of_when_its_ref_type_says_so_in_json_and_protobuf() {
        let rec = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"c"}}]},
          "scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"consume",
             "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000",
             "links":[{"traceId":"0000000000000000000000000000000a","spanId":"0000000000000001",
                       "attributes":[{"key":"opentracing.ref_type","value":{"stringValue":"child_of"}}]},
                      {"traceId":"0000000000000000000000000000000b","spanId":"0000000000000002",
                       "attributes":[{"key":"opentracing.ref_type","value":{"stringValue":"follows_from"}}]},
                      {"traceId":"0000000000000000000000000000000c","spanId":"0000000000000003"}]}]}]}]}"#;
        let (mut names, mut spans, mut errors) = (Interner::new(), Vec::new(), Vec::new());
        decode_json(rec, &mut names, &mut spans, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let kinds: Vec<(u64, RefKind)> = spans[0].refs.iter().map(|r| (r.trace_id.low, r.kind)).collect();
        assert_eq!(kinds, [(10, RefKind::ChildOf), (11, RefKind::FollowsFrom), (12, RefKind::FollowsFrom)]);
        // The encoders write the attribute for a child_of link, so both encodings round-trip.
        let proto = encode_proto(&spans, &names, &[]);
        let json = encode_json(&spans, &names, &[]);
        for (i, decoded) in [
            (0, decode_proto as fn(&[u8], &mut Interner, &mut Vec<Span>, &mut Vec<DecodeError>)),
            (1, decode_json),
        ] {
            let (mut n2, mut s2, mut e2) = (Interner::new(), Vec::new(), Vec::new());
            decoded(if i == 0 { &proto } else { &json }, &mut n2, &mut s2, &mut e2);
            assert!(e2.is_empty(), "{e2:?}");
            assert_eq!(s2[0].refs, spans[0].refs);
        }
    }

    #[test]
    fn garbage_proto_is_counted() {
        let (mut names, mut spans, mut errors) = (Interner::new(), Vec::new(), Vec::new());
        decode_proto(b"\x0a\xff\xff\xff\xff\x0f", &mut names, &mut spans, &mut errors);
        assert!(spans.is_empty());
        assert_eq!(errors[0].reason, Reason::MalformedProtobuf);
    }
}
