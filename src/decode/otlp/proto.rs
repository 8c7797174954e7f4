//! OTLP protobuf (`ExportTraceServiceRequest`) by walking the wire format: no
//! copies, and only the fields poirot reads are looked at (their UTF-8 checked);
//! events, scopes, trace states and unread attributes are skipped whole.
//!
//! A request is all or nothing at the wire level, as a generated decoder would
//! be: a malformed request counts one error and hands on no span. Per-span faults (a short id, a zero id, a span
//! ending before it starts) drop only that span.

use super::{build, link_relation, raw_span, raw_trace, Parts};
use crate::decode::attrs::{self, keys, service_sym, Attrs};
use crate::decode::pb::{Reader, WireError, FIXED64, LEN, VARINT};
use crate::decode::{DecodeError, Reason};
use crate::model::{Interner, Span, SpanKind, TraceId};
use smallvec::SmallVec;

/// A request-level fault: the whole request is dropped.
fn malformed(e: WireError, at: &str) -> DecodeError {
    DecodeError::new(Reason::MalformedProtobuf, format!("otlp request {at}: {e}"))
}

fn utf8<'a>(b: &'a [u8], field: &str) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(b)
        .map_err(|e| DecodeError::new(Reason::InvalidUtf8, format!("otlp request {field}: {e}")))
}

/// Calls `f` with each field of the message `b` until it returns an error.
#[inline]
fn fields<'a>(
    b: &'a [u8],
    at: &str,
    mut f: impl FnMut(u32, u8, &mut Reader<'a>) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(b);
    while !r.at_end() {
        let (field, wt) = r.key().map_err(|e| malformed(e, at))?;
        // `f` reads the fields it knows and says so; the rest are skipped.
        if !f(field, wt, &mut r)? {
            r.skip(wt).map_err(|e| malformed(e, at))?;
        }
    }
    Ok(())
}

#[inline]
fn bytes<'a>(r: &mut Reader<'a>, at: &str) -> Result<&'a [u8], DecodeError> {
    r.bytes().map_err(|e| malformed(e, at))
}

/// A `KeyValue`'s key and, when it is a string, a bool or a number, its value.
enum Value<'a> {
    Str(&'a [u8]),
    Bool(bool),
    Num(f64),
    Other,
}

/// A `KeyValue`'s key and its `AnyValue` message, not yet read.
#[inline]
fn key_value(b: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let (mut key, mut value) = (&b""[..], &b""[..]);
    fields(b, "attribute", |f, wt, r| {
        match (f, wt) {
            (1, LEN) => key = bytes(r, "attribute key")?,
            (2, LEN) => value = bytes(r, "attribute value")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok((key, value))
}

/// An `AnyValue`: a string or a bool, or something poirot does not read.
fn any_value(b: &[u8]) -> Result<Value<'_>, DecodeError> {
    let mut v = Value::Other;
    fields(b, "attribute value", |f, wt, r| {
        match (f, wt) {
            (1, LEN) => v = Value::Str(bytes(r, "string value")?),
            (2, VARINT) => v = Value::Bool(r.varint().map_err(|e| malformed(e, "bool value"))? != 0),
            (3, VARINT) => v = Value::Num(r.varint().map_err(|e| malformed(e, "int value"))? as i64 as f64),
            (4, FIXED64) => {
                v = Value::Num(f64::from_bits(r.fixed64().map_err(|e| malformed(e, "double value"))?))
            }
            // A oneof: the last member on the wire wins.
            _ => {
                v = Value::Other;
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    Ok(v)
}

/// The string value of the attribute `wanted` among `kvs`, UTF-8 checked.
fn string_attr<'a>(kvs: &[&'a [u8]], wanted: &str) -> Result<Option<&'a str>, DecodeError> {
    let mut found = None;
    for kv in kvs {
        let (k, v) = key_value(kv)?;
        if k == wanted.as_bytes() {
            if let Value::Str(v) = any_value(v)? {
                found = Some(utf8(v, wanted)?);
            }
        }
    }
    Ok(found)
}

/// The resource's string attributes that are dimensions.
fn resource_dimensions<'a>(kvs: &[&'a [u8]], attrs: &mut Attrs<'a>) -> Result<(), DecodeError> {
    for kv in kvs {
        let (k, v) = key_value(kv)?;
        if attrs.wants(k) {
            if let Value::Str(v) = any_value(v)? {
                attrs.resource(utf8(k, "resource attribute key")?, utf8(v, "resource attribute")?);
            }
        }
    }
    Ok(())
}

/// A link as walked: trace id, span id, `opentracing.ref_type`.
type WalkedLink<'a> = (&'a [u8], &'a [u8], Option<&'a str>);

