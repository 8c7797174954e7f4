//! Jaeger Kafka JSON: one `jaeger.api_v2.Span` per record in the protobuf JSON
//! mapping (Jaeger's `json` Kafka encoding). Ids are base64, zero values are
//! omitted (no `refType` means CHILD_OF, no `vType` means STRING), int64 values are
//! strings, times are RFC 3339 and durations look like `"0.0015s"`.
//! Field names are accepted in lowerCamelCase and in the original snake_case;
//! `null` stands for a field's default, as protobuf JSON allows.
//!
//! The record is walked once with [`json::Reader`]: tags go straight into
//! [`Attrs`], nothing poirot does not read is kept.

use super::attrs::{self, operation_sym, service_sym, Attrs};
use super::json::{self, Reader, Stop};
use super::time;
use super::{DecodeError, Reason};
use crate::model::{Interner, RefKind, Span, SpanId, SpanRef, TraceId};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Serialize;
use smallvec::SmallVec;
use std::borrow::Cow;

const FORMAT: &str = "jaeger json span";

/// What a record gives, before it is checked.
#[derive(Default)]
struct Fields<'a> {
    trace_id: Option<Cow<'a, str>>,
    span_id: Option<Cow<'a, str>>,
    operation_name: Cow<'a, str>,
    start_time: Option<Cow<'a, str>>,
    duration: Option<Cow<'a, str>>,
    service_name: Cow<'a, str>,
    /// References as given: trace id (absent: the span's own), span id, relation.
    references: SmallVec<[(Option<TraceId>, SpanId, RefKind); 2]>,
    attrs: Attrs<'a>,
}

fn read_span<'a>(r: &mut Reader<'a>, dimensions: &'a [Box<str>]) -> Result<Fields<'a>, Stop> {
    let mut f = Fields { attrs: Attrs::with_dimensions(dimensions), ..Fields::default() };
    if !r.object("the span")? {
        return Err(r.invalid("the span", "an object", json::Kind::Null));
    }
    while let Some(key) = r.key()? {
        match &*key {
            "traceId" | "trace_id" => f.trace_id = r.opt_str("traceId")?,
            "spanId" | "span_id" => f.span_id = r.opt_str("spanId")?,
            "operationName" | "operation_name" => f.operation_name = r.str("operationName")?,
            "startTime" | "start_time" => f.start_time = r.opt_str("startTime")?,
            "duration" => f.duration = r.opt_str("duration")?,
            "references" => read_references(r, &mut f.references)?,
            "tags" => read_tags(r, &mut f.attrs, false)?,
            "process" => {
                if r.object("process")? {
                    while let Some(key) = r.key()? {
                        match &*key {
                            "serviceName" | "service_name" => f.service_name = r.str("serviceName")?,
                            // Read for dimensions only.
                            "tags" if f.attrs.has_dimensions() => read_tags(r, &mut f.attrs, true)?,
                            _ => r.skip()?,
                        }
                    }
                }
            }
            _ => r.skip()?,
        }
    }
    r.end()?;
    Ok(f)
}

fn read_references<'a>(
    r: &mut Reader<'a>,
    out: &mut SmallVec<[(Option<TraceId>, SpanId, RefKind); 2]>,
) -> Result<(), Stop> {
    if !r.array("references")? {
        return Ok(());
    }
    while r.item()? {
        let (mut trace, mut span, mut kind) = (None, None, RefKind::ChildOf);
        if !r.object("a reference")? {
            continue;
        }
        while let Some(key) = r.key()? {
            match &*key {
                "traceId" | "trace_id" => {
                    trace = match r.opt_str("reference traceId")?.as_deref() {
                        None | Some("") => None,
                        Some(s) => Some(trace_id(s, "reference trace id")?),
                    }
                }
                "spanId" | "span_id" => {
                    let s = r.opt_str("reference spanId")?;
                    span = Some(span_id(s.as_deref(), "reference span id")?);
                }
                "refType" | "ref_type" => {
                    if r.enum_value("refType")?.is_some_and(|v| v.is("FOLLOWS_FROM", 1)) {
                        kind = RefKind::FollowsFrom;
                    }
                }
                _ => r.skip()?,
            }
        }
        let span = match span {
            Some(s) => s,
            None => span_id(None, "reference span id")?,
        };
        out.push((trace.filter(|t| !t.is_zero()), span, kind));
    }
    Ok(())
}

