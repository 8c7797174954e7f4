//! The anomaly documents' names in the index: a stable `_id` per anomaly and a
//! daily index by its event time, plus the index template that types their
//! fields. Pure functions, shared by the Elasticsearch sink, the fuzz targets and
//! the tests that compare what a run wrote with a replay.

use crate::analysis::Anomaly;
use crate::model::text::fnv1a64;
use serde_json::{json, Value};

/// Elasticsearch refuses an `_id` longer than this many bytes.
pub const MAX_ID_BYTES: usize = 512;

/// The document id: stable for the same anomaly, whoever finds it and how often.
/// A loop of long service names would make it longer than Elasticsearch allows
/// ([`MAX_ID_BYTES`]): then the loop is written as a hash of itself. Kind, trace
/// and span alone already tell documents apart (a span re-enters one loop),
/// except for repeated calls: one caller can repeat several calls, told apart
/// by the first span of each.
pub fn document_id(a: &Anomaly) -> String {
    let mut id = format!("{}:{}:{}", a.kind, a.trace_id, a.span_id);
    if let Some(first) = &a.details.first_call_span_id {
        id.push(':');
        id.push_str(first);
    }
    if let Some(cycle) = &a.details.cycle {
        let joined = cycle.join(">");
        id.push(':');
        if id.len() + joined.len() <= MAX_ID_BYTES {
            id.push_str(&joined);
        } else {
            id.push_str(&format!("fnv1a64-{:016x}", fnv1a64(joined.as_bytes())));
        }
    }
    id
}

/// The daily index of an anomaly, by its event time.
pub fn index_name(prefix: &str, a: &Anomaly) -> String {
    let day = a.timestamp.get(..10).unwrap_or("1970-01-01").replace('-', ".");
    format!("{prefix}-{day}")
}

/// The index template of the documents under `prefix`.
pub fn template(prefix: &str) -> Value {
    let keyword = json!({"type": "keyword"});
    let long = json!({"type": "long"});
    json!({
        "index_patterns": [format!("{prefix}-*")],
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "kind": keyword, "trace_id": keyword, "span_id": keyword,
                    "service": keyword, "operation": keyword,
                    "@timestamp": {"type": "date"}, "detected_at": {"type": "date"},
                    "summary": {"type": "text"},
                    "destination": keyword, "missing_span_ids": keyword,
                    "chain": keyword, "cycle": keyword, "reentries": {"type": "integer"},
                    "span_count": {"type": "long"}, "span_limit": {"type": "long"},
                    "callee_service": keyword, "callee_operation": keyword,
                    "first_call_span_id": keyword, "calls": long,
                    "calls_duration_us": long, "batched_duration_us": long,
                    "evidence": {"type": "object", "enabled": false},
                    "truncated": {"properties": {
                        "evidence_spans": long, "missing_span_ids": long, "chain": long,
                        "cycle": long, "references": long, "summary_bytes": long
                    }}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::anomaly::{Details, Evidence};
    use crate::analysis::AnomalyKind;

    #[test]
    fn repeated_calls_of_one_caller_are_two_documents() {
        let mut a = anomaly(AnomalyKind::RepeatedCalls, None);
        let mut b = a.clone();
        a.details.first_call_span_id = Some("000000000000000a".into());
        b.details.first_call_span_id = Some("0000000000000064".into());
        assert_ne!(document_id(&a), document_id(&b));
    }

    fn anomaly(kind: AnomalyKind, cycle: Option<Vec<String>>) -> Anomaly {
        Anomaly {
            kind,
            trace_id: "0000000000000000000000000000abcd".into(),
            span_id: "00000000000000ef".into(),
            service: "A".into(),
            operation: "op".into(),
            timestamp: "2026-01-31T23:59:59.000001Z".into(),
            detected_at: "2026-02-01T00:00:09Z".into(),
            summary: "s".into(),
            details: Details { cycle, ..Details::default() },
            evidence: Evidence::default(),
            truncated: Default::default(),
        }
    }

    #[test]
    fn ids_and_indices_are_stable() {
        let a = anomaly(AnomalyKind::MessageLoss, None);
        assert_eq!(document_id(&a), "message_loss:0000000000000000000000000000abcd:00000000000000ef");
        assert_eq!(index_name("poirot-anomalies", &a), "poirot-anomalies-2026.01.31");
        let r = anomaly(AnomalyKind::RecursiveChain, Some(vec!["A".into(), "B".into()]));
        assert!(document_id(&r).ends_with(":A>B"));
    }

    #[test]
    fn a_loop_of_long_names_gives_an_id_elasticsearch_accepts() {
        let long = |c: char| c.to_string().repeat(250);
        let r = anomaly(AnomalyKind::RecursiveChain, Some(vec![long('a'), long('b')]));
        let id = document_id(&r);
        assert!(id.len() <= MAX_ID_BYTES, "{} bytes", id.len());
        assert_eq!(id, document_id(&r.clone()), "stable");
        let other = anomaly(AnomalyKind::RecursiveChain, Some(vec![long('a'), long('c')]));
        assert_ne!(document_id(&other), id);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c, "the published FNV-1a test vector");
    }

    #[test]
    fn the_template_maps_the_truncated_counts() {
        let t = template("p");
        let props = &t["template"]["mappings"]["properties"]["truncated"]["properties"];
        let all = crate::analysis::anomaly::Truncated {
            evidence_spans: 1,
            missing_span_ids: 1,
            chain: 1,
            cycle: 1,
            references: 1,
            summary_bytes: 1,
        };
        let fields = serde_json::to_value(all).expect("serializes");
        let fields = fields.as_object().expect("an object");
        assert_eq!(fields.len(), props.as_object().map_or(0, |p| p.len()), "every count, and nothing else");
        for field in fields.keys() {
            assert_eq!(props[field]["type"], "long", "{field}");
        }
    }
}
