//! Jaeger protobuf (`jaeger.api_v2.Span`), one span per record: what the Jaeger
//! collector writes to Kafka with the `protobuf` / `jaeger_proto` encoding.
//!
//! Decoding walks the wire format directly (zero copy, unneeded fields skipped).
//! Two encoders: [`encode`] builds the prost types generated from
//! `proto/jaeger/model.proto` (the simulator's realistic records, and the
//! independent implementation tests hold the decoder to); [`write_span`] writes the
//! wire format straight from a [`Span`], for the repartition stage, which encodes
//! every re-keyed span, and its [`jaeger::Batch`] records ([`write_batch_span`],
//! [`decode_batch`]).

use super::attrs::{self, operation_sym, service_sym, Attrs};
use super::pb::{jaeger, Reader, WireError, Writer, FIXED64, LEN, VARINT};
use super::time;
use super::{DecodeError, Reason};
use crate::model::{Interner, RefKind, Span, SpanId, SpanRef, TraceId};
use prost::Message;

fn malformed(e: WireError, at: &str) -> DecodeError {
    DecodeError::new(Reason::MalformedProtobuf, format!("jaeger span {at}: {e}"))
}

fn utf8<'a>(b: &'a [u8], field: &str) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(b)
        .map_err(|e| DecodeError::new(Reason::InvalidUtf8, format!("jaeger span {field}: {e}")))
}

/// Seconds and nanos of a Timestamp or Duration, as microseconds.
fn seconds_nanos_us(b: &[u8], field: &str) -> Result<i64, DecodeError> {
    let mut r = Reader::new(b);
    let (mut secs, mut nanos) = (0i64, 0i64);
    while !r.at_end() {
        let (f, wt) = r.key().map_err(|e| malformed(e, field))?;
        match (f, wt) {
            (1, VARINT) => secs = r.varint().map_err(|e| malformed(e, field))? as i64,
            (2, VARINT) => nanos = i64::from(r.varint().map_err(|e| malformed(e, field))? as i32),
            _ => r.skip(wt).map_err(|e| malformed(e, field))?,
        }
    }
    secs.checked_mul(1_000_000)
        .and_then(|v| v.checked_add(nanos / 1000))
        .ok_or_else(|| DecodeError::new(Reason::InvalidTime, format!("{field} overflows")))
}

fn decode_ref(b: &[u8], trace: TraceId) -> Result<Option<SpanRef>, DecodeError> {
    let mut r = Reader::new(b);
    let (mut trace_id, mut span_id, mut kind) = (trace, SpanId(0), RefKind::ChildOf);
    while !r.at_end() {
        let (f, wt) = r.key().map_err(|e| malformed(e, "reference"))?;
        match (f, wt) {
            (1, LEN) => {
                let raw = r.bytes().map_err(|e| malformed(e, "reference"))?;
                // An empty trace id means "this trace"; anything else must be 16 bytes.
                if !raw.is_empty() {
                    trace_id = TraceId::from_bytes(raw).ok_or_else(|| {
                        DecodeError::new(
                            Reason::InvalidTraceId,
                            format!("reference trace id has {} bytes, not 16", raw.len()),
                        )
                    })?;
                }
            }
            (2, LEN) => {
                let raw = r.bytes().map_err(|e| malformed(e, "reference"))?;
                span_id = SpanId::from_bytes(raw).ok_or_else(|| {
                    DecodeError::new(
                        Reason::InvalidSpanId,
                        format!("reference span id has {} bytes, not 8", raw.len()),
                    )
                })?;
            }
            (3, VARINT) => {
                if r.varint().map_err(|e| malformed(e, "reference"))? == 1 {
                    kind = RefKind::FollowsFrom;
                }
            }
            _ => r.skip(wt).map_err(|e| malformed(e, "reference"))?,
        }
    }
    // A zero span id is how some clients say "no parent".
    Ok((!span_id.is_zero()).then_some(SpanRef {
        trace_id: if trace_id.is_zero() { trace } else { trace_id },
        span_id,
        kind,
    }))
}