/// A span walked but not yet checked: ids as they came, so a bad one drops only this span.
struct Walked<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent: &'a [u8],
    name: &'a str,
    kind: i32,
    start_ns: u64,
    end_ns: u64,
    attrs: Attrs<'a>,
    links: SmallVec<[WalkedLink<'a>; 2]>,
    status_error: bool,
}

fn walk_span<'a>(b: &'a [u8], dimensions: &'a [Box<str>]) -> Result<Walked<'a>, DecodeError> {
    let mut s = Walked {
        trace_id: b"",
        span_id: b"",
        parent: b"",
        name: "",
        kind: 0,
        start_ns: 0,
        end_ns: 0,
        attrs: Attrs::with_dimensions(dimensions),
        links: SmallVec::new(),
        status_error: false,
    };
    fields(b, "span", |f, wt, r| {
        match (f, wt) {
            (1, LEN) => s.trace_id = bytes(r, "trace_id")?,
            (2, LEN) => s.span_id = bytes(r, "span_id")?,
            // Read only for its sampling threshold: one that is not UTF-8 states none.
            (3, LEN) => s.attrs.tracestate(std::str::from_utf8(bytes(r, "trace_state")?).unwrap_or_default()),
            (4, LEN) => s.parent = bytes(r, "parent_span_id")?,
            (5, LEN) => s.name = utf8(bytes(r, "name")?, "span name")?,
            (6, VARINT) => s.kind = r.varint().map_err(|e| malformed(e, "kind"))? as i32,
            (7, FIXED64) => s.start_ns = r.fixed64().map_err(|e| malformed(e, "start_time_unix_nano"))?,
            (8, FIXED64) => s.end_ns = r.fixed64().map_err(|e| malformed(e, "end_time_unix_nano"))?,
            (9, LEN) => {
                let (k, v) = key_value(bytes(r, "attributes")?)?;
                // Most attributes are of no interest: their values are not even walked.
                let k = match attrs::read_key(k) {
                    Some(k) => Some(k),
                    None if s.attrs.wants(k) => Some(utf8(k, "attribute key")?),
                    None => None,
                };
                if let Some(k) = k {
                    match any_value(v)? {
                        Value::Str(v) => s.attrs.string(k, utf8(v, k)?),
                        Value::Bool(v) => s.attrs.boolean(k, v),
                        Value::Num(v) => s.attrs.number(k, v),
                        Value::Other => {}
                    }
                }
            }
            (13, LEN) => s.links.push(walk_link(bytes(r, "links")?)?),
            (15, LEN) => {
                fields(bytes(r, "status")?, "status", |f, wt, r| {
                    if (f, wt) != (3, VARINT) {
                        return Ok(false);
                    }
                    let code = r.varint().map_err(|e| malformed(e, "status code"))?;
                    s.status_error = code == super::pb::status::StatusCode::Error as u64;
                    Ok(true)
                })?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(s)
}

fn walk_link(b: &[u8]) -> Result<WalkedLink<'_>, DecodeError> {
    let (mut trace, mut span) = (&b""[..], &b""[..]);
    let mut kvs: SmallVec<[&[u8]; 4]> = SmallVec::new();
    fields(b, "link", |f, wt, r| {
        match (f, wt) {
            (1, LEN) => trace = bytes(r, "link trace_id")?,
            (2, LEN) => span = bytes(r, "link span_id")?,
            (4, LEN) => kvs.push(bytes(r, "link attributes")?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok((trace, span, string_attr(&kvs, keys::REF_TYPE)?))
}

/// Walks a whole request, building each span as it is walked.
fn walk(
    record: &[u8],
    names: &mut Interner,
    spans: &mut Vec<Span>,
    errors: &mut Vec<DecodeError>,
) -> Result<(), DecodeError> {
    let dimensions = names.dimensions();
    fields(record, "", |f, wt, r| {
        if (f, wt) != (1, LEN) {
            return Ok(false);
        }
        let resource_spans = bytes(r, "resource_spans")?;
        // The resource may follow its spans on the wire: spans are walked once it is known.
        let mut resource_kvs: SmallVec<[&[u8]; 8]> = SmallVec::new();
        let mut scopes: SmallVec<[&[u8]; 2]> = SmallVec::new();
        fields(resource_spans, "resource_spans", |f, wt, r| {
            match (f, wt) {
                (1, LEN) => fields(bytes(r, "resource")?, "resource", |f, wt, r| {
                    if (f, wt) != (1, LEN) {
                        return Ok(false);
                    }
                    resource_kvs.push(bytes(r, "resource attributes")?);
                    Ok(true)
                })?,
                (2, LEN) => scopes.push(bytes(r, "scope_spans")?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let service = service_sym(names, string_attr(&resource_kvs, keys::SERVICE_NAME)?.unwrap_or(""));
        for scope in scopes {
            fields(scope, "scope_spans", |f, wt, r| {
                if (f, wt) != (2, LEN) {
                    return Ok(false);
                }
                let mut walked = walk_span(bytes(r, "spans")?, &dimensions)?;
                if walked.attrs.has_dimensions() {
                    resource_dimensions(&resource_kvs, &mut walked.attrs)?;
                }
                match parts(walked).and_then(|p| build(service, p, names)) {
                    Ok(span) => spans.push(span),
                    Err(e) => errors.push(e),
                }
                Ok(true)
            })?;
        }
        Ok(true)
    })
}

/// The checked parts of a walked span.
fn parts(s: Walked<'_>) -> Result<Parts<'_>, DecodeError> {
    let links = s
        .links
        .iter()
        .map(|&(t, span, ref_type)| {
            let t = if t.is_empty() { TraceId::default() } else { raw_trace(t)? };
            Ok((t, raw_span(span, "link span id")?, link_relation(ref_type)))
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(Parts {
        trace_id: raw_trace(s.trace_id)?,
        span_id: raw_span(s.span_id, "span id")?,
        parent: if s.parent.is_empty() { None } else { Some(raw_span(s.parent, "parent span id")?) },
        name: s.name.into(),
        kind: SpanKind::from_otlp_number(s.kind),
        start_ns: s.start_ns,
        end_ns: s.end_ns,
        attrs: s.attrs,
        links,
        status_error: s.status_error,
    })
}

/// Decodes one protobuf `ExportTraceServiceRequest`.
pub fn decode_proto(
    record: &[u8],
    names: &mut Interner,
    spans: &mut Vec<Span>,
    errors: &mut Vec<DecodeError>,
) {
    let (spans_before, errors_before) = (spans.len(), errors.len());
    if let Err(e) = walk(record, names, spans, errors) {
        // All or nothing: what was built before the fault goes.
        spans.truncate(spans_before);
        errors.truncate(errors_before);
        errors.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protobuf writer for hand-built messages, unknown fields included.
    #[derive(Default)]
    struct W(Vec<u8>);

    impl W {
        fn varint(mut self, mut v: u64) -> Self {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
            self
        }
        fn key(self, field: u32, wt: u8) -> Self {
            self.varint(u64::from(field) << 3 | u64::from(wt))
        }
        fn bytes(self, field: u32, b: &[u8]) -> Self {
            let mut w = self.key(field, LEN).varint(b.len() as u64);
            w.0.extend_from_slice(b);
            w
        }
        fn msg(self, field: u32, m: W) -> Self {
            self.bytes(field, &m.0)
        }
        fn fixed64(self, field: u32, v: u64) -> Self {
            let mut w = self.key(field, FIXED64);
            w.0.extend_from_slice(&v.to_le_bytes());
            w
        }
        fn fixed32(self, field: u32, v: u32) -> Self {
            let mut w = self.key(field, 5);
            w.0.extend_from_slice(&v.to_le_bytes());
            w
        }
        fn uint(self, field: u32, v: u64) -> Self {
            self.key(field, VARINT).varint(v)
        }
    }

    fn string_kv(k: &str, v: &[u8]) -> W {
        W::default().bytes(1, k.as_bytes()).msg(2, W::default().bytes(1, v))
    }

    fn span(trace: &[u8], id: u8, name: &[u8]) -> W {
        W::default()
            .bytes(1, trace)
            .bytes(2, &[0, 0, 0, 0, 0, 0, 0, id])
            // trace_state, unread.
            .bytes(3, b"ot=th:8")
            .bytes(5, name)
            .uint(6, 4)
            .fixed64(7, 1_700_000_000_000_000_000)
            .fixed64(8, 1_700_000_000_002_000_000)
            // An unread attribute whose value is an int, one with invalid UTF-8, and a read one.
            .msg(9, W::default().bytes(1, b"retries").msg(2, W::default().uint(3, 7)))
            .msg(9, string_kv("http.url", b"\xff\xfe"))
            .msg(9, string_kv("messaging.destination.name", b"reports"))
            // An event (unread), dropped counts, flags.
            .msg(11, W::default().fixed64(1, 1).bytes(2, b"retry"))
            .uint(10, 3)
            .fixed32(16, 1)
            .msg(15, W::default().bytes(2, b"boom").uint(3, 2))
    }

    const TRACE: [u8; 16] = [1; 16];

    fn request(spans: Vec<W>) -> Vec<u8> {
        let mut scope = W::default().msg(1, W::default().bytes(1, b"lib"));
        for s in spans {
            scope = scope.msg(2, s);
        }
        // The resource after its spans, as nothing forbids.
        let rs = W::default().msg(2, scope).bytes(3, b"https://schema").msg(
            1,
            W::default().msg(1, string_kv("host.name", b"h")).msg(1, string_kv("service.name", b"reporter")),
        );
        W::default().msg(1, rs).0
    }

    fn decoded(record: &[u8]) -> (Interner, Vec<Span>, Vec<DecodeError>) {
        let (mut names, mut spans, mut errors) = (Interner::new(), Vec::new(), Vec::new());
        decode_proto(record, &mut names, &mut spans, &mut errors);
        (names, spans, errors)
    }

    #[test]
    fn reads_what_it_needs_and_skips_unknown_fields_and_unread_values() {
        let (names, spans, errors) = decoded(&request(vec![span(&TRACE, 1, b"publish")]));
        assert!(errors.is_empty(), "{errors:?}");
        let s = &spans[0];
        assert_eq!(s.trace_id, TraceId::from_bytes(&TRACE).expect("16 bytes"));
        assert_eq!(s.span_id.0, 1);
        assert_eq!(names.resolve(s.service), "reporter");
        assert_eq!(names.resolve(s.operation), "publish");
        assert_eq!(names.resolve(s.destination), "reports");
        assert_eq!(s.kind, SpanKind::Producer);
        assert!(s.error);
        assert_eq!(s.duration_us, 2000);
    }

    #[test]
    fn a_bad_span_drops_only_itself() {
        let short_trace = span(&TRACE[..15], 2, b"b");
        let (_, spans, errors) =
            decoded(&request(vec![span(&TRACE, 1, b"a"), short_trace, span(&TRACE, 3, b"c")]));
        assert_eq!(spans.iter().map(|s| s.span_id.0).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].reason, Reason::InvalidTraceId);
    }

    #[test]
    fn a_malformed_request_counts_one_error_and_hands_on_no_span() {
        let good = request(vec![span(&TRACE, 1, b"a"), span(&TRACE, 2, b"b")]);
        // Cut inside the second span: the first was already built.
        let (_, spans, errors) = decoded(&good[..good.len() - 30]);
        assert!(spans.is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].reason, Reason::MalformedProtobuf);
        // A span name that is not UTF-8 is read, so it is refused, with the whole request.
        let (_, spans, errors) = decoded(&request(vec![span(&TRACE, 1, b"a"), span(&TRACE, 2, b"\xc3")]));
        assert!(spans.is_empty());
        assert_eq!(errors.iter().map(|e| e.reason).collect::<Vec<_>>(), [Reason::InvalidUtf8]);
    }
}
