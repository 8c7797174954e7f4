//! Virtual nodes: a client span no server span answers called a peer that sends
//! no spans; it is an edge to a node named from its peer attributes.

mod common;

use common::{pipeline, pipeline_with, run_spans, TraceBuilder};
use poirot::config::Config;
use poirot::decode::{self, Format};
use poirot::model::{Interner, RefKind, Span, SpanId, SpanKind, TraceId};
use poirot::runtime::Pipeline;
use poirot::sink::exposition::ExpoFormat;

/// api (server) → api (client) → an orders span of kind `answer` (none: nothing
/// answers); the client names peer `peer` ("": none).
fn run(answer: Option<SpanKind>, peer: &str) -> Pipeline {
    let mut p = pipeline();
    let mut b = TraceBuilder::new(p.names_mut(), 1);
    b.span(1, "api", SpanKind::Server, &[]);
    b.span(2, "api", SpanKind::Client, &[(1, RefKind::ChildOf)]).error = true;
    if let Some(kind) = answer {
        b.span(3, "orders", kind, &[(2, RefKind::ChildOf)]);
    }
    let peer = if peer.is_empty() { Default::default() } else { b.names.intern(peer) };
    b.spans[1].peer = peer;
    let spans = std::mem::take(&mut b.spans);
    run_spans(&mut p, spans);
    p
}

fn metrics(p: &Pipeline) -> String {
    poirot::sink::prometheus::render(&p.outputs(), ExpoFormat::Text)
}

