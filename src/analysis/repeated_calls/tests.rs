use super::*;
use crate::analysis::anomaly::DocLimits;
use crate::decode::{self, Format};
use crate::model::{Interner, NameKind, SpanId, SpanRef, TraceId};

const TRACE: TraceId = TraceId { high: 0, low: 0x0b1 };

/// Builds one trace: spans named `service:operation`, times in ms.
struct Trace {
    names: Interner,
    spans: Vec<Span>,
}

impl Trace {
    fn new() -> Self {
        Trace { names: Interner::new(), spans: Vec::new() }
    }

    /// Span `id` of `name` ("service:operation"), a `kind` child of `parent` (0: a root).
    fn add(
        &mut self,
        id: u64,
        parent: u64,
        name: &str,
        kind: SpanKind,
        start_ms: f64,
        end_ms: f64,
    ) -> &mut Span {
        let (service, operation) = name.split_once(':').expect("service:operation");
        let mut s = Span {
            trace_id: TRACE,
            span_id: SpanId(id),
            start_us: (start_ms * 1000.0) as i64,
            duration_us: ((end_ms - start_ms) * 1000.0) as u64,
            service: self.names.intern_name(NameKind::Service, service),
            operation: self.names.intern_name(NameKind::Operation, operation),
            kind,
            ..Span::default()
        };
        if parent != 0 {
            s.refs.push(SpanRef { trace_id: TRACE, span_id: SpanId(parent), kind: RefKind::ChildOf });
        }
        self.spans.push(s);
        self.spans.last_mut().expect("just pushed")
    }

    fn found(&self, min_calls: u32) -> Vec<Anomaly> {
        let dag = TraceDag::build(&self.spans);
        let t = TraceCtx {
            spans: &self.spans,
            names: &self.names,
            detected_at_us: 0,
            limits: DocLimits::default(),
        };
        let mut out = Vec::new();
        repeated_calls(&t, &dag, min_calls, &mut out);
        out
    }
}

/// HotROD's driver: one server span, a lookup, then `n` store reads one at a time.
fn driver(n: u64) -> Trace {
    let mut t = Trace::new();
    t.add(1, 0, "driver:FindNearest", SpanKind::Server, 0.0, 400.0);
    t.add(2, 1, "redis:FindDriverIDs", SpanKind::Client, 1.0, 20.0);
    for k in 0..n {
        let start = 20.0 + 30.0 * k as f64;
        t.add(10 + k, 1, "redis:GetDriver", SpanKind::Client, start, start + 10.0 + k as f64);
    }
    t
}

#[test]
fn sequential_store_reads_are_one_repeated_call() {
    let t = driver(10);
    let found = t.found(5);
    assert_eq!(found.len(), 1, "{found:#?}");
    let a = &found[0];
    assert_eq!(a.kind, AnomalyKind::RepeatedCalls);
    assert_eq!(
        (a.service.as_str(), a.operation.as_str(), a.span_id.as_str()),
        ("driver", "FindNearest", "0000000000000001")
    );
    let d = &a.details;
    assert_eq!(
        (d.callee_service.as_deref(), d.callee_operation.as_deref()),
        (Some("redis"), Some("GetDriver"))
    );
    assert_eq!(d.calls, Some(10));
    // 10 + 11 + ... + 19 ms, and the longest of them.
    assert_eq!(d.calls_duration_us, Some(145_000));
    assert_eq!(d.batched_duration_us, Some(19_000));
    assert_eq!(d.first_call_span_id.as_deref(), Some("000000000000000a"));
    assert_eq!(a.evidence.span_ids.len(), 11, "the caller and its ten calls");
    assert!(a.summary.contains("redis:GetDriver 10 times one after another: 145.0 ms"), "{}", a.summary);
    assert!(a.summary.contains("about 19.0 ms"), "{}", a.summary);
}

#[test]
fn the_threshold_counts_calls() {
    assert!(driver(4).found(5).is_empty());
    assert_eq!(driver(5).found(5).len(), 1);
    assert!(driver(5).found(6).is_empty());
}

