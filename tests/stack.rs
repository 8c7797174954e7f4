//! The swarm stack's dashboards and alert rules (`dashboards/`, `docker/prometheus/`)
//! against a real `poirot run` and the harness's Prometheus and Alertmanager, which
//! run the stack's own config adapted to loopback (scripts/services/prometheus/loopback.py).
//!
//! `make test` brings the servers up and runs these with `--ignored`.

mod common;

use common::http;
use common::servers::{env, neo4j_sink, now_us, produce_junk, root, simulate_into_with, urlencode, Proc};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An instant query through Prometheus's HTTP API: the result vector, or why it failed.
fn query(expr: &str) -> Result<Vec<Value>, String> {
    let url = format!("{}/api/v1/query?query={}", env("POIROT_TEST_PROMETHEUS"), urlencode(expr));
    let r = http::get(&url).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// Metric names (`poirot_*`, `traces_*`) an expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let is_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if is_start && (expr[i..].starts_with("poirot_") || expr[i..].starts_with("traces_")) {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |e| i + e);
            names.insert(expr[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// The `expr:` values of a Prometheus rule file (single-line or `|` blocks).
fn rule_exprs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.trim_start().strip_prefix("expr:") {
            let indent = line.len() - line.trim_start().len();
            if rest.trim() == "|" || rest.trim() == ">" {
                let mut block = Vec::new();
                while i + 1 < lines.len()
                    && (lines[i + 1].trim().is_empty()
                        || lines[i + 1].len() - lines[i + 1].trim_start().len() > indent)
                {
                    i += 1;
                    block.push(lines[i].trim());
                }
                out.push(block.join(" "));
            } else {
                out.push(rest.trim().to_owned());
            }
        }
        i += 1;
    }
    out
}

/// Escapes a label value for use inside a PromQL regex string.
fn regex_literal(v: &str) -> String {
    let mut s = String::new();
    for c in v.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            s.push_str("\\\\");
        }
        if c == '"' {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// Resolves a dashboard's template variables to real values, in order, the way
/// Grafana would for `label_values(selector, label)`: the first value Prometheus has.
/// How many values of a dashboard's first variable the test tries.
const VALUES_TRIED: usize = 5;

/// The dashboard's variables: each the first of its values, except the first
/// variable, which takes its `pick`-th value (or its last, when it has fewer).
fn variables(dashboard: &Value, pick: usize) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for v in dashboard["templating"]["list"].as_array().cloned().unwrap_or_default() {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        let q = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or_default().to_owned();
        let value = match q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')) {
            Some(args) => {
                let (selector, label) = args.rsplit_once(',').expect("label_values(selector, label)");
                let selector = substitute(selector.trim(), &vars);
                let url = format!(
                    "{}/api/v1/label/{}/values?match[]={}",
                    env("POIROT_TEST_PROMETHEUS"),
                    label.trim(),
                    urlencode(&selector)
                );
                let body = http::get(&url).expect("label values").body;
                let answer: Value = serde_json::from_str(&body).expect("json");
                let values = answer["data"].as_array().cloned().unwrap_or_default();
                let at = if vars.is_empty() { pick.min(values.len().saturating_sub(1)) } else { 0 };
                let value = values
                    .get(at)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("no values for ${name}: {body}"));
                regex_literal(value)
            }
            None => q, // a textbox: its default
        };
        vars.push((name, value));
    }
    vars
}

fn substitute(expr: &str, vars: &[(String, String)]) -> String {
    let mut e =
        expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "5m");
    for (name, value) in vars {
        e = e.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
    }
    e
}

fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().cloned().unwrap_or_default() {
        out.extend(p["panels"].as_array().cloned().unwrap_or_default()); // collapsed rows
        out.push(p);
    }
    out
}

fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("dashboards"))
        .expect("dashboards/")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read dashboard");
            (
                f.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                serde_json::from_str(&text).expect("json"),
            )
        })
        .collect()
}

