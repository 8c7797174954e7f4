//! OTLP JSON (`ExportTraceServiceRequest`): hex ids, enums by number or name,
//! 64-bit integers as strings or numbers, `null` for a field's default; field
//! names in lowerCamelCase or snake_case.
//!
//! Walked once with [`Reader`]. A span of the wrong shape is counted and skipped
//! and the other spans of the record are kept; a record that is not JSON is one
//! error and gives no span.

use super::{build, link_relation, Parts};
use crate::decode::attrs::{keys, service_sym, Attrs};
use crate::decode::json::{EnumValue, Reader, Stop};
use crate::decode::{DecodeError, Reason};
use crate::model::{Interner, RefKind, Span, SpanId, SpanKind, Sym, TraceId};
use std::borrow::Cow;

const FORMAT: &str = "otlp json";

/// Decodes one OTLP JSON `ExportTraceServiceRequest`.
pub fn decode_json(
    record: &[u8],
    names: &mut Interner,
    spans: &mut Vec<Span>,
    errors: &mut Vec<DecodeError>,
) {
    let (spans_before, errors_before) = (spans.len(), errors.len());
    let read = Reader::new(record, FORMAT).map_err(Stop::Syntax).and_then(|mut r| {
        read_request(&mut r, names, spans, errors)?;
        r.end()
    });
    if let Err(e) = read {
        // Not JSON (or not a request): one error for the record, none of its spans.
        spans.truncate(spans_before);
        errors.truncate(errors_before);
        errors.push(e.into());
    }
}

fn read_request(
    r: &mut Reader<'_>,
    names: &mut Interner,
    spans: &mut Vec<Span>,
    errors: &mut Vec<DecodeError>,
) -> Result<(), Stop> {
    if !r.object("the request")? {
        return Ok(());
    }
    while let Some(key) = r.key()? {
        match &*key {
            "resourceSpans" | "resource_spans" => {
                if r.array("resourceSpans")? {
                    while r.item()? {
                        read_resource_spans(r, names, spans, errors)?;
                    }
                }
            }
            _ => r.skip()?,
        }
    }
    Ok(())
}

/// One `ResourceSpans`. Its spans are read once the resource's service is
/// known: when `scopeSpans` comes before `resource`, the reader skips it and
/// comes back to it.
fn read_resource_spans(
    r: &mut Reader<'_>,
    names: &mut Interner,
    spans: &mut Vec<Span>,
    errors: &mut Vec<DecodeError>,
) -> Result<(), Stop> {
    if !r.object("a resourceSpans entry")? {
        return Ok(());
    }
    let mut resource: Option<Resource<'_>> = None;
    let mut later = None;
    let dimension_keys = names.dimensions();
    while let Some(key) = r.key()? {
        match &*key {
            "resource" => {
                let mut name: Option<Cow<'_, str>> = None;
                let mut dimensions = Vec::new();
                if r.object("resource")? {
                    while let Some(key) = r.key()? {
                        match &*key {
                            "attributes" => read_attributes(r, |k, v| {
                                let Value::Str(s) = v else { return };
                                if k == keys::SERVICE_NAME {
                                    name.get_or_insert(s);
                                } else if dimension_keys.iter().any(|d| **d == *k) {
                                    dimensions.push((k.to_owned(), s));
                                }
                            })?,
                            _ => r.skip()?,
                        }
                    }
                }
                let service = service_sym(names, name.as_deref().unwrap_or(""));
                resource = Some(Resource { service, dimensions });
            }
            "scopeSpans" | "scope_spans" => match &resource {
                Some(resource) => read_scope_spans(r, resource, names, spans, errors)?,
                None => {
                    later = Some(r.mark());
                    r.skip()?;
                }
            },
            _ => r.skip()?,
        }
    }
    if let Some(at) = later {
        let end = r.mark();
        let resource =
            resource.unwrap_or_else(|| Resource { service: service_sym(names, ""), dimensions: Vec::new() });
        r.reset(at);
        read_scope_spans(r, &resource, names, spans, errors)?;
        r.reset(end);
    }
    Ok(())
}

/// What a resource gives its spans: the service, and its attributes that are dimensions.
struct Resource<'a> {
    service: Sym,
    dimensions: Vec<(String, Cow<'a, str>)>,
}

fn read_scope_spans(
    r: &mut Reader<'_>,
    resource: &Resource<'_>,
    names: &mut Interner,
    spans: &mut Vec<Span>,
    errors: &mut Vec<DecodeError>,
) -> Result<(), Stop> {
    if !r.array("scopeSpans")? {
        return Ok(());
    }
    while r.item()? {
        if !r.object("a scopeSpans entry")? {
            continue;
        }
        while let Some(key) = r.key()? {
            match &*key {
                "spans" => {
                    if r.array("spans")? {
                        while r.item()? {
                            let at = r.mark();
                            match read_span(r, resource, names) {
                                Ok(s) => spans.push(s),
                                Err(Stop::Invalid(e)) => {
                                    r.reset(at);
                                    r.skip()?;
                                    errors.push(e);
                                }
                                Err(syntax) => return Err(syntax),
                            }
                        }
                    }
                }
                _ => r.skip()?,
            }
        }
    }
    Ok(())
}

