//! `poirot simulate` and `poirot replay` as a person runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn poirot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poirot"))
        .args(args)
        .env("POIROT_LOG", "warn")
        .output()
        .expect("poirot runs")
}

fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "poirot failed: {}\n{}", String::from_utf8_lossy(&out.stderr), text);
    text
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn lines(p: &Path) -> Vec<serde_json::Value> {
    read(p).lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// Simulates `traces` workflows into `format`, returning the file and the expected anomalies.
fn simulate(dir: &Path, format: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let file = dir.join(format!("input.{format}"));
    let expected = dir.join(format!("expected.{format}.ndjson"));
    let mut args = vec!["simulate", "--traces", "150", "--format", format];
    args.extend_from_slice(&[
        "--out",
        file.to_str().expect("utf-8"),
        "--expected",
        expected.to_str().expect("utf-8"),
    ]);
    args.extend_from_slice(extra);
    ok(poirot(&args));
    (file, expected)
}

fn replay(dir: &Path, name: &str, inputs: &[&Path], extra: &[&str]) -> (PathBuf, String) {
    let out = dir.join(name);
    let mut args = vec!["replay", "--out", out.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    args.extend(inputs.iter().map(|p| p.to_str().expect("utf-8")));
    let summary = ok(poirot(&args));
    (out, summary)
}

const FILES: [&str; 4] =
    ["anomalies.ndjson", "dependencies.ndjson", "operation_dependencies.ndjson", "metrics.prom"];

#[test]
fn every_format_of_the_same_traces_gives_identical_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    // With an Archiver batch consumer linking every 10 reports of 10 other traces
    // 90 s later: message flows across traces, joined after their traces closed.
    let knobs = [
        "--loss-rate",
        "0.2",
        "--loop-rate",
        "0.2",
        "--seed",
        "11",
        "--archive-every",
        "10",
        "--archive-delay",
        "90s",
    ];
    let mut outputs = Vec::new();
    for format in ["jaeger-ui", "jaeger-json", "jaeger-proto", "otlp-proto", "otlp-json"] {
        let (input, _) = simulate(dir.path(), format, &knobs);
        let (out, summary) = replay(dir.path(), &format!("out-{format}"), &[&input], &[]);
        assert!(summary.contains("bad records: none"), "{format}: {summary}");
        outputs.push((format, FILES.map(|f| read(&out.join(f)))));
    }
    let (first, reference) = &outputs[0];
    assert!(!reference[0].is_empty() && !reference[1].is_empty());
    let archived: Vec<serde_json::Value> = reference[1]
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["source"] == "Reporter" && e["target"] == "Archiver")
        .collect();
    assert_eq!(archived.len(), 1, "{}", reference[1]);
    assert_eq!(archived[0]["relation"], "follows_from");
    assert_eq!(archived[0]["destinations"][0]["destination"], "REPORT_STORED");
    // Every workflow that reached the Reporter was archived, none reported lost.
    assert!(archived[0]["calls"].as_u64().unwrap_or(0) >= 100, "{}", archived[0]);
    // A batch's first reports wait longer than the 2-minute floor before the first
    // hops teach the deadline: such a loss is reported, then resolved by the Archiver.
    let anomalies = reference[0].lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    for a in anomalies.filter(|a| a["kind"] == "message_loss" && a["destination"] == "REPORT_STORED") {
        assert_eq!(a["status"], "resolved", "{a}");
        assert_eq!(a["consumer"]["service"], "Archiver", "{a}");
    }
    for (format, files) in &outputs[1..] {
        for (i, name) in FILES.iter().enumerate() {
            assert_eq!(&files[i], &reference[i], "{name} differs between {first} and {format}");
        }
    }
}

#[test]
fn anomalies_are_exactly_the_simulated_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, expected) = simulate(
        dir.path(),
        "jaeger-proto",
        &["--loss-rate", "0.1", "--loop-rate", "0.1", "--n-plus-one-rate", "0.1", "--archive-every", "7"],
    );
    let (out, summary) = replay(dir.path(), "out", &[&input], &[]);
    let mut found: Vec<(String, String, String, String)> = lines(&out.join("anomalies.ndjson"))
        .iter()
        .map(|a| {
            let kind = a["kind"].as_str().unwrap_or_default().to_owned();
            // The simulator names the producer for message loss; the detector picks the span of a loop.
            let span = if kind == "message_loss" {
                a["span_id"].as_str().unwrap_or_default().to_owned()
            } else {
                String::new()
            };
            let dest = a["destination"].as_str().unwrap_or_default().to_owned();
            (kind, a["trace_id"].as_str().unwrap_or_default().to_owned(), span, dest)
        })
        .collect();
    let mut wanted: Vec<(String, String, String, String)> = lines(&expected)
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("kind"), s("trace_id"), s("span_id"), s("destination"))
        })
        .collect();
    found.sort();
    wanted.sort();
    for kind in ["message_loss", "recursive_chain", "repeated_calls"] {
        assert!(wanted.iter().any(|w| w.0 == kind), "no {kind} simulated");
    }
    assert_eq!(found, wanted);
    assert!(summary.contains("anomalies: message_loss"), "{summary}");
}