/// Walks one KeyValue into `attrs`.
fn decode_tag<'a>(b: &'a [u8], attrs: &mut Attrs<'a>) -> Result<(), DecodeError> {
    let mut r = Reader::new(b);
    let (mut key, mut v_str, mut v_bool, mut v_num) = (&b""[..], None, None, None);
    while !r.at_end() {
        let (f, wt) = r.key().map_err(|e| malformed(e, "tag"))?;
        match (f, wt) {
            (1, LEN) => {
                key = r.bytes().map_err(|e| malformed(e, "tag"))?;
                // Most tags are of no interest; the key comes first, so stop here.
                if attrs::read_key(key).is_none() && !attrs.wants(key) {
                    return Ok(());
                }
            }
            (3, LEN) => v_str = Some(r.bytes().map_err(|e| malformed(e, "tag"))?),
            (4, VARINT) => v_bool = Some(r.varint().map_err(|e| malformed(e, "tag"))? != 0),
            (5, VARINT) => v_num = Some(r.varint().map_err(|e| malformed(e, "tag"))? as i64 as f64),
            (6, FIXED64) => v_num = Some(f64::from_bits(r.fixed64().map_err(|e| malformed(e, "tag"))?)),
            _ => r.skip(wt).map_err(|e| malformed(e, "tag"))?,
        }
    }
    // A key poirot reads is known to be UTF-8; a dimension's is checked; a tag
    // without a key is read no further.
    let key = match attrs::read_key(key) {
        Some(k) => k,
        None if attrs.wants(key) => utf8(key, "tag key")?,
        None => return Ok(()),
    };
    if let Some(v) = v_str {
        attrs.string(key, utf8(v, "tag value")?);
    }
    if let Some(v) = v_bool {
        attrs.boolean(key, v);
    }
    if let Some(v) = v_num {
        attrs.number(key, v);
    }
    Ok(())
}

/// A tag's key and its string value, if it has one.
fn tag_string(b: &[u8]) -> Result<(&[u8], Option<&[u8]>), DecodeError> {
    let mut r = Reader::new(b);
    let (mut key, mut value) = (&b""[..], None);
    while !r.at_end() {
        let (f, wt) = r.key().map_err(|e| malformed(e, "process tag"))?;
        match (f, wt) {
            (1, LEN) => key = r.bytes().map_err(|e| malformed(e, "process tag"))?,
            (3, LEN) => value = Some(r.bytes().map_err(|e| malformed(e, "process tag"))?),
            _ => r.skip(wt).map_err(|e| malformed(e, "process tag"))?,
        }
    }
    Ok((key, value))
}

/// The process's service name; its tags are read only for dimensions.
fn process<'a>(b: &'a [u8], attrs: &mut Attrs<'a>) -> Result<&'a [u8], DecodeError> {
    let mut r = Reader::new(b);
    let mut name = &b""[..];
    while !r.at_end() {
        let (f, wt) = r.key().map_err(|e| malformed(e, "process"))?;
        match (f, wt) {
            (1, LEN) => name = r.bytes().map_err(|e| malformed(e, "process"))?,
            (2, LEN) if attrs.has_dimensions() => {
                let (key, value) = tag_string(r.bytes().map_err(|e| malformed(e, "process tag"))?)?;
                if let (true, Some(v)) = (attrs.wants(key), value) {
                    attrs.resource(utf8(key, "process tag key")?, utf8(v, "process tag value")?);
                }
            }
            _ => r.skip(wt).map_err(|e| malformed(e, "process"))?,
        }
    }
    Ok(name)
}