/// An attribute value, as far as poirot reads it.
enum Value<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Num(f64),
    Other,
}

/// Calls `f` with each attribute's key and value of a `KeyValue` list.
fn read_attributes<'a>(r: &mut Reader<'a>, mut f: impl FnMut(&str, Value<'a>)) -> Result<(), Stop> {
    if !r.array("attributes")? {
        return Ok(());
    }
    while r.item()? {
        if !r.object("an attribute")? {
            continue;
        }
        let (mut key, mut value) = (Cow::Borrowed(""), Value::Other);
        while let Some(field) = r.key()? {
            match &*field {
                "key" => key = r.str("attribute key")?,
                "value" => {
                    if r.object("attribute value")? {
                        while let Some(kind) = r.key()? {
                            match &*kind {
                                "stringValue" | "string_value" => {
                                    value = r.opt_str("stringValue")?.map_or(Value::Other, Value::Str)
                                }
                                "boolValue" | "bool_value" => value = Value::Bool(r.bool("boolValue")?),
                                "intValue" | "int_value" | "doubleValue" | "double_value" => {
                                    value = r.f64("a number value")?.map_or(Value::Other, Value::Num)
                                }
                                _ => r.skip()?,
                            }
                        }
                    }
                }
                _ => r.skip()?,
            }
        }
        f(&key, value);
    }
    Ok(())
}

fn read_span<'a>(r: &mut Reader<'a>, resource: &Resource<'_>, names: &mut Interner) -> Result<Span, Stop> {
    if !r.object("a span")? {
        return Err(DecodeError::new(Reason::MalformedJson, "otlp json: a span is null").into());
    }
    let (mut trace, mut span, mut parent) = (None, None, None);
    let dimension_keys = names.dimensions();
    let mut p = Parts {
        trace_id: TraceId::default(),
        span_id: SpanId(0),
        parent: None,
        name: Cow::Borrowed(""),
        kind: SpanKind::Unspecified,
        start_ns: 0,
        end_ns: 0,
        attrs: Attrs::with_dimensions(&dimension_keys),
        links: Default::default(),
        status_error: false,
    };
    for (k, v) in &resource.dimensions {
        p.attrs.resource(k, v.clone());
    }
    while let Some(key) = r.key()? {
        match &*key {
            "traceId" | "trace_id" => trace = Some(r.str("traceId")?),
            "spanId" | "span_id" => span = Some(r.str("spanId")?),
            "parentSpanId" | "parent_span_id" => parent = Some(r.str("parentSpanId")?),
            "traceState" | "trace_state" => {
                if let Some(ts) = r.opt_str("traceState")? {
                    p.attrs.tracestate(&ts);
                }
            }
            "name" => p.name = r.str("name")?,
            "kind" => {
                p.kind = match r.enum_value("kind")? {
                    Some(EnumValue::Number(n)) => SpanKind::from_otlp_number(i32::try_from(n).unwrap_or(0)),
                    Some(EnumValue::Name(n)) => SpanKind::from_otlp_name(&n),
                    None => SpanKind::Unspecified,
                }
            }
            "startTimeUnixNano" | "start_time_unix_nano" => p.start_ns = r.u64("startTimeUnixNano")?,
            "endTimeUnixNano" | "end_time_unix_nano" => p.end_ns = r.u64("endTimeUnixNano")?,
            "attributes" => {
                let attrs = &mut p.attrs;
                read_attributes(r, |k, v| match v {
                    Value::Str(s) => attrs.string(k, s),
                    Value::Bool(b) => attrs.boolean(k, b),
                    Value::Num(n) => attrs.number(k, n),
                    Value::Other => {}
                })?
            }
            "links" => read_links(r, &mut p.links)?,
            "status" => {
                if r.object("status")? {
                    while let Some(key) = r.key()? {
                        match &*key {
                            "code" => {
                                p.status_error =
                                    r.enum_value("status code")?.is_some_and(|c| c.is("STATUS_CODE_ERROR", 2))
                            }
                            _ => r.skip()?,
                        }
                    }
                }
            }
            _ => r.skip()?,
        }
    }
    p.trace_id = hex_trace(trace.as_deref().unwrap_or(""), "traceId")?;
    p.span_id = hex_span(span.as_deref().unwrap_or(""), "spanId")?;
    p.parent = match parent.as_deref() {
        None | Some("") => None,
        Some(s) => Some(hex_span(s, "parentSpanId")?),
    };
    Ok(build(resource.service, p, names)?)
}