#[test]
fn a_root_alone_or_a_few_children_is_nothing() {
    let mut t = Trace::new();
    t.add(1, 0, "a:root", SpanKind::Server, 0.0, 1.0);
    assert!(t.found(5).is_empty());
    assert!(driver(0).found(5).is_empty());
}

#[test]
fn a_fan_out_is_not_repeated_calls() {
    let mut t = Trace::new();
    t.add(1, 0, "frontend:dispatch", SpanKind::Server, 0.0, 100.0);
    for k in 0..10 {
        t.add(10 + k, 1, "route:FindRoute", SpanKind::Client, 1.0 + k as f64, 50.0 + k as f64);
    }
    assert!(t.found(5).is_empty());
}

#[test]
fn a_worker_pool_is_not_repeated_calls_even_where_one_worker_runs_alone() {
    // Three workers take ten calls; worker 0's calls are short, so for a while
    // each call starts as the one before it ends, but the others overlap them.
    let mut t = Trace::new();
    t.add(1, 0, "frontend:dispatch", SpanKind::Server, 0.0, 500.0);
    let mut id = 10;
    for (worker, length, calls) in [(0, 10.0, 6), (1, 95.0, 2), (2, 97.0, 2)] {
        let mut at = worker as f64 * 0.1;
        for _ in 0..calls {
            t.add(id, 1, "route:FindRoute", SpanKind::Client, at, at + length);
            at += length;
            id += 1;
        }
    }
    assert!(t.found(5).is_empty());
}

#[test]
fn one_overlap_anywhere_makes_the_group_concurrent() {
    let mut t = driver(8);
    t.spans[5].start_us -= 25_000; // starts while the call before it still runs
    assert!(t.found(5).is_empty());
}

#[test]
fn a_microsecond_of_rounding_is_not_an_overlap() {
    let mut t = driver(6);
    for s in &mut t.spans[2..] {
        s.duration_us = 30_001; // each call ends 1 µs after the next one starts
    }
    assert_eq!(t.found(5).len(), 1);
    for s in &mut t.spans[2..] {
        s.duration_us = 30_002;
    }
    assert!(t.found(5).is_empty());
}

#[test]
fn zero_duration_calls_do_not_overlap() {
    // A clock too coarse to time the calls still shows them in order.
    let mut t = Trace::new();
    t.add(1, 0, "cache:warm", SpanKind::Server, 0.0, 1.0);
    for k in 0..5 {
        t.add(10 + k, 1, "memcached:get", SpanKind::Client, 0.5, 0.5);
    }
    let found = t.found(5);
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].details.calls_duration_us, found[0].details.batched_duration_us),
        (Some(0), Some(0))
    );
}

#[test]
fn calls_with_different_statements_are_different_calls() {
    let mut t = driver(0);
    for k in 0..8u64 {
        let start = 20.0 + 10.0 * k as f64;
        let s = t.add(10 + k, 1, "mysql:SELECT", SpanKind::Client, start, start + 5.0);
        s.statement = decode::Attrs::statement_hash(if k % 2 == 0 { "SELECT a" } else { "SELECT b" });
    }
    assert!(t.found(5).is_empty(), "four of each");
    for s in &mut t.spans[2..] {
        s.statement = decode::Attrs::statement_hash("SELECT * FROM drivers WHERE id = ?");
    }
    let found = t.found(5);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].summary.contains("mysql:SELECT with the same statement 8 times"),
        "{}",
        found[0].summary
    );
}

#[test]
fn a_traced_server_side_names_the_callee() {
    // Client spans all named "HTTP GET" reach two different routes.
    let mut t = Trace::new();
    t.add(1, 0, "frontend:/dispatch", SpanKind::Server, 0.0, 1000.0);
    for k in 0..10u64 {
        let start = 10.0 * k as f64;
        t.add(10 + k, 1, "frontend:HTTP GET", SpanKind::Client, start, start + 9.0);
        let route = if k < 6 { "customer:/customer" } else { "route:/route" };
        t.add(100 + k, 10 + k, route, SpanKind::Server, start + 1.0, start + 8.0);
    }
    let found = t.found(5);
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = &found[0].details;
    assert_eq!(
        (d.callee_service.as_deref(), d.callee_operation.as_deref()),
        (Some("customer"), Some("/customer"))
    );
    assert_eq!(d.calls, Some(6));
    // The client spans are the calls: their 9 ms each, not the server's 7.
    assert_eq!(d.calls_duration_us, Some(54_000));
}