/// Decodes one `jaeger.api_v2.Span`.
pub fn decode(record: &[u8], names: &mut Interner) -> Result<Span, DecodeError> {
    let dimensions = names.dimensions();
    let mut attrs = Attrs::with_dimensions(&dimensions);
    let mut r = Reader::new(record);
    let mut trace_raw: Option<&[u8]> = None;
    let mut span_raw: Option<&[u8]> = None;
    let mut op = &b""[..];
    let mut service = &b""[..];
    let mut ref_msgs: smallvec::SmallVec<[&[u8]; 2]> = smallvec::SmallVec::new();
    let mut tag_msgs: smallvec::SmallVec<[&[u8]; 16]> = smallvec::SmallVec::new();
    let (mut start_us, mut duration_us) = (None, 0i64);
    while !r.at_end() {
        let (f, wt) = r.key().map_err(|e| malformed(e, "field key"))?;
        match (f, wt) {
            (1, LEN) => trace_raw = Some(r.bytes().map_err(|e| malformed(e, "trace_id"))?),
            (2, LEN) => span_raw = Some(r.bytes().map_err(|e| malformed(e, "span_id"))?),
            (3, LEN) => op = r.bytes().map_err(|e| malformed(e, "operation_name"))?,
            (4, LEN) => ref_msgs.push(r.bytes().map_err(|e| malformed(e, "references"))?),
            (6, LEN) => {
                let b = r.bytes().map_err(|e| malformed(e, "start_time"))?;
                start_us = Some(seconds_nanos_us(b, "start_time")?);
            }
            (7, LEN) => {
                let b = r.bytes().map_err(|e| malformed(e, "duration"))?;
                duration_us = seconds_nanos_us(b, "duration")?;
            }
            (8, LEN) => tag_msgs.push(r.bytes().map_err(|e| malformed(e, "tags"))?),
            (10, LEN) => service = process(r.bytes().map_err(|e| malformed(e, "process"))?, &mut attrs)?,
            _ => r.skip(wt).map_err(|e| malformed(e, "unknown field"))?,
        }
    }
    let trace_id = trace_raw
        .and_then(TraceId::from_bytes)
        .filter(|t| !t.is_zero())
        .ok_or_else(|| bad_id(Reason::InvalidTraceId, "trace id", trace_raw, 16))?;
    let span_id = span_raw
        .and_then(SpanId::from_bytes)
        .filter(|s| !s.is_zero())
        .ok_or_else(|| bad_id(Reason::InvalidSpanId, "span id", span_raw, 8))?;
    let start = start_us.ok_or_else(|| DecodeError::new(Reason::InvalidTime, "span has no start time"))?;
    let (start_us, duration_us) = time::check(start, duration_us)?;

    for t in &tag_msgs {
        decode_tag(t, &mut attrs)?;
    }
    let mut span = Span {
        trace_id,
        span_id,
        start_us,
        duration_us,
        service: service_sym(names, utf8(service, "service name")?),
        operation: operation_sym(names, utf8(op, "operation name")?),
        ..Span::default()
    };
    for m in &ref_msgs {
        if let Some(r) = decode_ref(m, trace_id)? {
            span.refs.push(r);
        }
    }
    attrs.apply(&mut span, names);
    Ok(span)
}

fn bad_id(reason: Reason, what: &str, raw: Option<&[u8]>, want: usize) -> DecodeError {
    let detail = match raw {
        None => format!("{what} is missing"),
        Some(b) if b.len() != want => format!("{what} has {} bytes, not {want}", b.len()),
        Some(_) => format!("{what} is zero"),
    };
    DecodeError::new(reason, detail)
}

fn kv_str(key: &str, v: &str) -> jaeger::KeyValue {
    jaeger::KeyValue { key: key.into(), v_str: v.to_owned(), ..Default::default() }
}

/// The generated message for a span; `extra` adds string tags (realistic payloads).
pub fn to_message(span: &Span, names: &Interner, extra: &[(&str, &str)]) -> jaeger::Span {
    let mut tags: Vec<jaeger::KeyValue> =
        attrs::jaeger_tags(span, names).into_iter().map(|(k, v)| kv_str(k, &v)).collect();
    if span.error {
        tags.push(jaeger::KeyValue {
            key: attrs::keys::ERROR.into(),
            v_type: jaeger::ValueType::Bool as i32,
            v_bool: true,
            ..Default::default()
        });
    }
    tags.extend(extra.iter().map(|(k, v)| kv_str(k, v)));
    jaeger::Span {
        trace_id: span.trace_id.to_bytes().to_vec().into(),
        span_id: span.span_id.to_bytes().to_vec().into(),
        operation_name: names.resolve(span.operation).to_owned(),
        references: span
            .refs
            .iter()
            .map(|r| jaeger::SpanRef {
                trace_id: r.trace_id.to_bytes().to_vec().into(),
                span_id: r.span_id.to_bytes().to_vec().into(),
                ref_type: match r.kind {
                    RefKind::ChildOf => jaeger::SpanRefType::ChildOf as i32,
                    RefKind::FollowsFrom => jaeger::SpanRefType::FollowsFrom as i32,
                },
            })
            .collect(),
        flags: 1,
        start_time: Some(prost_types::Timestamp {
            seconds: span.start_us.div_euclid(1_000_000),
            nanos: (span.start_us.rem_euclid(1_000_000) * 1000) as i32,
        }),
        duration: Some(prost_types::Duration {
            seconds: (span.duration_us / 1_000_000) as i64,
            nanos: ((span.duration_us % 1_000_000) * 1000) as i32,
        }),
        tags,
        process: Some(jaeger::Process {
            service_name: names.resolve(span.service).to_owned(),
            tags: vec![kv_str("hostname", "poirot-sim"), kv_str("jaeger.version", "poirot")],
        }),
        process_id: Default::default(),
    }
}