fn read_links(
    r: &mut Reader<'_>,
    out: &mut smallvec::SmallVec<[(TraceId, SpanId, RefKind); 2]>,
) -> Result<(), Stop> {
    if !r.array("links")? {
        return Ok(());
    }
    while r.item()? {
        if !r.object("a link")? {
            continue;
        }
        let (mut trace, mut span, mut relation) = (TraceId::default(), None, RefKind::FollowsFrom);
        while let Some(key) = r.key()? {
            match &*key {
                "traceId" | "trace_id" => {
                    let t = r.str("link traceId")?;
                    if !t.is_empty() {
                        trace = hex_trace(&t, "link traceId")?;
                    }
                }
                "spanId" | "span_id" => span = Some(hex_span(&r.str("link spanId")?, "link spanId")?),
                "attributes" => read_attributes(r, |k, v| {
                    if let (keys::REF_TYPE, Value::Str(t)) = (k, v) {
                        relation = link_relation(Some(&t));
                    }
                })?,
                _ => r.skip()?,
            }
        }
        let span = match span {
            Some(s) => s,
            None => hex_span("", "link spanId")?,
        };
        out.push((trace, span, relation));
    }
    Ok(())
}

fn hex_trace(s: &str, what: &str) -> Result<TraceId, DecodeError> {
    if s.len() != 32 {
        return Err(DecodeError::new(
            Reason::InvalidTraceId,
            format!("otlp {what} {s:?} is not 32 hex digits"),
        ));
    }
    TraceId::from_hex(s)
        .ok_or_else(|| DecodeError::new(Reason::InvalidTraceId, format!("otlp {what} {s:?} is not hex")))
}

fn hex_span(s: &str, what: &str) -> Result<SpanId, DecodeError> {
    if s.len() != 16 {
        return Err(DecodeError::new(
            Reason::InvalidSpanId,
            format!("otlp {what} {s:?} is not 16 hex digits"),
        ));
    }
    SpanId::from_hex(s)
        .ok_or_else(|| DecodeError::new(Reason::InvalidSpanId, format!("otlp {what} {s:?} is not hex")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(rec: &str) -> (Interner, Vec<Span>, Vec<DecodeError>) {
        let (mut names, mut spans, mut errors) = (Interner::new(), Vec::new(), Vec::new());
        decode_json(rec.as_bytes(), &mut names, &mut spans, &mut errors);
        (names, spans, errors)
    }

    const SPAN: &str = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "name":"GET \/d\u00e9p","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000",
        "events":[{"name":"x","attributes":[{"key":"k","value":{"arrayValue":{"values":[{"intValue":"1"}]}}}]}],
        "attributes":[{"key":"messaging.destination.name","value":{"stringValue":"orders\nq"}},
                      {"key":"error","value":{"boolValue":true}},{"key":"n","value":{"intValue":3}}]}"#;

    #[test]
    fn the_service_is_known_when_scope_spans_come_before_the_resource() {
        let rec = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{SPAN}]}}],
               "resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"b\u00e4ckend"}}}}]}}}}]}}"#
        );
        let (names, spans, errors) = decode(&rec);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(names.resolve(spans[0].service), "bäckend");
        assert_eq!(names.resolve(spans[0].operation), "GET /dép");
        assert_eq!(names.resolve(spans[0].destination), "orders\nq");
        assert!(spans[0].error);
    }

    #[test]
    fn a_span_of_the_wrong_shape_is_counted_and_the_others_kept() {
        let rec = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{SPAN},{{"name":5,"attributes":[{{"key":"a"}}]}},7,null,{SPAN}]}}]}}]}}"#
        );
        let (_, spans, errors) = decode(&rec);
        assert_eq!(spans.len(), 2);
        let details: Vec<&str> = errors.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                "otlp json: name is a number, not a string",
                "otlp json: a span is a number, not an object",
                "otlp json: a span is null"
            ]
        );
    }

    #[test]
    fn a_record_that_is_not_json_is_one_error_and_no_span() {
        for rec in [
            format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{SPAN},{SPAN}"#),
            format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{SPAN}]}}]}}]}} trailing"#),
            format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{SPAN},{{"name":"\q"}}]}}]}}]}}"#),
        ] {
            let (_, spans, errors) = decode(&rec);
            assert!(spans.is_empty(), "{rec}");
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].reason, Reason::MalformedJson);
            assert!(errors[0].detail.contains("at byte"), "{}", errors[0].detail);
        }
        let (_, spans, errors) = decode(r#"{"resourceSpans":5}"#);
        assert!(spans.is_empty());
        assert_eq!(errors[0].detail, "otlp json: resourceSpans is a number, not an array");
    }
}