#[test]
fn an_unanswered_client_call_is_an_edge_to_a_virtual_node() {
    let p = run(None, "postgres");
    let o = p.outputs();
    let rows = o.edges.service_rows(o.names);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].source.as_str(), rows[0].target.as_str(), rows[0].virtual_node),
        ("api", "postgres", true)
    );
    assert_eq!((rows[0].stats.calls, rows[0].stats.errors), (1, 1));
    let json = serde_json::to_string(&rows[0]).expect("json");
    assert!(json.contains(r#""virtual":true"#), "{json}");
    let text = metrics(&p);
    assert!(
        text.contains(r#"traces_service_graph_request_total{client="api",server="postgres",connection_type="virtual_node"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"traces_service_graph_request_failed_total{client="api",server="postgres",connection_type="virtual_node"} 1"#));
    assert!(text.contains(r#"traces_service_graph_request_client_seconds_count{client="api",server="postgres",connection_type="virtual_node"} 1"#));
    assert!(
        !text.contains(r#"traces_service_graph_request_server_seconds_count{client="api",server="postgres""#),
        "no server side was timed"
    );
}

#[test]
fn an_answered_call_or_a_client_naming_nobody_is_no_virtual_node() {
    for p in [run(Some(SpanKind::Server), "orders-db"), run(None, "")] {
        let o = p.outputs();
        assert!(o.edges.virtuals.is_empty(), "{:?}", o.edges.virtuals);
        assert!(!metrics(&p).contains("virtual_node"));
    }
}

#[test]
fn a_virtual_node_never_merges_with_a_traced_service_of_its_name() {
    // `orders` is traced (answers one call) and also named as an untraced peer.
    let mut p = pipeline();
    let mut b = TraceBuilder::new(p.names_mut(), 1);
    b.span(1, "api", SpanKind::Server, &[]);
    b.span(2, "api", SpanKind::Client, &[(1, RefKind::ChildOf)]);
    b.span(3, "orders", SpanKind::Server, &[(2, RefKind::ChildOf)]);
    b.span(4, "api", SpanKind::Client, &[(1, RefKind::ChildOf)]);
    b.spans[3].peer = b.names.intern("orders");
    let spans = std::mem::take(&mut b.spans);
    run_spans(&mut p, spans);
    let o = p.outputs();
    let rows: Vec<(String, String, bool)> =
        o.edges.service_rows(o.names).into_iter().map(|r| (r.source, r.target, r.virtual_node)).collect();
    assert_eq!(rows, [("api".into(), "orders".into(), false), ("api".into(), "orders".into(), true)]);
}

/// One client span with `tags`, decoded in every format by a pipeline configured with `config`.
fn peer_read(config: &Config, tags: &[(&str, &str)]) -> Vec<(Format, String)> {
    let mut names = Interner::new();
    let s = Span {
        trace_id: TraceId::new(1, 2),
        span_id: SpanId(3),
        start_us: common::T0,
        duration_us: 10,
        service: names.intern("api"),
        operation: names.intern("query"),
        kind: SpanKind::Client,
        ..Span::default()
    };
    let mut ui: serde_json::Value =
        serde_json::from_slice(&decode::jaeger_ui::encode(std::slice::from_ref(&s), &names)).expect("json");
    for (k, v) in tags {
        ui["data"][0]["spans"][0]["tags"]
            .as_array_mut()
            .expect("tags")
            .push(serde_json::json!({"key": k, "type": "string", "value": v}));
    }
    let records = [
        (Format::JaegerProto, decode::jaeger_proto::encode(&s, &names, tags)),
        (Format::JaegerJson, decode::jaeger_json::encode(&s, &names, tags)),
        (Format::JaegerUi, serde_json::to_vec(&ui).expect("json")),
        (Format::OtlpProto, decode::otlp::encode_proto(std::slice::from_ref(&s), &names, tags)),
        (Format::OtlpJson, decode::otlp::encode_json(std::slice::from_ref(&s), &names, tags)),
    ];
    let mut p = pipeline_with(config);
    records
        .into_iter()
        .map(|(format, record)| {
            let (mut spans, mut errors) = (Vec::new(), Vec::new());
            decode::decode(format, &record, p.names_mut(), &mut spans, &mut errors);
            assert!(errors.is_empty() && spans.len() == 1, "{format}: {errors:?}");
            (format, p.names().resolve(spans[0].peer).to_owned())
        })
        .collect()
}

#[test]
fn the_peer_is_the_first_configured_attribute_present_in_every_format() {
    let tags =
        [("server.address", "db-7.internal"), ("db.namespace", "orders"), ("db.system.name", "postgresql")];
    let all = |config: &Config, want: &str| {
        for (format, got) in peer_read(config, &tags) {
            assert_eq!(got, want, "{format}");
        }
    };
    // Default order: peer.service, db.name, db.system, server.address.
    all(&Config::default(), "orders");
    let mut c = Config::default();
    c.service_graph.virtual_node_peer_attributes = vec!["server.address".into(), "db.name".into()];
    all(&c, "db-7.internal");
    c.service_graph.virtual_node_peer_attributes = vec!["peer.service".into()];
    all(&c, "");
    c.service_graph.virtual_node_peer_attributes = vec![];
    all(&c, "");
}

#[test]
fn an_unknown_or_repeated_peer_attribute_is_refused_by_name() {
    for (list, says) in [
        (vec!["peer.service", "http.url"], "\"http.url\" is not one of"),
        (vec!["db.name", "db.namespace"], "\"db.namespace\" names an attribute already listed"),
    ] {
        let toml = format!(
            "[service_graph]\nvirtual_node_peer_attributes = [{}]\n",
            list.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("poirot.toml");
        std::fs::write(&path, toml).expect("write");
        let e = Config::load(Some(&path), []).expect_err("refused").to_string();
        assert!(e.contains("service_graph.virtual_node_peer_attributes") && e.contains(says), "{e}");
    }
}

#[test]
fn a_child_of_another_service_answers_a_call_whatever_its_kind() {
    // OpenTracing often leaves span.kind out: the callee's span still answers.
    for kind in [SpanKind::Unspecified, SpanKind::Internal, SpanKind::Consumer] {
        assert!(run(Some(kind), "orders").outputs().edges.virtuals.is_empty(), "{kind:?}");
    }
}

#[test]
fn only_client_spans_name_a_peer() {
    // A server span's server.address names its own side (often from a Host header).
    let mut names = Interner::new();
    let s = Span {
        trace_id: TraceId::new(1, 2),
        span_id: SpanId(3),
        start_us: common::T0,
        duration_us: 10,
        service: names.intern("api"),
        operation: names.intern("GET /"),
        kind: SpanKind::Server,
        ..Span::default()
    };
    let record = decode::jaeger_proto::encode(&s, &names, &[("server.address", "evil.example")]);
    let mut p = pipeline();
    let (mut spans, mut errors) = (Vec::new(), Vec::new());
    decode::decode(Format::JaegerProto, &record, p.names_mut(), &mut spans, &mut errors);
    assert_eq!(spans[0].peer, Default::default());
    assert_eq!(p.names().get("evil.example"), None, "not even interned");
}
