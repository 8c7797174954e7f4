//! `poirot demo` as a person uses it: the page, the graph, /metrics, anomalies
//! appearing with SIMULATE_S3_BEHAVIOUR=ERROR, and a clean stop on Ctrl-C.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// GET over plain HTTP/1.1; returns (status line, body).
fn get(port: u16, path: &str) -> Option<(String, String)> {
    get_accepting(port, path, "*/*")
}

fn get_accepting(port: u16, path: &str, accept: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_shows_red_graph_and_message_loss_then_stops_on_ctrl_c() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_poirot"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--duration", "60"])
        .env("SIMULATE_S3_BEHAVIOUR", "ERROR")
        .env("PUBLISHER_RATE", "20")
        .env("POIROT_ASSEMBLY__INACTIVITY_GAP", "3s")
        .env("POIROT_ASSEMBLY__OUT_OF_ORDERNESS", "200ms")
        .env("POIROT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("demo starts");
    let mut demo = Demo(child);

    let deadline = Instant::now() + Duration::from_secs(40);
    let snapshot = loop {
        assert!(Instant::now() < deadline, "no message_loss anomaly on the page within 40 s");
        if let Some((status, body)) = get(port, "/api/snapshot") {
            assert!(status.contains("200"), "{status}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("snapshot is JSON");
            if v["anomaly_counts"]["message_loss"].as_u64().unwrap_or(0) >= 3
                && !v["edges"].as_array().is_none_or(Vec::is_empty)
            {
                break v;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let latest = &snapshot["anomalies"][0];
    assert_eq!(latest["kind"], "message_loss");
    assert_eq!(latest["destination"], "SANDBOX_RESULT");
    assert!(latest["summary"].as_str().is_some_and(|s| s.contains("SANDBOX_RESULT")));
    let red = snapshot["red"].as_array().expect("red rows");
    let s3 = red.iter().find(|r| r["operation"] == "S3_GET").expect("an S3_GET row");
    assert_eq!(s3["errors"], s3["calls"], "every S3 download fails in ERROR mode");

    let (_, page) = get(port, "/").expect("page");
    assert!(page.contains("<title>poirot</title>") && page.contains("/api/snapshot"));
    assert_eq!(snapshot["mode"], "demo");
    let (_, svg) = get(port, "/graph.svg").expect("graph");
    assert!(svg.starts_with("<svg"), "{svg}");
    for service in ["startWorkflow", "SandboxAnalyser", "StaticalAnalyser", "Classificator"] {
        assert!(
            svg.contains(&format!(r#"class="node service" data-name="{service}""#)),
            "{service} missing: {svg}"
        );
    }
    // Destinations are nodes; the one nobody consumes in ERROR mode is drawn as such.
    assert!(svg.contains(r#"class="node destination" data-name="SAMPLE_RECEIVED""#), "{svg}");
    assert!(svg.contains(r#"class="node destination unconsumed" data-name="SANDBOX_RESULT""#), "{svg}");
    // The list carries no evidence; the document with its evidence is one request away.
    let id = latest["id"].as_str().expect("an id");
    assert!(latest.get("evidence").is_none(), "{latest}");
    let group = &snapshot["anomaly_groups"][0];
    assert_eq!(
        (group["kind"].as_str(), group["destination"].as_str()),
        (Some("message_loss"), Some("SANDBOX_RESULT"))
    );
    assert!(group["count"].as_u64().unwrap_or(0) >= 3, "{group}");
    let encoded: String = id
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let (status, doc) = get(port, &format!("/api/anomaly?id={encoded}")).expect("anomaly");
    assert!(status.contains("200"), "{status} {doc}");
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(doc["span_id"], latest["span_id"]);
    assert!(doc["evidence"]["trace"].as_array().is_some_and(|t| !t.is_empty()), "{doc}");
    let (_, metrics) = get(port, "/metrics").expect("metrics");
    assert!(metrics
        .contains("traces_span_metrics_calls_total{service_name=\"SandboxAnalyser\",span_name=\"S3_GET\""));
    assert!(metrics.contains("traces_span_metrics_duration_milliseconds_bucket{"));
    let sum = |text: &str, prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let loss = sum(&metrics, "poirot_anomalies_total{kind=\"message_loss\",service=\"");
    assert!(loss >= 3, "{metrics}");
    // Lost messages by producer service and destination add up to the same.
    assert!(metrics.contains("poirot_message_loss_total{producer_service=\""), "{metrics}");
    assert!(sum(&metrics, "poirot_message_loss_total{") >= loss);
    assert!(
        metrics.contains("traces_service_graph_request_total{client=\"startWorkflow\""),
        "service graph: {metrics}"
    );
    assert!(!metrics.contains("# EOF"), "the text format has no terminator");
    // Critical paths: the self times of the closed traces add up to their durations.
    let sum_f = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let on_path = sum_f("poirot_critical_path_seconds_total{");
    let durations = sum_f("poirot_critical_path_trace_seconds_total ");
    assert!(
        durations > 0.0 && (on_path - durations).abs() < 1e-3,
        "{on_path} s on paths, {durations} s of traces"
    );
    assert!(metrics.contains(
        "poirot_critical_path_seconds_total{service_name=\"startWorkflow\",span_name=\"startWorkflow\"}"
    ));
    // Time in the queue, per producer, destination and consumer, under Tempo's name.
    assert!(
        metrics.contains(
            "traces_service_graph_request_messaging_system_seconds_count{client=\"startWorkflow\",server=\"SandboxAnalyser\",connection_type=\"messaging_system\",destination=\"SAMPLE_RECEIVED\"}"
        ),
        "{metrics}"
    );

    // Prometheus asks for OpenMetrics: the latency histograms carry trace-id exemplars.
    let (_, om) = get_accepting(port, "/metrics", "application/openmetrics-text;version=1.0.0,*/*;q=0.1")
        .expect("openmetrics");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE traces_span_metrics_calls counter"), "{om}");
    let exemplar = om
        .lines()
        .find(|l| {
            l.starts_with("traces_span_metrics_duration_milliseconds_bucket{")
                && l.contains(" # {trace_id=\"")
        })
        .expect("an exemplar");
    let trace_id = exemplar.split("trace_id=\"").nth(1).and_then(|r| r.split('"').next()).expect("trace id");
    assert_eq!(trace_id.len(), 32, "{exemplar}");
    assert!(om.contains("poirot_build_info{version=\""), "{om}");

    // The container HEALTHCHECK: healthy while serving, unhealthy once stopped.
    let healthcheck = || {
        Command::new(env!("CARGO_BIN_EXE_poirot"))
            .args(["healthcheck", "--addr", &format!("127.0.0.1:{port}")])
            .output()
            .expect("healthcheck runs")
    };
    assert!(healthcheck().status.success(), "{:?}", healthcheck());

    // Ctrl-C: a clean stop with exit status 0.
    let pid = demo.0.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
    assert!(sent.success());
    let stop_by = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = demo.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < stop_by, "demo did not stop within 10 s of Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let after = healthcheck();
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("not listening"), "{after:?}");
}
