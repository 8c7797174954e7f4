//! Sampling-adjusted counts: a span of a trace sampled with probability p counts
//! 1/p in RED and the service graph, so rates are those of the real traffic.

mod common;

use common::{pipeline_with, run_spans, TraceBuilder};
use poirot::config::Config;
use poirot::model::{RefKind, SpanKind};
use poirot::runtime::Pipeline;

/// frontend (server) → frontend (client) → backend (server), the root stating
/// `root_count`, every span stating `each_count` (0: nothing).
fn run(config: &Config, root_count: f32, each_count: f32) -> Pipeline {
    let mut p = pipeline_with(config);
    let mut b = TraceBuilder::new(p.names_mut(), 1);
    b.span(1, "frontend", SpanKind::Server, &[]);
    b.span(2, "frontend", SpanKind::Client, &[(1, RefKind::ChildOf)]);
    b.span(3, "backend", SpanKind::Server, &[(2, RefKind::ChildOf)]).error = true;
    for s in &mut b.spans {
        s.adjusted_count = each_count;
    }
    if root_count > 0.0 {
        b.spans[0].adjusted_count = root_count;
    }
    let spans = std::mem::take(&mut b.spans);
    run_spans(&mut p, spans);
    p
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[test]
fn a_jaeger_root_at_one_in_a_thousand_makes_each_span_count_a_thousand() {
    let p = run(&Config::default(), 1000.0, 0.0);
    let o = p.outputs();
    assert_eq!(o.red.total_calls(), 3000.0);
    assert_eq!(o.stats.spans, 3, "spans seen stay spans seen");
    assert_eq!(o.stats.sampled_spans, 3);
    let text = poirot::sink::prometheus::render(&o, poirot::sink::exposition::ExpoFormat::Text);
    let backend = r#"traces_span_metrics_calls_total{service_name="backend",span_name="backend-op",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR"}"#;
    assert!(line(&text, backend).ends_with(" 1000"), "{}", line(&text, backend));
    let count = r#"traces_span_metrics_duration_milliseconds_count{service_name="backend""#;
    assert!(line(&text, count).ends_with(" 1000"), "{}", line(&text, count));
    // 0.5 ms each, a thousand times.
    let sum = r#"traces_span_metrics_duration_milliseconds_sum{service_name="backend""#;
    assert!(line(&text, sum).ends_with(" 500"), "{}", line(&text, sum));
    let requests = r#"traces_service_graph_request_total{client="frontend",server="backend""#;
    assert!(line(&text, requests).ends_with(" 1000"), "{}", line(&text, requests));
    let failed = r#"traces_service_graph_request_failed_total{client="frontend",server="backend""#;
    assert!(line(&text, failed).ends_with(" 1000"), "{}", line(&text, failed));
    assert!(line(&text, "poirot_sampled_spans_total").ends_with(" 3"), "{text}");
}

#[test]
fn every_span_stating_a_w3c_threshold_counts_the_same() {
    let p = run(&Config::default(), 0.0, 4.0);
    assert_eq!(p.outputs().red.total_calls(), 12.0);
}

#[test]
fn the_root_decides_for_its_trace() {
    // An SDK of a child service states its own rate; the trace was kept at the root's.
    let p = run(&Config::default(), 10.0, 2.0);
    assert_eq!(p.outputs().red.total_calls(), 30.0);
}

#[test]
fn p_one_and_no_statement_count_once() {
    assert_eq!(run(&Config::default(), 1.0, 0.0).outputs().red.total_calls(), 3.0);
    let p = run(&Config::default(), 0.0, 0.0);
    assert_eq!(p.outputs().red.total_calls(), 3.0);
    assert_eq!(p.outputs().stats.sampled_spans, 0);
}

#[test]
fn adjusting_can_be_turned_off() {
    let mut c = Config::default();
    c.red.adjust_for_sampling = false;
    let p = run(&c, 1000.0, 0.0);
    assert_eq!(p.outputs().red.total_calls(), 3.0);
    assert_eq!(p.outputs().stats.sampled_spans, 0);
}

#[test]
fn a_third_counts_three_and_a_third() {
    let p = run(&Config::default(), 1.0 / 0.3, 0.0);
    let calls = p.outputs().red.total_calls();
    assert!((calls - 10.0).abs() < 1e-5, "{calls}");
}

#[test]
fn anomalies_and_dependency_edges_stay_counts_of_what_was_seen() {
    let p = run(&Config::default(), 1000.0, 0.0);
    let o = p.outputs();
    let calls: u64 = o.edges.services.values().map(|s| s.calls).sum();
    assert_eq!(calls, 1, "one observed call frontend → backend");
}