/// The active PoirotMessageLoss alerts in Alertmanager.
fn message_loss_alerts() -> Result<Vec<Value>, String> {
    let r = http::get(&format!("{}/api/v2/alerts", env("POIROT_TEST_ALERTMANAGER")))
        .map_err(|e| e.to_string())?;
    let alerts: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
    Ok(alerts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == "PoirotMessageLoss" && a["status"]["state"] == "active")
        .cloned()
        .collect())
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match done() {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// simulate (with lost messages and loops, and a slow Archiver batch consumer that takes
/// every 5 reports 60 s after they were published, through links from its own traces) →
/// Kafka → `poirot run` with both sinks → the harness Prometheus on the stack's scrape job
/// and rules. `/metrics` wants the scrape job's bearer token, as in the stack.
fn start_poirot(dir: &Path, topic: &str) -> Proc {
    let brokers = env("POIROT_TEST_KAFKA");
    let slow = ["--archive-every", "5", "--archive-delay", "60s"];
    simulate_into_with(topic, "300", "jaeger-proto", &dir.join("expected.ndjson"), &slow);
    // Lost messages are reported 3 s after their trace closed (POIROT_MESSAGE_LOSS__MIN_DEADLINE
    // below); the archive queue is known to be slow and has 2 minutes.
    let config = dir.join("poirot.toml");
    std::fs::write(&config, "[message_loss]\ndeadlines = { REPORT_STORED = \"2m\" }\n").expect("config");
    // One record that is no span: decode errors and dead letters have data too.
    produce_junk(topic, b"not a span");
    Proc(
        neo4j_sink(&mut Command::new(env!("CARGO_BIN_EXE_poirot")))
            .args(["--config", config.to_str().expect("utf-8")])
            .args(["run", "--brokers", &brokers, "--topic", topic, "--group", &format!("{topic}-group")])
            .args(["--listen", &env("POIROT_TEST_POIROT_METRICS")])
            .env("POIROT_RUN__METRICS_TOKEN_FILE", env("POIROT_TEST_POIROT_METRICS_TOKEN_FILE"))
            .env("POIROT_ASSEMBLY__INACTIVITY_GAP", "2s")
            .env("POIROT_MESSAGE_LOSS__MIN_DEADLINE", "3s")
            .env("POIROT_ASSEMBLY__OUT_OF_ORDERNESS", "1s")
            .env("POIROT_ASSEMBLY__IDLE_TIMEOUT", "3s")
            .env("POIROT_ELASTICSEARCH__URL", env("POIROT_TEST_OPENSEARCH"))
            .env("POIROT_ELASTICSEARCH__INDEX_PREFIX", topic)
            .env("POIROT_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("poirot run starts"),
    )
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn every_dashboard_query_returns_data_and_the_message_loss_alert_reaches_alertmanager() {
    // The alert found at the end must be this run's: an earlier run's (by hand, on the same
    // servers) stays active until its 5-minute window has passed.
    wait_until("an earlier PoirotMessageLoss alert to resolve", Duration::from_secs(420), || {
        let active = message_loss_alerts()?;
        if active.is_empty() {
            Ok(())
        } else {
            Err(format!("{active:?}"))
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let started_s = now_us() / 1_000_000 - 1;
    let topic = format!("poirot-stack-{}", std::process::id());
    let _poirot = start_poirot(dir.path(), &topic);
    let listen = env("POIROT_TEST_POIROT_METRICS");

    // Prometheus has scraped the finished run for a few intervals (rates need two samples).
    wait_until("Prometheus never saw the 300 traces close", Duration::from_secs(120), || {
        let r = query(r#"sum(poirot_traces_closed_total{job="poirot"})"#)?;
        match r.first().map(value) {
            Some(v) if v >= 300.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    wait_until("no ES or Neo4j write was scraped", Duration::from_secs(60), || {
        let r = query(r#"sum by (sink) (poirot_sink_writes_total{job="poirot"}) > 0"#)?;
        if r.len() == 2 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    std::thread::sleep(Duration::from_secs(6));

    let metrics_url = format!("http://{listen}/metrics");
    assert_eq!(http::get(&metrics_url).expect("metrics").status, 401, "/metrics without the token");
    let token = std::fs::read_to_string(env("POIROT_TEST_POIROT_METRICS_TOKEN_FILE")).expect("token file");
    let bearer = format!("Bearer {}", token.trim());
    let headers = [("Authorization", bearer.as_str())];
    let exposition = http::get_with(&metrics_url, http::Options { ca_pem: None, headers: &headers })
        .expect("metrics")
        .body;
    let exposed: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    // Every PromQL target of every dashboard parses, returns data, and names only exposed metrics.
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, dashboard) in dashboards() {
        // The dashboard as a person uses it: with the first value of its first variable
        // that has data in every panel (a service that only consumes messages, such as
        // the Archiver, has no client/server calls for the service-graph panels to show).
        let mut first_failures = None;
        for pick in 0..VALUES_TRIED {
            let mut found = Vec::new();
            let mut count = 0;
            let vars = variables(&dashboard, pick);
            for panel in panels(&dashboard) {
                let title = panel["title"].as_str().unwrap_or_default().to_owned();
                for target in panel["targets"].as_array().cloned().unwrap_or_default() {
                    let Some(expr) = target["expr"].as_str() else { continue };
                    let expr = substitute(expr, &vars);
                    count += 1;
                    for name in metric_names(&expr) {
                        if !exposed.contains(name.as_str()) {
                            found.push(format!("{file} / {title}: {name} is not in poirot's /metrics"));
                        }
                    }
                    match query(&expr) {
                        Ok(r) if !r.is_empty() => {}
                        Ok(_) => found.push(format!("{file} / {title}: no data for {expr}")),
                        Err(e) => found.push(format!("{file} / {title}: {e} in {expr}")),
                    }
                }
            }
            if pick == 0 {
                checked += count;
            }
            if found.is_empty() {
                first_failures = None;
                break;
            }
            first_failures.get_or_insert(found);
        }
        failures.extend(first_failures.unwrap_or_default());
    }
    assert!(checked >= 40, "only {checked} PromQL targets found");
    assert!(
        failures.is_empty(),
        "{} of {checked} dashboard queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The anomaly table's Elasticsearch query, on the index poirot wrote.
    let (_, anomalies) =
        dashboards().into_iter().find(|(f, _)| f == "anomalies.json").expect("anomalies.json");
    let es_target = panels(&anomalies)
        .into_iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .find(|t| t["datasource"]["type"] == "elasticsearch")
        .expect("an Elasticsearch target");
    let search = env("POIROT_TEST_OPENSEARCH");
    let _ = http::request("POST", &format!("{search}/{topic}-*/_refresh"), "application/json", b"");
    let body = serde_json::json!({
        "size": 500,
        "query": {"query_string": {"query": es_target["query"].as_str().unwrap_or("*")}},
        "sort": [{es_target["timeField"].as_str().unwrap_or("@timestamp"): "desc"}],
    });
    let r = http::request(
        "POST",
        &format!("{search}/{topic}-*/_search"),
        "application/json",
        body.to_string().as_bytes(),
    )
    .expect("search");
    let hits: Value = serde_json::from_str(&r.body).expect("search answer");
    let hits = hits["hits"]["hits"].as_array().cloned().unwrap_or_default();
    let expected =
        std::fs::read_to_string(dir.path().join("expected.ndjson")).expect("expected").lines().count();
    assert_eq!(hits.len(), expected, "{}", r.body);
    for h in &hits {
        let doc = &h["_source"];
        assert!(doc["summary"].as_str().is_some_and(|s| !s.is_empty()), "{doc}");
        let trace = doc["trace_id"].as_str().unwrap_or_default();
        assert!(
            trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()),
            "a Jaeger link needs a trace id: {doc}"
        );
    }

    // Every metric the alert rules use is exposed too.
    let rules = std::fs::read_to_string(root().join("docker/prometheus/alerts.yml")).expect("alerts.yml");
    let exprs = rule_exprs(&rules);
    assert!(exprs.len() >= 7, "{exprs:?}");
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(exposed.contains(name.as_str()), "alerts.yml uses {name}, which poirot does not expose");
        }
        query(expr).unwrap_or_else(|e| panic!("{e} in {expr}"));
    }

    // Trace-id exemplars of this run reached Prometheus's exemplar storage.
    let now = now_us() / 1_000_000;
    let url = format!(
        "{}/api/v1/query_exemplars?query={}&start={}&end={}",
        env("POIROT_TEST_PROMETHEUS"),
        urlencode(r#"traces_span_metrics_duration_milliseconds_bucket{job="poirot"}"#),
        started_s,
        now
    );
    let ex: Value = serde_json::from_str(&http::get(&url).expect("exemplars").body).expect("json");
    let trace_ids: Vec<&str> = ex["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["exemplars"].as_array().into_iter().flatten())
        .filter_map(|e| e["labels"]["trace_id"].as_str())
        .collect();
    assert!(!trace_ids.is_empty(), "no exemplars: {ex}");

    // The message-loss rule fires on poirot's live metrics and Alertmanager has the alert,
    // labelled with the producer service and the destination.
    wait_until("no PoirotMessageLoss alert in Alertmanager", Duration::from_secs(90), || {
        let alerts = message_loss_alerts()?;
        let found = alerts.iter().any(|a| {
            a["labels"]["producer_service"].as_str().is_some_and(|s| !s.is_empty())
                && a["labels"]["destination"].as_str().is_some_and(|s| !s.is_empty())
                && a["annotations"]["summary"].as_str().is_some_and(|s| s.contains("are being lost"))
        });
        if found {
            Ok(())
        } else {
            Err(format!("{alerts:?}"))
        }
    });
    // The slow consumer pages nobody: its messages were consumed within their deadline.
    let alerts = message_loss_alerts().expect("alerts");
    assert!(!alerts.iter().any(|a| a["labels"]["destination"] == "REPORT_STORED"), "{alerts:?}");
    let lost =
        query(r#"sum(poirot_message_loss_total{job="poirot",destination="REPORT_STORED"})"#).expect("query");
    assert_eq!(lost.first().map(value), Some(0.0), "{lost:?}");
    let links =
        query(r#"sum by (result) (poirot_cross_trace_references_total{job="poirot"})"#).expect("query");
    let by = |r: &str| links.iter().find(|s| s["metric"]["result"] == r).map(value);
    assert!(
        by("resolved").is_some_and(|n| n >= 200.0),
        "every archived report is a resolved link: {links:?}"
    );
    assert_eq!(by("unresolved"), Some(0.0), "{links:?}");
}

#[test]
fn metric_names_and_rule_exprs_are_read_as_written() {
    assert_eq!(
        metric_names(
            r#"sum(rate(poirot_records_total[1m])) / on() traces_service_graph_request_total{client="a"}"#
        ),
        BTreeSet::from(["poirot_records_total".to_owned(), "traces_service_graph_request_total".to_owned()])
    );
    let rules = "      - alert: A\n        expr: up == 0\n      - alert: B\n        expr: |\n          sum(x)\n            and\n          y\n        for: 1m\n";
    assert_eq!(rule_exprs(rules), vec!["up == 0".to_owned(), "sum(x) and y".to_owned()]);
}
