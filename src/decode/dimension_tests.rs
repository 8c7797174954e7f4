//! Every format reads a span's dimensions (`red.dimensions`): from the span's
//! tags, else from its process (Jaeger) or resource (OTLP).

use super::pb::{jaeger, otlp};
use super::{decode, jaeger_json, jaeger_proto, jaeger_ui, Format};
use crate::model::{Interner, DIMENSION_SEPARATOR};
use prost::Message;
use serde_json::{json, Value};

const KEYS: [&str; 3] = ["deployment.environment", "k8s.namespace.name", "tier"];
/// On the span: the environment, and a tier that overrides the resource's.
const SPAN_TAGS: [(&str, &str); 2] = [("deployment.environment", "prod"), ("tier", "web")];
/// On the process or resource.
const RESOURCE_TAGS: [(&str, &str); 2] = [("k8s.namespace.name", "shop"), ("tier", "backend")];

fn records() -> Vec<(Format, Vec<u8>)> {
    let mut names = Interner::new();
    let s = super::sampling_tests::span(&mut names);
    let mut m = jaeger_proto::to_message(&s, &names, &SPAN_TAGS);
    if let Some(p) = m.process.as_mut() {
        p.tags.extend(RESOURCE_TAGS.iter().map(|(k, v)| jaeger::KeyValue {
            key: (*k).into(),
            v_str: (*v).into(),
            ..Default::default()
        }));
    }
    let resource_json: Vec<Value> = RESOURCE_TAGS.iter().map(|(k, v)| json!({"key": k, "vStr": v})).collect();
    let mut j: Value = serde_json::from_slice(&jaeger_json::encode(&s, &names, &SPAN_TAGS)).expect("json");
    j["process"]["tags"] = json!(resource_json);
    let mut ui: Value =
        serde_json::from_slice(&jaeger_ui::encode(std::slice::from_ref(&s), &names)).expect("json");
    for (k, v) in SPAN_TAGS {
        ui["data"][0]["spans"][0]["tags"]
            .as_array_mut()
            .expect("tags")
            .push(json!({"key": k, "type": "string", "value": v}));
    }
    let ui_process: Vec<Value> =
        RESOURCE_TAGS.iter().map(|(k, v)| json!({"key": k, "type": "string", "value": v})).collect();
    for p in ui["data"][0]["processes"].as_object_mut().expect("processes").values_mut() {
        p["tags"] = json!(ui_process);
    }
    let mut req = otlp::ExportTraceServiceRequest::decode(
        &super::otlp::encode_proto(std::slice::from_ref(&s), &names, &SPAN_TAGS)[..],
    )
    .expect("otlp");
    if let Some(r) = req.resource_spans[0].resource.as_mut() {
        r.attributes.extend(RESOURCE_TAGS.iter().map(|(k, v)| otlp::KeyValue {
            key: (*k).into(),
            value: Some(otlp::AnyValue { value: Some(otlp::any_value::Value::StringValue((*v).into())) }),
        }));
    }
    let mut oj: Value =
        serde_json::from_slice(&super::otlp::encode_json(std::slice::from_ref(&s), &names, &SPAN_TAGS))
            .expect("json");
    for (k, v) in RESOURCE_TAGS {
        oj["resourceSpans"][0]["resource"]["attributes"]
            .as_array_mut()
            .expect("resource attributes")
            .push(json!({"key": k, "value": {"stringValue": v}}));
    }
    vec![
        (Format::JaegerProto, m.encode_to_vec()),
        (Format::JaegerJson, serde_json::to_vec(&j).expect("json")),
        (Format::JaegerUi, serde_json::to_vec(&ui).expect("json")),
        (Format::OtlpProto, req.encode_to_vec()),
        (Format::OtlpJson, serde_json::to_vec(&oj).expect("json")),
    ]
}

fn read(keys: &[&str]) -> Vec<(Format, String)> {
    records()
        .into_iter()
        .map(|(format, record)| {
            let mut names = Interner::new();
            names.set_dimensions(&keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>());
            let (mut spans, mut errors) = (Vec::new(), Vec::new());
            decode(format, &record, &mut names, &mut spans, &mut errors);
            assert!(errors.is_empty() && spans.len() == 1, "{format}: {errors:?}");
            (format, names.resolve(spans[0].dimensions).to_owned())
        })
        .collect()
}

#[test]
fn span_attributes_then_resource_attributes_in_every_format() {
    let want = ["prod", "shop", "web"].join(&DIMENSION_SEPARATOR.to_string());
    for (format, got) in read(&KEYS) {
        assert_eq!(got, want, "{format}");
    }
}

#[test]
fn a_missing_dimension_is_empty_and_none_configured_is_nothing() {
    let want = ["", "prod"].join(&DIMENSION_SEPARATOR.to_string());
    for (format, got) in read(&["region", "deployment.environment"]) {
        assert_eq!(got, want, "{format}");
    }
    for (format, got) in read(&[]) {
        assert_eq!(got, "", "{format}");
    }
    // None of them present: the same series as a span of a format without them.
    for (format, got) in read(&["region", "zone"]) {
        assert_eq!(got, "", "{format}");
    }
}
