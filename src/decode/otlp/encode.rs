//! OTLP encoding, for `poirot simulate` and the round-trip tests: spans as one
//! `ExportTraceServiceRequest`, protobuf or JSON, one resource per service.

use super::pb;
use crate::decode::attrs::keys;
use crate::model::{Interner, RefKind, Span, SpanRef, Sym};
use prost::Message;
use serde_json::Value;

fn group_by_service(spans: &[Span]) -> Vec<(Sym, Vec<&Span>)> {
    let mut groups: Vec<(Sym, Vec<&Span>)> = Vec::new();
    for s in spans {
        match groups.iter_mut().find(|(svc, _)| *svc == s.service) {
            Some((_, v)) => v.push(s),
            None => groups.push((s.service, vec![s])),
        }
    }
    groups
}

/// The parent is the first `child_of` reference; every other reference is a link.
fn split_refs(s: &Span) -> (Option<&SpanRef>, impl Iterator<Item = &SpanRef>) {
    let parent = s.refs.iter().find(|r| r.kind == RefKind::ChildOf && r.trace_id == s.trace_id);
    let parent_id = parent.map(|p| p as *const SpanRef);
    (parent, s.refs.iter().filter(move |r| Some(*r as *const SpanRef) != parent_id))
}

fn string_attrs(s: &Span, names: &Interner, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    // The kind is OTLP's own field; the rest as Jaeger writes them.
    let mut out: Vec<(String, String)> = crate::decode::attrs::jaeger_tags(s, names)
        .into_iter()
        .filter(|(k, _)| *k != keys::SPAN_KIND)
        .map(|(k, v)| (k.to_owned(), v.into_owned()))
        .collect();
    out.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    out
}

/// Encodes spans as one protobuf `ExportTraceServiceRequest`, one resource per service.
/// A span's first same-trace `child_of` reference becomes its parent; the others links.
pub fn encode_proto(spans: &[Span], names: &Interner, extra: &[(&str, &str)]) -> Vec<u8> {
    let kv = |k: &str, v: &str| pb::KeyValue {
        key: k.to_owned(),
        value: Some(pb::AnyValue { value: Some(pb::any_value::Value::StringValue(v.to_owned())) }),
    };
    let resource_spans = group_by_service(spans)
        .into_iter()
        .map(|(svc, group)| pb::ResourceSpans {
            resource: Some(pb::Resource { attributes: vec![kv(keys::SERVICE_NAME, names.resolve(svc))] }),
            scope_spans: vec![pb::ScopeSpans {
                spans: group
                    .into_iter()
                    .map(|s| {
                        let (parent, links) = split_refs(s);
                        pb::Span {
                            trace_id: s.trace_id.to_bytes().to_vec().into(),
                            span_id: s.span_id.to_bytes().to_vec().into(),
                            trace_state: String::new(),
                            parent_span_id: parent
                                .map(|p| p.span_id.to_bytes().to_vec())
                                .unwrap_or_default()
                                .into(),
                            name: names.resolve(s.operation).to_owned(),
                            kind: s.kind.otlp_number(),
                            start_time_unix_nano: (s.start_us as u64) * 1000,
                            end_time_unix_nano: (s.start_us as u64 + s.duration_us) * 1000,
                            attributes: string_attrs(s, names, extra).iter().map(|(k, v)| kv(k, v)).collect(),
                            links: links
                                .map(|l| pb::span::Link {
                                    trace_id: l.trace_id.to_bytes().to_vec().into(),
                                    span_id: l.span_id.to_bytes().to_vec().into(),
                                    attributes: (l.kind == RefKind::ChildOf)
                                        .then(|| kv(keys::REF_TYPE, "child_of"))
                                        .into_iter()
                                        .collect(),
                                })
                                .collect(),
                            status: s
                                .error
                                .then_some(pb::Status { code: pb::status::StatusCode::Error as i32 }),
                        }
                    })
                    .collect(),
            }],
        })
        .collect();
    pb::ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

/// Encodes spans as one OTLP JSON `ExportTraceServiceRequest` (no trailing newline).
pub fn encode_json(spans: &[Span], names: &Interner, extra: &[(&str, &str)]) -> Vec<u8> {
    use serde_json::json;
    let kv = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
    let resource_spans: Vec<Value> = group_by_service(spans)
        .into_iter()
        .map(|(svc, group)| {
            let spans: Vec<Value> = group
                .into_iter()
                .map(|s| {
                    let (parent, links) = split_refs(s);
                    let mut o = json!({
                        "traceId": s.trace_id.to_string(),
                        "spanId": s.span_id.to_string(),
                        "name": names.resolve(s.operation),
                        "kind": s.kind.otlp_number(),
                        "startTimeUnixNano": ((s.start_us as u64) * 1000).to_string(),
                        "endTimeUnixNano": ((s.start_us as u64 + s.duration_us) * 1000).to_string(),
                        "attributes": string_attrs(s, names, extra).iter().map(|(k, v)| kv(k, v)).collect::<Vec<_>>(),
                        "links": links.map(|l| {
                            let mut link = json!({"traceId": l.trace_id.to_string(), "spanId": l.span_id.to_string()});
                            if let (RefKind::ChildOf, Some(m)) = (l.kind, link.as_object_mut()) {
                                m.insert("attributes".into(), json!([kv(keys::REF_TYPE, "child_of")]));
                            }
                            link
                        }).collect::<Vec<_>>(),
                        "status": if s.error { json!({"code": 2}) } else { json!({}) },
                    });
                    if let (Some(p), Some(m)) = (parent, o.as_object_mut()) {
                        m.insert("parentSpanId".into(), Value::String(p.span_id.to_string()));
                    }
                    o
                })
                .collect();
            json!({
                "resource": {"attributes": [kv(keys::SERVICE_NAME, names.resolve(svc))]},
                "scopeSpans": [{"scope": {"name": "poirot"}, "spans": spans}],
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "resourceSpans": resource_spans })).unwrap_or_default()
}
