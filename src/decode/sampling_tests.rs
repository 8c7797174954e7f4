//! Every format reads the sampling a span states, in the value types its
//! producers write: Jaeger's float tag, OTLP's double attribute and trace state.

use super::pb::{jaeger, otlp};
use super::{decode, jaeger_json, jaeger_proto, jaeger_ui, Format};
use crate::model::{Interner, Span, SpanId, SpanKind, TraceId};
use prost::Message;
use serde_json::{json, Value};

/// One server span, for a record of any format.
pub(super) fn span(names: &mut Interner) -> Span {
    Span {
        trace_id: TraceId::new(1, 2),
        span_id: SpanId(3),
        start_us: 1_767_225_600_000_000,
        duration_us: 10,
        service: names.intern("frontend"),
        operation: names.intern("GET /"),
        kind: SpanKind::Server,
        ..Span::default()
    }
}

fn read(format: Format, record: &[u8]) -> f32 {
    let (mut spans, mut errors) = (Vec::new(), Vec::new());
    decode(format, record, &mut Interner::new(), &mut spans, &mut errors);
    assert!(errors.is_empty(), "{format}: {errors:?}");
    assert_eq!(spans.len(), 1, "{format}");
    spans[0].adjusted_count
}

/// A Jaeger span tagged `sampler.type` = `kind`, `sampler.param` = `param` as a float.
fn jaeger_records(kind: &str, param: f64) -> Vec<(Format, Vec<u8>)> {
    let mut names = Interner::new();
    let s = span(&mut names);
    let mut m = jaeger_proto::to_message(&s, &names, &[("sampler.type", kind)]);
    m.tags.push(jaeger::KeyValue {
        key: "sampler.param".into(),
        v_type: jaeger::ValueType::Float64 as i32,
        v_float64: param,
        ..Default::default()
    });
    let mut j: Value =
        serde_json::from_slice(&jaeger_json::encode(&s, &names, &[("sampler.type", kind)])).expect("json");
    j["tags"]
        .as_array_mut()
        .expect("tags")
        .push(json!({"key": "sampler.param", "vType": "FLOAT64", "vFloat64": param}));
    let mut ui: Value =
        serde_json::from_slice(&jaeger_ui::encode(std::slice::from_ref(&s), &names)).expect("json");
    let tags = ui["data"][0]["spans"][0]["tags"].as_array_mut().expect("tags");
    tags.push(json!({"key": "sampler.type", "type": "string", "value": kind}));
    tags.push(json!({"key": "sampler.param", "type": "float64", "value": param}));
    vec![
        (Format::JaegerProto, m.encode_to_vec()),
        (Format::JaegerJson, serde_json::to_vec(&j).expect("json")),
        (Format::JaegerUi, serde_json::to_vec(&ui).expect("json")),
    ]
}