#[test]
fn healthy_pipeline_has_no_anomalies_and_the_expected_edges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, _) = simulate(dir.path(), "jaeger-json", &[]);
    let (out, summary) = replay(dir.path(), "out", &[&input], &[]);
    assert!(summary.contains("anomalies: none"), "{summary}");
    assert_eq!(read(&out.join("anomalies.ndjson")), "");
    let edges: Vec<(String, String, String, bool, u64, u64)> = lines(&out.join("dependencies.ndjson"))
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (
                s("source"),
                s("target"),
                s("relation"),
                e["virtual"].as_bool().unwrap_or(false),
                e["calls"].as_u64().unwrap_or(0),
                e["errors"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let expect = |a: &str, b: &str| (a.to_owned(), b.to_owned(), "follows_from".to_owned(), false, 150, 0);
    // The S3 download and the report store are client spans no traced server
    // answers: calls to the virtual nodes their peer attributes name.
    let to_peer = |a: &str, b: &str| (a.to_owned(), b.to_owned(), "child_of".to_owned(), true, 150, 0);
    assert_eq!(
        edges,
        vec![
            expect("Classificator", "Reporter"),
            to_peer("Reporter", "postgresql"),
            expect("SandboxAnalyser", "Classificator"),
            to_peer("SandboxAnalyser", "s3"),
            expect("StaticalAnalyser", "Classificator"),
            expect("startWorkflow", "SandboxAnalyser"),
            expect("startWorkflow", "StaticalAnalyser"),
        ]
    );
    // RED: every span once. 150 workflows x 14 spans.
    let metrics = read(&out.join("metrics.prom"));
    let calls: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("traces_span_metrics_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(calls, 150 * 14);
    assert!(metrics.contains(
        "traces_span_metrics_calls_total{service_name=\"SandboxAnalyser\",span_name=\"S3_GET\",span_kind=\"SPAN_KIND_CLIENT\",status_code=\"STATUS_CODE_UNSET\"} 150"
    ));
    let op_edges = lines(&out.join("operation_dependencies.ndjson"));
    assert!(op_edges
        .iter()
        .any(|e| e["source_operation"] == "publish SANDBOX_RESULT" && e["target_operation"] == "classify"));
}

#[test]
fn s3_error_loses_every_sandbox_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, _) = simulate(dir.path(), "otlp-proto", &["--s3", "ERROR"]);
    let (out, _) = replay(dir.path(), "out", &[&input], &[]);
    let anomalies = lines(&out.join("anomalies.ndjson"));
    assert_eq!(anomalies.len(), 150);
    for a in &anomalies {
        assert_eq!(a["kind"], "message_loss");
        assert_eq!(a["destination"], "SANDBOX_RESULT");
        assert_eq!(a["service"], "SandboxAnalyser");
        // The causal path: startWorkflow, its publish, the sandbox's consume, its publish.
        let path: Vec<&str> = a["evidence"]["trace"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["operation"].as_str())
            .collect();
        assert_eq!(
            path,
            ["startWorkflow", "publish SAMPLE_RECEIVED", "consume SAMPLE_RECEIVED", "publish SANDBOX_RESULT"],
            "{a}"
        );
        assert_eq!(a["evidence"]["omitted_spans"], 5, "9 spans in the trace: {a}");
    }
    let metrics = read(&out.join("metrics.prom"));
    assert!(metrics.contains("service_name=\"SandboxAnalyser\",span_name=\"S3_GET\",span_kind=\"SPAN_KIND_CLIENT\",status_code=\"STATUS_CODE_ERROR\"} 150"));
}

#[test]
fn bad_records_are_counted_and_the_rest_is_processed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, _) = simulate(dir.path(), "jaeger-json", &[]);
    // Interleave garbage with the good lines.
    let good = read(&input);
    let mut mixed = String::new();
    for (i, line) in good.lines().enumerate() {
        mixed.push_str(line);
        mixed.push('\n');
        match i % 500 {
            0 => mixed.push_str("{\"traceId\": \"not base64!!\", \"spanId\": \"AAAAAAAAAAE=\"}\n"),
            1 => mixed.push_str("{ this is not json\n"),
            2 => mixed.push_str(&line.replace("\"startTime\":\"2026", "\"startTime\":\"1926")),
            _ => {}
        }
        if i % 500 == 2 {
            mixed.push('\n');
        }
    }
    let bad_file = dir.path().join("mixed.ndjson");
    std::fs::write(&bad_file, mixed).expect("write");
    let random = dir.path().join("random.bin");
    std::fs::write(
        &random,
        (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>(),
    )
    .expect("write");
    let (out, summary) = replay(dir.path(), "out", &[&random, &bad_file], &[]);
    let (clean, _) = replay(dir.path(), "clean", &[&input], &[]);
    for f in FILES {
        assert_eq!(read(&out.join(f)), read(&clean.join(f)), "{f}: bad input changed the results");
    }
    assert!(summary.contains("invalid_trace_id 5"), "{summary}");
    assert!(summary.contains("malformed_json 5"), "{summary}");
    assert!(summary.contains("invalid_time 5"), "{summary}");
    assert!(summary.contains("unrecognized_format 1"), "{summary}");
}

