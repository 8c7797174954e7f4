//! Jaeger query / UI JSON: what "Download JSON" in the Jaeger UI and the query
//! API's `/api/traces` return: `{"data":[{traceID, spans, processes}]}` with hex
//! ids, microsecond times and `processID` pointing into `processes`.
//!
//! One record is a whole document; a bad span inside it is reported and skipped.

use super::attrs::{self, operation_sym, service_sym, Attrs};
use super::time;
use super::{DecodeError, Reason};
use crate::model::{Interner, RefKind, Span, SpanId, SpanRef, TraceId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    data: Vec<Trace>,
}

#[derive(Deserialize)]
struct Trace {
    #[serde(default)]
    spans: Vec<Value>,
    #[serde(default)]
    processes: HashMap<String, Process>,
}

#[derive(Deserialize, Serialize)]
struct Process {
    #[serde(rename = "serviceName", default)]
    service_name: String,
    /// Read for dimensions only.
    #[serde(default)]
    tags: Vec<UiTag>,
}

#[derive(Deserialize)]
struct UiSpan {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(rename = "operationName", default)]
    operation_name: String,
    #[serde(default)]
    references: Vec<UiRef>,
    #[serde(rename = "startTime")]
    start_time: i64,
    #[serde(default)]
    duration: i64,
    #[serde(default)]
    tags: Vec<UiTag>,
    #[serde(rename = "processID", default)]
    process_id: String,
    process: Option<Process>,
}

