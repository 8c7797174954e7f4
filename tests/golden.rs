//! A small hand-written Jaeger UI download, and the exact files replay must write for it.

use std::process::Command;

/// frontend calls customer (which queries mysql) and driver (which fails against redis);
/// driver publishes to `dispatch` and nobody consumes it. mysql's client span names
/// its database (`db.system`) and no server answers it: a call to a virtual node.
const UI_DOWNLOAD: &str = r#"{"data":[{"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spans":[
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b7","operationName":"HTTP GET /dispatch","references":[],
  "startTime":1767225600000000,"duration":300000,"tags":[{"key":"span.kind","type":"string","value":"server"}],"processID":"p1"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b8","operationName":"HTTP GET /customer",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b7"}],
  "startTime":1767225600001000,"duration":100000,"tags":[{"key":"span.kind","type":"string","value":"server"}],"processID":"p2"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b9","operationName":"SQL SELECT",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b8"}],
  "startTime":1767225600002000,"duration":90000,"tags":[{"key":"span.kind","type":"string","value":"client"},{"key":"db.system","type":"string","value":"mysql"}],"processID":"p3"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902ba","operationName":"/driver.DriverService/FindNearest",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b7"}],
  "startTime":1767225600110000,"duration":150000,"tags":[{"key":"span.kind","type":"string","value":"server"}],"processID":"p4"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902bb","operationName":"GetDriver",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902ba"}],
  "startTime":1767225600111000,"duration":12000,"tags":[{"key":"error","type":"bool","value":true}],"processID":"p5"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902bc","operationName":"publish dispatch",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902ba"}],
  "startTime":1767225600200000,"duration":2000,"tags":[{"key":"span.kind","type":"string","value":"producer"},{"key":"messaging.destination.name","type":"string","value":"dispatch"}],"processID":"p4"}],
 "processes":{"p1":{"serviceName":"frontend","tags":[]},"p2":{"serviceName":"customer","tags":[]},"p3":{"serviceName":"mysql","tags":[]},
              "p4":{"serviceName":"driver","tags":[]},"p5":{"serviceName":"redis-manual","tags":[]}},"warnings":null}],
 "total":0,"limit":0,"offset":0,"errors":null}"#;

const DEPENDENCIES: &str = r#"{"source":"customer","target":"mysql","relation":"child_of","calls":1,"errors":0,"duration_us_sum":90000,"duration_us_min":90000,"duration_us_max":90000,"first_seen_us":1767225600002000,"last_seen_us":1767225600002000}
{"source":"driver","target":"redis-manual","relation":"child_of","calls":1,"errors":1,"duration_us_sum":12000,"duration_us_min":12000,"duration_us_max":12000,"first_seen_us":1767225600111000,"last_seen_us":1767225600111000}
{"source":"frontend","target":"customer","relation":"child_of","calls":1,"errors":0,"duration_us_sum":100000,"duration_us_min":100000,"duration_us_max":100000,"first_seen_us":1767225600001000,"last_seen_us":1767225600001000}
{"source":"frontend","target":"driver","relation":"child_of","calls":1,"errors":0,"duration_us_sum":150000,"duration_us_min":150000,"duration_us_max":150000,"first_seen_us":1767225600110000,"last_seen_us":1767225600110000}
{"source":"mysql","target":"mysql","relation":"child_of","virtual":true,"calls":1,"errors":0,"duration_us_sum":90000,"duration_us_min":90000,"duration_us_max":90000,"first_seen_us":1767225600002000,"last_seen_us":1767225600002000}
"#;

#[test]
fn ui_download_gives_the_exact_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("trace.json");
    std::fs::write(&input, UI_DOWNLOAD).expect("write");
    let out = dir.path().join("out");
    let r = Command::new(env!("CARGO_BIN_EXE_poirot"))
        .args(["replay", "--out", out.to_str().expect("utf-8"), input.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let read = |f: &str| std::fs::read_to_string(out.join(f)).expect("output file");

    assert_eq!(read("dependencies.ndjson"), DEPENDENCIES);

    let ops = read("operation_dependencies.ndjson");
    assert_eq!(ops.lines().count(), 4);
    assert!(ops.contains(r#"{"source":"driver","source_operation":"/driver.DriverService/FindNearest","target":"redis-manual","target_operation":"GetDriver","relation":"child_of","calls":1,"errors":1,"#), "{ops}");

    let anomalies: Vec<serde_json::Value> =
        read("anomalies.ndjson").lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(anomalies.len(), 1);
    let a = &anomalies[0];
    assert_eq!(a["kind"], "message_loss");
    assert_eq!(a["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(a["span_id"], "00f067aa0ba902bc");
    assert_eq!(a["service"], "driver");
    assert_eq!(a["destination"], "dispatch");
    assert_eq!(a["@timestamp"], "2026-01-01T00:00:00.200000Z");
    // Closed 10 s after its last span ended (0.300 s).
    assert_eq!(a["detected_at"], "2026-01-01T00:00:10.300000Z");
    assert_eq!(
        a["summary"],
        "driver published a message to dispatch in publish dispatch (span 00f067aa0ba902bc) that no span of trace 4bf92f3577b34da6a3ce929d0e0e4736 or of another trace consumed."
    );
    // The evidence is the producer's causal path: frontend → driver → the publish span.
    let path: Vec<&str> = a["evidence"]["trace"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["span_id"].as_str())
        .collect();
    assert_eq!(path, ["00f067aa0ba902b7", "00f067aa0ba902ba", "00f067aa0ba902bc"]);
    assert_eq!(a["evidence"]["omitted_spans"], 3);
    assert_eq!(a["status"], "lost");

    let metrics = read("metrics.prom");
    for line in [
        r#"traces_span_metrics_calls_total{service_name="frontend",span_name="HTTP GET /dispatch",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"} 1"#,
        r#"traces_span_metrics_calls_total{service_name="redis-manual",span_name="GetDriver",span_kind="SPAN_KIND_UNSPECIFIED",status_code="STATUS_CODE_ERROR"} 1"#,
        r#"traces_span_metrics_duration_milliseconds_bucket{service_name="mysql",span_name="SQL SELECT",span_kind="SPAN_KIND_CLIENT",status_code="STATUS_CODE_UNSET",le="50"} 0"#,
        r#"traces_span_metrics_duration_milliseconds_bucket{service_name="mysql",span_name="SQL SELECT",span_kind="SPAN_KIND_CLIENT",status_code="STATUS_CODE_UNSET",le="100"} 1"#,
        r#"traces_span_metrics_duration_milliseconds_sum{service_name="mysql",span_name="SQL SELECT",span_kind="SPAN_KIND_CLIENT",status_code="STATUS_CODE_UNSET"} 90"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing: {line}\n{metrics}");
    }
    assert_eq!(metrics.lines().filter(|l| l.starts_with("traces_span_metrics_calls_total{")).count(), 6);
}