/// Encodes a span as a `jaeger.api_v2.Span` record.
pub fn encode(span: &Span, names: &Interner, extra: &[(&str, &str)]) -> Vec<u8> {
    to_message(span, names, extra).encode_to_vec()
}

/// Writes `span` as the fields of a `jaeger.api_v2.Span`: what poirot reads of it
/// (ids, operation, references, times, the attributes it keeps, the service).
pub fn write_span(w: &mut Writer<'_>, span: &Span, names: &Interner) {
    w.bytes_field(1, &span.trace_id.to_bytes());
    w.bytes_field(2, &span.span_id.to_bytes());
    w.bytes_field(3, names.resolve(span.operation).as_bytes());
    for r in &span.refs {
        w.message(4, |w| {
            w.bytes_field(1, &r.trace_id.to_bytes());
            w.bytes_field(2, &r.span_id.to_bytes());
            if r.kind == RefKind::FollowsFrom {
                w.varint_field(3, jaeger::SpanRefType::FollowsFrom as u64);
            }
        });
    }
    w.varint_field(5, 1); // sampled
    w.message(6, |w| {
        w.varint_field(1, span.start_us.div_euclid(1_000_000) as u64);
        w.varint_field(2, (span.start_us.rem_euclid(1_000_000) * 1000) as u64);
    });
    w.message(7, |w| {
        w.varint_field(1, span.duration_us / 1_000_000);
        w.varint_field(2, (span.duration_us % 1_000_000) * 1000);
    });
    for (key, value) in attrs::jaeger_tags(span, names) {
        w.message(8, |w| {
            w.bytes_field(1, key.as_bytes());
            w.bytes_field(3, value.as_bytes());
        });
    }
    if span.error {
        w.message(8, |w| {
            w.bytes_field(1, attrs::keys::ERROR.as_bytes());
            w.varint_field(2, jaeger::ValueType::Bool as u64);
            w.varint_field(4, 1);
        });
    }
    w.message(10, |w| w.bytes_field(1, names.resolve(span.service).as_bytes()));
}

/// Appends `span` to `out`, the body of a `jaeger.api_v2.Batch` (field 1, one
/// per span; each span carries its own process, so the batch's is left out).
pub fn write_batch_span(out: &mut Vec<u8>, span: &Span, names: &Interner) {
    Writer { out }.message(1, |w| write_span(w, span, names));
}