#[test]
fn internal_work_and_published_messages_are_not_calls() {
    for kind in [SpanKind::Internal, SpanKind::Producer, SpanKind::Unspecified] {
        let mut t = Trace::new();
        t.add(1, 0, "worker:batch", SpanKind::Server, 0.0, 100.0);
        for k in 0..8u64 {
            let start = 10.0 * k as f64;
            t.add(10 + k, 1, "worker:process item", kind, start, start + 5.0);
        }
        assert!(t.found(5).is_empty(), "{kind:?}");
    }
}

#[test]
fn messages_that_follow_from_a_span_are_not_calls() {
    let mut t = driver(6);
    for s in &mut t.spans[2..] {
        s.refs[0].kind = RefKind::FollowsFrom;
    }
    assert!(t.found(5).is_empty());
}

#[test]
fn two_repeated_calls_of_one_caller_are_two_documents() {
    let mut t = driver(6);
    for k in 0..5u64 {
        let start = 300.0 + 10.0 * k as f64;
        t.add(100 + k, 1, "redis:SetDriver", SpanKind::Client, start, start + 5.0);
    }
    let found = t.found(5);
    assert_eq!(found.len(), 2);
    // The document id adds the first call (sink::documents tests that it differs).
    assert_ne!(found[0].details.first_call_span_id, found[1].details.first_call_span_id);
    assert_eq!(found[0].span_id, found[1].span_id, "both name the caller");
}

#[test]
fn clock_skew_between_services_does_not_matter() {
    // The calls run on the caller's clock; the caller's own span is 1 s off.
    let mut t = driver(6);
    t.spans[0].start_us += 1_000_000;
    assert_eq!(t.found(5).len(), 1);
}

#[test]
fn every_format_reads_the_statement_alike() {
    let mut names = Interner::new();
    let span = Span {
        trace_id: TRACE,
        span_id: SpanId(7),
        start_us: 1_700_000_000_000_000,
        duration_us: 5,
        service: names.intern("customer"),
        operation: names.intern("SQL SELECT"),
        kind: SpanKind::Client,
        ..Span::default()
    };
    let statement = "SELECT * FROM customer WHERE customer_id=?";
    let mut ui: serde_json::Value =
        serde_json::from_slice(&decode::jaeger_ui::encode(std::slice::from_ref(&span), &names))
            .expect("UI JSON");
    ui["data"][0]["spans"][0]["tags"]
        .as_array_mut()
        .expect("tags")
        .push(serde_json::json!({"key": "db.statement", "type": "string", "value": statement}));
    let records = [
        (Format::JaegerProto, decode::jaeger_proto::encode(&span, &names, &[("db.statement", statement)])),
        (Format::JaegerJson, decode::jaeger_json::encode(&span, &names, &[("db.statement", statement)])),
        (Format::JaegerUi, serde_json::to_vec(&ui).expect("JSON")),
        (
            Format::OtlpProto,
            decode::otlp::encode_proto(std::slice::from_ref(&span), &names, &[("db.query.text", statement)]),
        ),
        (
            Format::OtlpJson,
            decode::otlp::encode_json(std::slice::from_ref(&span), &names, &[("db.statement", statement)]),
        ),
    ];
    for (format, record) in records {
        let (mut spans, mut errors) = (Vec::new(), Vec::new());
        decode::decode(format, &record, &mut Interner::new(), &mut spans, &mut errors);
        assert!(errors.is_empty(), "{format}: {errors:?}");
        assert_eq!(spans.len(), 1, "{format}");
        assert_eq!(spans[0].statement, decode::Attrs::statement_hash(statement), "{format}");
    }
}
