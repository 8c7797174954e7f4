//! Jaeger Kafka JSON: one `jaeger.api_v2.Span` per record in the protobuf JSON
//! mapping (Jaeger's `json` Kafka encoding). Ids are base64, zero values are
//! omitted (no `refType` means CHILD_OF, no `vType` means STRING), int64 values are
//! strings, times are RFC 3339 and durations look like `"0.0015s"`.
//! Field names are accepted in lowerCamelCase and in the original snake_case.

use super::attrs::{self, operation_sym, service_sym, Attrs};
use super::time;
use super::{DecodeError, Reason};
use crate::model::{Interner, RefKind, Span, SpanId, SpanRef, TraceId};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan<'a> {
    #[serde(borrow, alias = "trace_id")]
    trace_id: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "span_id")]
    span_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "operation_name")]
    operation_name: Cow<'a, str>,
    #[serde(borrow, default)]
    references: Vec<JsonRef<'a>>,
    #[serde(borrow, alias = "start_time")]
    start_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    duration: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tags: Vec<JsonTag<'a>>,
    #[serde(borrow)]
    process: Option<JsonProcess<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonRef<'a> {
    #[serde(borrow, alias = "trace_id")]
    trace_id: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "span_id")]
    span_id: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "ref_type")]
    ref_type: Option<EnumValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProcess<'a> {
    #[serde(borrow, default, alias = "service_name")]
    service_name: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonTag<'a> {
    #[serde(borrow, default)]
    key: Cow<'a, str>,
    #[serde(borrow, alias = "v_type")]
    v_type: Option<EnumValue<'a>>,
    #[serde(borrow, alias = "v_str")]
    v_str: Option<Cow<'a, str>>,
    #[serde(alias = "v_bool")]
    v_bool: Option<bool>,
}

/// A protobuf JSON enum: its name, or (accepted too) its number. Read by a
/// visitor rather than `#[serde(untagged)]`, which buffers every value first.
enum EnumValue<'a> {
    Name(Cow<'a, str>),
    Number(i64),
}

impl<'de: 'a, 'a> Deserialize<'de> for EnumValue<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = EnumValue<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an enum name or number")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(EnumValue::Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EnumValue::Name(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(EnumValue::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v).map(EnumValue::Number).map_err(E::custom)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl EnumValue<'_> {
    fn is(&self, name: &str, number: i64) -> bool {
        match self {
            EnumValue::Name(n) => n == name,
            EnumValue::Number(v) => *v == number,
        }
    }
}

fn b64_id<const N: usize>(s: Option<&str>, reason: Reason, what: &str) -> Result<[u8; N], DecodeError> {
    let s = s.ok_or_else(|| DecodeError::new(reason, format!("{what} is missing")))?;
    // Decoded on the stack: an id of N bytes is at most 4 * ceil(N / 3) characters.
    let mut buf = [0u8; 32];
    if s.len() > 4 * N.div_ceil(3) {
        return Err(DecodeError::new(
            reason,
            format!("{what} has {} base64 characters, too many for {N} bytes", s.len()),
        ));
    }
    let n = B64
        .decode_slice(s, &mut buf)
        .map_err(|e| DecodeError::new(reason, format!("{what} {s:?} is not base64: {e}")))?;
    buf.get(..n)
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or_else(|| DecodeError::new(reason, format!("{what} has {n} bytes, not {N}")))
}

fn trace_id(s: Option<&str>, what: &str) -> Result<TraceId, DecodeError> {
    let b: [u8; 16] = b64_id(s, Reason::InvalidTraceId, what)?;
    Ok(TraceId::from_bytes(&b).unwrap_or_default())
}

fn span_id(s: Option<&str>, what: &str) -> Result<SpanId, DecodeError> {
    let b: [u8; 8] = b64_id(s, Reason::InvalidSpanId, what)?;
    Ok(SpanId(u64::from_be_bytes(b)))
}

/// Decodes one span record.
pub fn decode(record: &[u8], names: &mut Interner) -> Result<Span, DecodeError> {
    let js: JsonSpan = serde_json::from_slice(record).map_err(|e| {
        let reason =
            if std::str::from_utf8(record).is_err() { Reason::InvalidUtf8 } else { Reason::MalformedJson };
        DecodeError::new(reason, format!("jaeger json span: {e}"))
    })?;
    let trace = trace_id(js.trace_id.as_deref(), "trace id")?;
    if trace.is_zero() {
        return Err(DecodeError::new(Reason::InvalidTraceId, "trace id is zero"));
    }
    let sid = span_id(js.span_id.as_deref(), "span id")?;
    if sid.is_zero() {
        return Err(DecodeError::new(Reason::InvalidSpanId, "span id is zero"));
    }
    let start = js
        .start_time
        .as_deref()
        .ok_or_else(|| DecodeError::new(Reason::InvalidTime, "span has no startTime"))
        .and_then(time::parse_rfc3339_us)?;
    let duration = match js.duration.as_deref() {
        Some(d) => time::parse_duration_us(d)?,
        None => 0,
    };
    let (start_us, duration_us) = time::check(start, duration)?;

    let mut attrs = Attrs::default();
    for t in &js.tags {
        let is_string = t.v_type.as_ref().is_none_or(|v| v.is("STRING", 0));
        if is_string {
            attrs.string(&t.key, t.v_str.as_deref().unwrap_or(""));
        } else if t.v_type.as_ref().is_some_and(|v| v.is("BOOL", 1)) {
            attrs.boolean(&t.key, t.v_bool.unwrap_or(false));
        }
    }
    let service = js.process.as_ref().map(|p| &*p.service_name).unwrap_or("");
    let mut span = Span {
        trace_id: trace,
        span_id: sid,
        start_us,
        duration_us,
        service: service_sym(names, service),
        operation: operation_sym(names, &js.operation_name),
        ..Span::default()
    };
    for r in &js.references {
        let rt = match r.trace_id.as_deref() {
            None | Some("") => trace,
            Some(s) => trace_id(Some(s), "reference trace id")?,
        };
        let rs = span_id(r.span_id.as_deref(), "reference span id")?;
        if rs.is_zero() {
            continue;
        }
        let kind = match &r.ref_type {
            Some(v) if v.is("FOLLOWS_FROM", 1) => RefKind::FollowsFrom,
            _ => RefKind::ChildOf,
        };
        span.refs.push(SpanRef { trace_id: if rt.is_zero() { trace } else { rt }, span_id: rs, kind });
    }
    attrs.apply(&mut span, names);
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
    let mut tags: Vec<OutTag> = attrs::jaeger_tags(span, names)
        .into_iter()
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
        assert!(e.detail.contains("2 bytes"), "{}", e.detail);
        let e = decode(b"\xff\xfe", &mut names).expect_err("not utf-8");
        assert_eq!(e.reason, Reason::InvalidUtf8);
    }
}