/// An OTLP span with trace state `tracestate`, and the Jaeger-SDK tags as typed attributes.
fn otlp_records(tracestate: &str, sampler: Option<(&str, f64)>) -> Vec<(Format, Vec<u8>)> {
    let mut names = Interner::new();
    let s = span(&mut names);
    let mut req = otlp::ExportTraceServiceRequest::decode(
        &super::otlp::encode_proto(std::slice::from_ref(&s), &names, &[])[..],
    )
    .expect("otlp");
    let pb = &mut req.resource_spans[0].scope_spans[0].spans[0];
    pb.trace_state = tracestate.to_owned();
    let mut j: Value =
        serde_json::from_slice(&super::otlp::encode_json(std::slice::from_ref(&s), &names, &[]))
            .expect("json");
    let js = &mut j["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    js["traceState"] = json!(tracestate);
    if let Some((kind, param)) = sampler {
        let attr = |k: &str, v: otlp::any_value::Value| otlp::KeyValue {
            key: k.into(),
            value: Some(otlp::AnyValue { value: Some(v) }),
        };
        pb.attributes.push(attr("sampler.type", otlp::any_value::Value::StringValue(kind.into())));
        pb.attributes.push(attr("sampler.param", otlp::any_value::Value::DoubleValue(param)));
        let attrs = js["attributes"].as_array_mut().expect("attributes");
        attrs.push(json!({"key": "sampler.type", "value": {"stringValue": kind}}));
        attrs.push(json!({"key": "sampler.param", "value": {"doubleValue": param}}));
    }
    vec![(Format::OtlpProto, req.encode_to_vec()), (Format::OtlpJson, serde_json::to_vec(&j).expect("json"))]
}

#[test]
fn every_format_reads_a_probabilistic_sampler() {
    for (kind, param, want) in [
        ("probabilistic", 0.001, 1000.0),
        ("probabilistic", 1.0, 1.0),
        ("const", 1.0, 1.0),
        ("ratelimiting", 2.0, 0.0),
    ] {
        for (format, record) in
            jaeger_records(kind, param).into_iter().chain(otlp_records("", Some((kind, param))))
        {
            assert_eq!(read(format, &record), want, "{format} {kind} {param}");
        }
    }
}

#[test]
fn otlp_reads_the_w3c_threshold_and_it_wins_over_sampler_tags() {
    for (format, record) in otlp_records("ot=th:c", None) {
        assert_eq!(read(format, &record), 4.0, "{format}");
    }
    for (format, record) in otlp_records("vendor=a,ot=th:8;rv:0123456789abcd", Some(("probabilistic", 0.001)))
    {
        assert_eq!(read(format, &record), 2.0, "{format}");
    }
    // A missing or broken threshold states nothing.
    for ts in ["", "ot=rv:0123456789abcd", "ot=th:zz"] {
        for (format, record) in otlp_records(ts, None) {
            assert_eq!(read(format, &record), 0.0, "{format} {ts:?}");
        }
    }
}

#[test]
fn jaeger_keeps_the_trace_state_as_a_tag() {
    let mut names = Interner::new();
    let s = span(&mut names);
    let record = jaeger_proto::encode(&s, &names, &[("w3c.tracestate", "ot=th:fc")]);
    assert_eq!(read(Format::JaegerProto, &record), 64.0);
}

#[test]
fn a_sampler_param_written_as_a_string_or_an_integer_is_read() {
    let mut names = Interner::new();
    let s = span(&mut names);
    let record =
        jaeger_json::encode(&s, &names, &[("sampler.type", "probabilistic"), ("sampler.param", "0.25")]);
    assert_eq!(read(Format::JaegerJson, &record), 4.0);
    let mut m = jaeger_proto::to_message(&s, &names, &[("sampler.type", "const")]);
    m.tags.push(jaeger::KeyValue {
        key: "sampler.param".into(),
        v_type: jaeger::ValueType::Int64 as i32,
        v_int64: 1,
        ..Default::default()
    });
    assert_eq!(read(Format::JaegerProto, &m.encode_to_vec()), 1.0);
}

#[test]
fn what_poirot_derived_survives_its_repartition_record() {
    // Read with settings that pick the peer from db.name and a dimension; written
    // to the repartition topic; read back by a reader whose settings would find
    // neither (the derived values travel as they are).
    let mut names = Interner::new();
    names.set_peer_attributes(vec![crate::model::PeerAttribute::DbName]);
    names.set_dimensions(&["deployment.environment".to_owned()]);
    let mut s = span(&mut names);
    s.kind = SpanKind::Client;
    let tags = [
        ("db.name", "orders"),
        ("db.statement", "SELECT 1"),
        ("deployment.environment", "prod"),
        ("w3c.tracestate", "ot=th:c"),
    ];
    let (mut read, mut errors) = (Vec::new(), Vec::new());
    decode(Format::JaegerProto, &jaeger_proto::encode(&s, &names, &tags), &mut names, &mut read, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let first = &read[0];
    assert_eq!((names.resolve(first.peer), names.resolve(first.dimensions)), ("orders", "prod"));
    assert_eq!(first.adjusted_count, 4.0);
    assert_ne!(first.statement, 0);

    let mut record = Vec::new();
    jaeger_proto::write_span(&mut super::pb::Writer { out: &mut record }, first, &names);
    let mut other = Interner::new();
    other.set_peer_attributes(vec![]);
    other.set_dimensions(&["deployment.environment".to_owned()]);
    let again = jaeger_proto::decode(&record, &mut other).expect("a repartition record");
    assert_eq!((other.resolve(again.peer), other.resolve(again.dimensions)), ("orders", "prod"));
    assert_eq!((again.statement, again.adjusted_count), (first.statement, first.adjusted_count));
}
