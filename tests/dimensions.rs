//! `red.dimensions`: span or resource attributes as extra RED labels, under the
//! series cap.

mod common;

use common::{pipeline_with, run_spans, TraceBuilder};
use poirot::config::Config;
use poirot::model::{SpanKind, DIMENSION_SEPARATOR};
use poirot::sink::exposition::ExpoFormat;

fn config(dimensions: &[&str]) -> Config {
    let mut c = Config::default();
    c.red.dimensions = dimensions.iter().map(|d| (*d).to_owned()).collect();
    c
}

/// One server span per entry, each with its dimension values.
fn red_text(c: &Config, values: &[&[&str]]) -> String {
    let mut p = pipeline_with(c);
    for (i, v) in values.iter().enumerate() {
        let mut b = TraceBuilder::new(p.names_mut(), i as u64 + 1);
        let joined = v.join(&DIMENSION_SEPARATOR.to_string());
        let sym = if joined.is_empty() { Default::default() } else { b.names.intern(&joined) };
        b.span(1, "shop", SpanKind::Server, &[]).dimensions = sym;
        let spans = std::mem::take(&mut b.spans);
        run_spans(&mut p, spans);
    }
    poirot::sink::prometheus::render(&p.outputs(), ExpoFormat::Text)
}

#[test]
fn dimensions_are_labels_of_every_red_series() {
    let c = config(&["deployment.environment", "k8s.namespace.name"]);
    let text = red_text(&c, &[&["prod", "eu"], &["prod", "eu"], &["staging", "eu"], &[]]);
    let calls = |env: &str, ns: &str| {
        let series = format!(
            r#"traces_span_metrics_calls_total{{service_name="shop",span_name="shop-op",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET",deployment_environment="{env}",k8s_namespace_name="{ns}"}} "#
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .to_owned()
    };
    assert_eq!(calls("prod", "eu"), "2");
    assert_eq!(calls("staging", "eu"), "1");
    // A span without them is in the series where they are empty.
    assert_eq!(calls("", ""), "1");
    assert!(text.contains(r#"deployment_environment="prod",k8s_namespace_name="eu",le="+Inf"} 2"#), "{text}");
}

#[test]
fn without_dimensions_the_labels_are_red_s_own() {
    let text = red_text(&Config::default(), &[&[]]);
    assert!(text.contains(
        r#"traces_span_metrics_calls_total{service_name="shop",span_name="shop-op",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"} 1"#
    ), "{text}");
}

#[test]
fn dimension_values_count_under_the_series_cap() {
    let mut c = config(&["user.id"]);
    c.metrics.max_series = 3;
    let ids: Vec<String> = (0..50).map(|i| format!("user-{i}")).collect();
    let values: Vec<[&str; 1]> = ids.iter().map(|i| [i.as_str()]).collect();
    let refs: Vec<&[&str]> = values.iter().map(|v| &v[..]).collect();
    let text = red_text(&c, &refs);
    let series = text.lines().filter(|l| l.starts_with("traces_span_metrics_calls_total{")).count();
    assert_eq!(series, 4, "three series and the overflow one:\n{text}");
    assert!(text.contains(r#"service_name="__overflow__""#));
    assert!(text.lines().any(|l| l.starts_with("poirot_red_overflow_spans_total 47")), "{text}");
}

#[test]
fn bad_dimensions_are_refused_by_name() {
    for (list, says) in [
        (vec!["a", "b", "c", "d", "e"], "at most 4"),
        (vec!["service.name", "service_name"], "\"service.name\" would be the label \"service_name\""),
        (vec!["k8s.pod", "k8s_pod"], "already taken"),
        (vec![""], "empty key"),
        (vec!["le"], "Prometheus reserves"),
        (vec!["quantile"], "Prometheus reserves"),
        (vec!["__name__"], "Prometheus reserves"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("poirot.toml");
        let toml = format!(
            "[red]\ndimensions = [{}]\n",
            list.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
        );
        std::fs::write(&path, toml).expect("write");
        let e = poirot::config::Config::load(Some(&path), []).expect_err("refused").to_string();
        assert!(e.contains("red.dimensions") && e.contains(says), "{e}");
    }
}