#[derive(Deserialize)]
struct UiRef {
    #[serde(rename = "refType", default)]
    ref_type: String,
    #[serde(rename = "traceID", default)]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Deserialize, Serialize)]
struct UiTag {
    key: String,
    #[serde(rename = "type", default)]
    ty: String,
    #[serde(default)]
    value: Value,
}

fn hex_trace(s: &str, what: &str) -> Result<TraceId, DecodeError> {
    TraceId::from_hex(s).filter(|t| !t.is_zero()).ok_or_else(|| {
        DecodeError::new(Reason::InvalidTraceId, format!("{what} {s:?} is not 1-32 hex digits, non-zero"))
    })
}

fn hex_span(s: &str, what: &str) -> Result<SpanId, DecodeError> {
    SpanId::from_hex(s).filter(|t| !t.is_zero()).ok_or_else(|| {
        DecodeError::new(Reason::InvalidSpanId, format!("{what} {s:?} is not 1-16 hex digits, non-zero"))
    })
}

fn decode_span(
    v: Value,
    processes: &HashMap<String, Process>,
    names: &mut Interner,
) -> Result<Span, DecodeError> {
    let us: UiSpan = serde_json::from_value(v)
        .map_err(|e| DecodeError::new(Reason::MalformedJson, format!("jaeger ui span: {e}")))?;
    let trace_id = hex_trace(&us.trace_id, "traceID")?;
    let span_id = hex_span(&us.span_id, "spanID")?;
    let (start_us, duration_us) = time::check(us.start_time, us.duration)?;
    let process = us.process.as_ref().or_else(|| processes.get(&us.process_id));
    let service = process.map(|p| p.service_name.as_str()).unwrap_or("");
    let dimensions = names.dimensions();
    let mut attrs = Attrs::with_dimensions(&dimensions);
    if attrs.has_dimensions() {
        for t in process.map(|p| p.tags.as_slice()).unwrap_or_default() {
            if let Value::String(s) = &t.value {
                attrs.resource(&t.key, s);
            }
        }
    }
    for t in &us.tags {
        match &t.value {
            Value::String(s) => attrs.string(&t.key, s),
            Value::Bool(b) => attrs.boolean(&t.key, *b),
            Value::Number(n) => attrs.number(&t.key, n.as_f64().unwrap_or(f64::NAN)),
            _ => {}
        }
    }
    let mut span = Span {
        trace_id,
        span_id,
        start_us,
        duration_us,
        service: service_sym(names, service),
        operation: operation_sym(names, &us.operation_name),
        ..Span::default()
    };
    for r in &us.references {
        let rt = if r.trace_id.is_empty() { trace_id } else { hex_trace(&r.trace_id, "reference traceID")? };
        let rs = match SpanId::from_hex(&r.span_id) {
            Some(s) if !s.is_zero() => s,
            Some(_) => continue,
            None => {
                return Err(DecodeError::new(
                    Reason::InvalidSpanId,
                    format!("reference spanID {:?} is not hex", r.span_id),
                ))
            }
        };
        let kind = if r.ref_type == "FOLLOWS_FROM" { RefKind::FollowsFrom } else { RefKind::ChildOf };
        span.refs.push(SpanRef { trace_id: rt, span_id: rs, kind });
    }
    attrs.apply(&mut span, names);
    Ok(span)
}

/// Decodes one UI document, appending every readable span.
pub fn decode(record: &[u8], names: &mut Interner, spans: &mut Vec<Span>, errors: &mut Vec<DecodeError>) {
    let doc: Doc = match serde_json::from_slice(record) {
        Ok(d) => d,
        Err(e) => {
            let reason = if std::str::from_utf8(record).is_err() {
                Reason::InvalidUtf8
            } else {
                Reason::MalformedJson
            };
            errors.push(DecodeError::new(reason, format!("jaeger ui document: {e}")));
            return;
        }
    };
    for trace in doc.data {
        for v in trace.spans {
            match decode_span(v, &trace.processes, names) {
                Ok(s) => spans.push(s),
                Err(e) => errors.push(e),
            }
        }
    }
}

/// Encodes spans as one UI document, one entry of `data` per trace in order of
/// first appearance, with one process per service.
pub fn encode(spans: &[Span], names: &Interner) -> Vec<u8> {
    let mut order: Vec<TraceId> = Vec::new();
    let mut by_trace: HashMap<TraceId, Vec<&Span>> = HashMap::new();
    for s in spans {
        by_trace
            .entry(s.trace_id)
            .or_insert_with(|| {
                order.push(s.trace_id);
                Vec::new()
            })
            .push(s);
    }
    let data: Vec<Value> = order
        .iter()
        .map(|t| {
            let mut processes = serde_json::Map::new();
            let mut pids: HashMap<&str, String> = HashMap::new();
            let trace_spans: Vec<Value> = by_trace
                .get(t)
                .map(|v| v.as_slice())
                .unwrap_or(&[])
                .iter()
                .map(|s| {
                    let service = names.resolve(s.service);
                    let next = pids.len() + 1;
                    let pid = pids.entry(service).or_insert_with(|| format!("p{next}")).clone();
                    processes.insert(pid.clone(), serde_json::json!({"serviceName": service, "tags": []}));
                    let mut tags: Vec<Value> = attrs::jaeger_tags(s, names)
                        .into_iter()
                        .map(|(k, v)| serde_json::json!({"key": k, "type": "string", "value": v}))
                        .collect();
                    if s.error {
                        tags.push(serde_json::json!({"key": "error", "type": "bool", "value": true}));
                    }
                    serde_json::json!({
                        "traceID": s.trace_id.to_string(),
                        "spanID": s.span_id.to_string(),
                        "flags": 1,
                        "operationName": names.resolve(s.operation),
                        "references": s.refs.iter().map(|r| serde_json::json!({
                            "refType": if r.kind == RefKind::FollowsFrom { "FOLLOWS_FROM" } else { "CHILD_OF" },
                            "traceID": r.trace_id.to_string(),
                            "spanID": r.span_id.to_string(),
                        })).collect::<Vec<_>>(),
                        "startTime": s.start_us,
                        "duration": s.duration_us,
                        "tags": tags,
                        "logs": [],
                        "processID": pid,
                        "warnings": null,
                    })
                })
                .collect();
            serde_json::json!({"traceID": t.to_string(), "spans": trace_spans, "processes": processes, "warnings": null})
        })
        .collect();
    let doc = serde_json::json!({"data": data, "total": 0, "limit": 0, "offset": 0, "errors": null});
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_ui_download() {
        let doc = br#"{"data":[{"traceID":"1f","spans":[
            {"traceID":"1f","spanID":"00000000000000a1","operationName":"HTTP GET /dispatch","references":[],
             "startTime":1700000000000000,"duration":2000,"tags":[{"key":"span.kind","type":"string","value":"server"}],
             "processID":"p1"},
            {"traceID":"1f","spanID":"a2","operationName":"SQL SELECT","references":[{"refType":"CHILD_OF","traceID":"1f","spanID":"00000000000000a1"}],
             "startTime":1700000000000100,"duration":900,"tags":[{"key":"error","type":"bool","value":true}],"processID":"p2"},
            {"traceID":"zz","spanID":"a3","startTime":1700000000000100,"duration":1,"processID":"p2"}],
            "processes":{"p1":{"serviceName":"frontend","tags":[]},"p2":{"serviceName":"mysql","tags":[]}}}]}"#;
        let (mut names, mut spans, mut errors) = (Interner::new(), Vec::new(), Vec::new());
        decode(doc, &mut names, &mut spans, &mut errors);
        assert_eq!(spans.len(), 2);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].reason, Reason::InvalidTraceId);
        assert_eq!(names.resolve(spans[1].service), "mysql");
        assert!(spans[1].error);
        assert_eq!(spans[1].refs[0].span_id, SpanId(0xa1));
        assert_eq!(spans[0].trace_id.to_string(), "0000000000000000000000000000001f");
    }
}