/// A span's tags, or with `resource` its process's (which give dimensions only).
fn read_tags<'a>(r: &mut Reader<'a>, attrs: &mut Attrs<'a>, resource: bool) -> Result<(), Stop> {
    if !r.array("tags")? {
        return Ok(());
    }
    while r.item()? {
        if !r.object("a tag")? {
            continue;
        }
        let (mut key, mut v_type, mut v_str, mut v_bool, mut v_num) =
            (Cow::Borrowed(""), None, None, false, None);
        while let Some(field) = r.key()? {
            match &*field {
                "key" => key = r.str("tag key")?,
                "vType" | "v_type" => v_type = r.enum_value("tag vType")?,
                "vStr" | "v_str" => v_str = r.opt_str("tag vStr")?,
                "vBool" | "v_bool" => v_bool = r.bool("tag vBool")?,
                "vInt64" | "v_int64" => v_num = r.f64("tag vInt64")?,
                "vFloat64" | "v_float64" => v_num = r.f64("tag vFloat64")?,
                _ => r.skip()?,
            }
        }
        if resource {
            if v_type.as_ref().is_none_or(|t| t.is("STRING", 0)) {
                attrs.resource(&key, v_str.unwrap_or_default());
            }
            continue;
        }
        match v_type {
            None => attrs.string(&key, v_str.unwrap_or_default()),
            Some(t) if t.is("STRING", 0) => attrs.string(&key, v_str.unwrap_or_default()),
            Some(t) if t.is("BOOL", 1) => attrs.boolean(&key, v_bool),
            Some(t) if t.is("INT64", 2) || t.is("FLOAT64", 3) => {
                if let Some(v) = v_num {
                    attrs.number(&key, v);
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The value of a base64 digit in the standard or the URL-safe alphabet
/// (protobuf JSON accepts both), or 0xff.
const B64_DIGITS: [u8; 256] = {
    let mut t = [0xff_u8; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t
};

/// An id of exactly N bytes in base64, with or without its padding.
fn b64_id<const N: usize>(s: Option<&str>, reason: Reason, what: &str) -> Result<[u8; N], DecodeError> {
    let s = s.ok_or_else(|| DecodeError::new(reason, format!("{what} is missing")))?;
    let digits = (N * 8).div_ceil(6);
    let padded = digits.div_ceil(4) * 4;
    let body = match s.len() {
        n if n == digits => s.as_bytes(),
        n if n == padded && s.as_bytes()[digits..].iter().all(|c| *c == b'=') => &s.as_bytes()[..digits],
        _ => {
            let approx = s.trim_end_matches('=').len() * 6 / 8;
            return Err(DecodeError::new(
                reason,
                format!("{what} {s:?} has {approx} bytes, not {N} ({padded} base64 characters)"),
            ));
        }
    };
    let mut out = [0u8; N];
    let (mut acc, mut bits, mut j) = (0u32, 0u32, 0);
    for c in body {
        let v = B64_DIGITS[usize::from(*c)];
        if v == 0xff {
            return Err(DecodeError::new(reason, format!("{what} {s:?} is not base64")));
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if let Some(o) = out.get_mut(j) {
                *o = (acc >> bits) as u8;
            }
            j += 1;
            acc &= (1 << bits) - 1;
        }
    }
    if acc != 0 {
        return Err(DecodeError::new(
            reason,
            format!("{what} {s:?} is not canonical base64 (trailing bits set)"),
        ));
    }
    Ok(out)
}

fn trace_id(s: &str, what: &str) -> Result<TraceId, DecodeError> {
    let b: [u8; 16] = b64_id(Some(s), Reason::InvalidTraceId, what)?;
    Ok(TraceId::from_bytes(&b).unwrap_or_default())
}

fn span_id(s: Option<&str>, what: &str) -> Result<SpanId, DecodeError> {
    let b: [u8; 8] = b64_id(s, Reason::InvalidSpanId, what)?;
    Ok(SpanId(u64::from_be_bytes(b)))
}

/// Decodes one span record.
pub fn decode(record: &[u8], names: &mut Interner) -> Result<Span, DecodeError> {
    let mut reader = Reader::new(record, FORMAT)?;
    let dimensions = names.dimensions();
    let f = read_span(&mut reader, &dimensions)?;
    let trace = match f.trace_id.as_deref() {
        Some(s) => trace_id(s, "trace id")?,
        None => return Err(DecodeError::new(Reason::InvalidTraceId, "trace id is missing")),
    };
    if trace.is_zero() {
        return Err(DecodeError::new(Reason::InvalidTraceId, "trace id is zero"));
    }
    let sid = span_id(f.span_id.as_deref(), "span id")?;
    if sid.is_zero() {
        return Err(DecodeError::new(Reason::InvalidSpanId, "span id is zero"));
    }
    let start = f
        .start_time
        .as_deref()
        .ok_or_else(|| DecodeError::new(Reason::InvalidTime, "span has no startTime"))
        .and_then(time::parse_rfc3339_us)?;
    let duration = match f.duration.as_deref() {
        Some(d) => time::parse_duration_us(d)?,
        None => 0,
    };
    let (start_us, duration_us) = time::check(start, duration)?;
    let mut span = Span {
        trace_id: trace,
        span_id: sid,
        start_us,
        duration_us,
        service: service_sym(names, &f.service_name),
        operation: operation_sym(names, &f.operation_name),
        ..Span::default()
    };
    for (rt, rs, kind) in f.references {
        if !rs.is_zero() {
            span.refs.push(SpanRef { trace_id: rt.unwrap_or(trace), span_id: rs, kind });
        }
    }
    f.attrs.apply(&mut span, names);
    Ok(span)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutSpan<'a> {
    trace_id: String,
    span_id: String,
    operation_name: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    references: Vec<OutRef>,
    flags: u32,
    start_time: String,
    duration: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<OutTag<'a>>,
    process: OutProcess<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutRef {
    trace_id: String,
    span_id: String,
    // Zero values are omitted in protobuf JSON: CHILD_OF is written as nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    ref_type: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutTag<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    v_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v_str: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v_bool: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutProcess<'a> {
    service_name: &'a str,
}

/// Encodes a span as one Jaeger Kafka JSON record (no trailing newline).
pub fn encode(span: &Span, names: &Interner, extra: &[(&str, &str)]) -> Vec<u8> {
    let derived = attrs::jaeger_tags(span, names);
    let mut tags: Vec<OutTag> = derived
        .iter()
        .map(|(k, v)| (*k, v.as_ref()))
        .chain(extra.iter().copied())
        .map(|(key, v)| OutTag { key, v_type: None, v_str: Some(v), v_bool: None })
        .collect();
    if span.error {
        tags.push(OutTag { key: attrs::keys::ERROR, v_type: Some("BOOL"), v_str: None, v_bool: Some(true) });
    }
    let out = OutSpan {
        trace_id: B64.encode(span.trace_id.to_bytes()),
        span_id: B64.encode(span.span_id.to_bytes()),
        operation_name: names.resolve(span.operation),
        references: span
            .refs
            .iter()
            .map(|r| OutRef {
                trace_id: B64.encode(r.trace_id.to_bytes()),
                span_id: B64.encode(r.span_id.to_bytes()),
                ref_type: (r.kind == RefKind::FollowsFrom).then_some("FOLLOWS_FROM"),
            })
            .collect(),
        flags: 1,
        start_time: time::format_rfc3339_us(span.start_us),
        duration: time::format_duration_us(span.duration_us),
        tags,
        process: OutProcess { service_name: names.resolve(span.service) },
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_protobuf_json_defaults() {
        let rec = br#"{"traceId":"AAAAAAAAAAEAAAAAAAAAAg==","spanId":"AAAAAAAAAAM=","operationName":"EXECUTE_SAMPLE",
            "references":[{"traceId":"AAAAAAAAAAEAAAAAAAAAAg==","spanId":"AAAAAAAAAAQ="}],
            "startTime":"2026-11-22T10:00:00.000001Z","duration":"0.0015s",
            "tags":[{"key":"span.kind","vStr":"consumer"},{"key":"error","vType":"BOOL","vBool":true},
                    {"key":"http.status_code","vType":"INT64","vInt64":"500"}],
            "process":{"serviceName":"SandboxAnalyser","tags":[]}}"#;
        let mut names = Interner::new();
        let s = decode(rec, &mut names).expect("valid span");
        assert_eq!(s.trace_id.to_string(), "00000000000000010000000000000002");
        assert_eq!(s.span_id.0, 3);
        assert_eq!(s.refs[0].kind, RefKind::ChildOf);
        assert_eq!(s.refs[0].span_id.0, 4);
        assert_eq!(s.duration_us, 1500);
        assert!(s.error);
        assert_eq!(names.resolve(s.service), "SandboxAnalyser");
    }

    #[test]
    fn ids_in_either_base64_alphabet_with_or_without_padding() {
        let id =
            [0xfb, 0xff, 0xbf, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0xfe, 0xff];
        let std = B64.encode(id);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id);
        for s in [std.as_str(), std.trim_end_matches('='), url.as_str()] {
            assert_eq!(b64_id::<16>(Some(s), Reason::InvalidTraceId, "t").ok(), Some(id), "{s}");
        }
        let span = B64.encode(&id[..8]);
        assert_eq!(
            b64_id::<8>(Some(&span), Reason::InvalidSpanId, "s").ok().map(u64::from_be_bytes),
            Some(0xfbff_bf00_0102_0304)
        );
        for bad in [
            "",
            "AAAA",
            &std[..23],
            "A===AAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAB==",
            "AAAAAAAAAAAAAAAAAAAA!A==",
        ] {
            assert!(b64_id::<16>(Some(bad), Reason::InvalidTraceId, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn snake_case_names_are_accepted() {
        let rec = br#"{"trace_id":"AAAAAAAAAAEAAAAAAAAAAg==","span_id":"AAAAAAAAAAM=","operation_name":"x",
            "start_time":"2026-11-22T10:00:00Z","duration":"1s","process":{"service_name":"svc"}}"#;
        let mut names = Interner::new();
        let s = decode(rec, &mut names).expect("valid span");
        assert_eq!(names.resolve(s.operation), "x");
        assert_eq!(names.resolve(s.service), "svc");
    }

    #[test]
    fn bad_records_name_the_problem() {
        let mut names = Interner::new();
        let e = decode(b"{\"traceId\":", &mut names).expect_err("truncated");
        assert_eq!(e.reason, Reason::MalformedJson);
        let e = decode(br#"{"traceId":"AAE=","spanId":"AAAAAAAAAAM="}"#, &mut names).expect_err("short id");
        assert_eq!(e.reason, Reason::InvalidTraceId);
        assert!(e.detail.contains("2 bytes, not 16"), "{}", e.detail);
        let e = decode(b"\xff\xfe", &mut names).expect_err("not json");
        assert_eq!(e.reason, Reason::MalformedJson);
        let e = decode(b"{\"operationName\":\"\xff\xfe\"}", &mut names).expect_err("not utf-8");
        assert_eq!(e.reason, Reason::InvalidUtf8);
    }
}