/// Decodes a `jaeger.api_v2.Batch`: each span on its own (a bad one is an error
/// and the rest are kept); a broken batch ends with one error.
pub fn decode_batch(
    record: &[u8],
    names: &mut Interner,
    spans: &mut Vec<Span>,
    errors: &mut Vec<DecodeError>,
) {
    let mut r = Reader::new(record);
    while !r.at_end() {
        let field = r.key().and_then(|(f, wt)| match (f, wt) {
            (1, LEN) => r.bytes().map(Some),
            _ => r.skip(wt).map(|_| None),
        });
        match field {
            Ok(Some(b)) => match decode(b, names) {
                Ok(s) => spans.push(s),
                Err(e) => errors.push(e),
            },
            Ok(None) => {}
            Err(e) => return errors.push(malformed(e, "batch")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SpanKind;

    fn sample(names: &mut Interner) -> Span {
        let trace_id = TraceId::new(1, 2);
        Span {
            trace_id,
            span_id: SpanId(3),
            start_us: 1_700_000_000_123_456,
            duration_us: 1500,
            refs: smallvec::smallvec![SpanRef { trace_id, span_id: SpanId(9), kind: RefKind::FollowsFrom }],
            service: names.intern("SandboxAnalyser"),
            operation: names.intern("S3_GET"),
            destination: names.intern("SAMPLE_RECEIVED"),
            kind: SpanKind::Consumer,
            error: true,
            ..Span::default()
        }
    }

    #[test]
    fn round_trips_through_generated_types() {
        let mut names = Interner::new();
        let s = sample(&mut names);
        let bytes = encode(&s, &names, &[("http.method", "GET")]);
        assert_eq!(decode(&bytes, &mut names), Ok(s));
    }

    #[test]
    fn the_direct_encoder_writes_what_the_generated_types_read() {
        let mut names = Interner::new();
        let mut spans = vec![sample(&mut names)];
        let mut plain = sample(&mut names);
        plain.refs.clear();
        plain.error = false;
        plain.kind = SpanKind::Unspecified;
        // Before the epoch (which the decoder refuses): negative seconds, positive nanos.
        plain.start_us = -1_500_000;
        plain.duration_us = 3_000_000_123;
        plain.operation = names.intern(&"o".repeat(300)); // lengths over one varint byte
        spans.push(plain);
        let mut late = spans[0].clone();
        late.start_us = 1_700_000_000_999_999;
        spans.push(late);
        for s in &spans {
            let mut out = Vec::new();
            write_span(&mut Writer { out: &mut out }, s, &names);
            let mut want = to_message(s, &names, &[]);
            want.process.as_mut().expect("process").tags.clear();
            assert_eq!(jaeger::Span::decode(&out[..]).expect("prost reads it"), want);
            if s.start_us > 0 {
                assert_eq!(decode(&out, &mut names).as_ref(), Ok(s));
            }
        }
    }

    #[test]
    fn batches_read_back_span_by_span_and_keep_the_good_spans_of_a_bad_one() {
        let mut names = Interner::new();
        let a = sample(&mut names);
        let mut b = sample(&mut names);
        b.trace_id = TraceId::new(7, 8);
        b.refs.clear();
        let mut out = Vec::new();
        write_batch_span(&mut out, &a, &names);
        write_batch_span(&mut out, &b, &names);
        let batch = jaeger::Batch::decode(&out[..]).expect("a jaeger Batch");
        assert_eq!(batch.spans.len(), 2);
        let (mut spans, mut errors) = (Vec::new(), Vec::new());
        decode_batch(&out, &mut names, &mut spans, &mut errors);
        assert_eq!((spans, errors.len()), (vec![a.clone(), b.clone()], 0));

        // A span with a zero trace id between two good ones: counted, the others kept.
        let mut bad = b.clone();
        bad.trace_id = TraceId::default();
        let mut out = Vec::new();
        for s in [&a, &bad, &b] {
            write_batch_span(&mut out, s, &names);
        }
        let (mut spans, mut errors) = (Vec::new(), Vec::new());
        decode_batch(&out, &mut names, &mut spans, &mut errors);
        assert_eq!(spans, vec![a.clone(), b.clone()]);
        assert_eq!(errors.iter().map(|e| e.reason).collect::<Vec<_>>(), [Reason::InvalidTraceId]);

        // Cut short: the whole spans before the cut are kept, then one error.
        let (mut spans, mut errors) = (Vec::new(), Vec::new());
        decode_batch(&out[..out.len() - 3], &mut names, &mut spans, &mut errors);
        assert_eq!(spans, vec![a]);
        assert_eq!(errors.last().map(|e| e.reason), Some(Reason::MalformedProtobuf));
    }

    #[test]
    fn truncation_and_garbage_are_errors_not_panics() {
        let mut names = Interner::new();
        let bytes = encode(&sample(&mut names), &names, &[]);
        for cut in 0..bytes.len() {
            let _ = decode(&bytes[..cut], &mut names);
        }
        let e = decode(&bytes[..bytes.len() / 2], &mut names).expect_err("truncated");
        assert_eq!(e.reason, Reason::MalformedProtobuf);
        let e = decode(b"\xff\xff\xff", &mut names).expect_err("garbage");
        assert_eq!(e.reason, Reason::MalformedProtobuf);
    }

    #[test]
    fn zero_ids_are_rejected_by_name() {
        let mut names = Interner::new();
        let mut s = sample(&mut names);
        s.trace_id = TraceId::default();
        let e = decode(&encode(&s, &names, &[]), &mut names).expect_err("zero trace id");
        assert_eq!(e.reason, Reason::InvalidTraceId);
        assert_eq!(e.detail, "trace id is zero");
    }

    #[test]
    fn invalid_utf8_in_service_is_named() {
        let mut names = Interner::new();
        let s = sample(&mut names);
        let mut bytes = encode(&s, &names, &[]);
        let at = bytes.windows(15).position(|w| w == b"SandboxAnalyser").expect("service name on the wire");
        bytes[at] = 0xff;
        let e = decode(&bytes, &mut names).expect_err("invalid utf-8");
        assert_eq!(e.reason, Reason::InvalidUtf8);
        assert!(e.detail.contains("service name"), "{}", e.detail);
    }
}