#[test]
fn truncated_protobuf_keeps_the_frames_before_the_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, _) = simulate(dir.path(), "jaeger-proto", &[]);
    let bytes = std::fs::read(&input).expect("read");
    let cut = dir.path().join("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).expect("write");
    let (_, summary) = replay(dir.path(), "out", &[&cut], &[]);
    assert!(
        summary.contains(&format!("{} records", poirot::model::text::thousands(150 * 14 - 1))),
        "{summary}"
    );
    assert!(summary.contains("malformed_protobuf 1"), "{summary}");
}

#[test]
fn stdin_and_explicit_format_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, _) = simulate(dir.path(), "otlp-json", &[]);
    let out = dir.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_poirot"))
        .args(["replay", "--format", "otlp-json", "--out", out.to_str().expect("utf-8"), "-"])
        .stdin(std::fs::File::open(&input).expect("open"))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success());
    assert!(
        text.contains(&format!("{} spans in 150 traces", poirot::model::text::thousands(150 * 14))),
        "{text}"
    );
}

#[test]
fn unreadable_input_and_bad_config_exit_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let r = poirot(&["replay", "--out", out.to_str().expect("utf-8"), "/nonexistent/spans.bin"]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/spans.bin"), "{err}");
    assert!(!out.exists(), "nothing is written when an input is missing");

    let cfg = dir.path().join("poirot.toml");
    std::fs::write(&cfg, "[assembly]\ninactivity_gap = \"ten seconds\"\n").expect("write");
    let r = poirot(&[
        "--config",
        cfg.to_str().expect("utf-8"),
        "replay",
        "--out",
        out.to_str().expect("utf-8"),
        "-",
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("assembly.inactivity_gap"), "{err}");
}

#[test]
fn every_command_has_help() {
    for cmd in [
        &["--help"][..],
        &["run", "--help"],
        &["replay", "--help"],
        &["demo", "--help"],
        &["simulate", "--help"],
        &["deps", "--help"],
        &["deps", "impact", "--help"],
        &["deps", "downstream", "--help"],
        &["deps", "upstream", "--help"],
        &["deps", "path", "--help"],
        &["healthcheck", "--help"],
    ] {
        let text = ok(poirot(cmd));
        assert!(text.contains("Usage"), "{cmd:?}: {text}");
        // Every flag and argument says what it is for: text after its name.
        for line in text.lines().filter(|l| l.starts_with("  ") && l.trim_start().starts_with('-')) {
            let described = line.trim().split_once("  ").is_some_and(|(_, d)| !d.trim().is_empty());
            assert!(described, "{cmd:?}: an option without a description: {line:?}");
        }
    }
    let text = ok(poirot(&["replay", "--help"]));
    assert!(text.contains("length-delimited") && text.contains("per line"), "{text}");
    let text = ok(poirot(&["demo", "--help"]));
    assert!(text.contains("PUBLISHER_RATE") && text.contains("SIMULATE_S3_BEHAVIOUR"), "{text}");
    let text = ok(poirot(&["deps", "--help"]));
    assert!(text.contains("POIROT_NEO4J__URI") && text.contains("POIROT_NEO4J__PASSWORD"), "{text}");
}

#[test]
fn deps_says_in_one_line_within_seconds_that_neo4j_does_not_answer() {
    // A port that accepts connections and never speaks Bolt, and one that refuses them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    for addr in [silent.local_addr().expect("addr"), refused] {
        let started = std::time::Instant::now();
        let r = Command::new(env!("CARGO_BIN_EXE_poirot"))
            .args(["deps", "impact", "SandboxAnalyser"])
            .env("POIROT_NEO4J__URI", addr.to_string())
            .env("POIROT_NEO4J__PASSWORD", "x")
            .env_remove("POIROT_LOG")
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success());
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&format!("cannot connect to Neo4j at {addr}")), "{err}");
    }
}

#[test]
fn input_with_no_readable_record_fails_naming_the_format_tried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let out = out.to_str().expect("utf-8");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p.to_str().expect("utf-8").to_owned()
    };
    let random: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let cases = [
        (write("random.bin", &random), "auto", "match none of the formats"),
        (write("empty.bin", b""), "auto", "the input is empty"),
        (write("a.json", b"{\"a\":1}\n"), "auto", "match none of the formats"),
        (write("random.json", &random), "jaeger-json", "as jaeger-json (--format): malformed_json"),
    ];
    for (input, format, says) in cases {
        let r = poirot(&["replay", "--format", format, "--out", out, &input]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{input}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("no span could be read") && err.contains(says), "{input}: {err}");
        assert!(!err.contains("invalid_utf8"), "{input}: {err}");
    }
}
