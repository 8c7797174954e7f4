//! Several `poirot run` processes in one consumer group, with the real servers:
//! a member killed mid-stream, one killed while another joins, two sharing
//! unkeyed OTLP batches. Each must end exactly as a clean run (an offline replay)
//! of the same spans: Neo4j's edges by calls and errors, the index's documents.
//!
//! `make test` runs them with the other server tests; by hand:
//! `make services-up && . .cache/run/env && cargo test --test groups -- --ignored`.

mod common;

use common::http;
use common::servers::{
    assert_same, chrono_now, clean_calls, consumer, create_topic, env, free_port, group_config, metric,
    neo4j_calls, neo4j_clear, neo4j_sink, start_run_on, wait_for_metric, Proc,
};
use rdkafka::consumer::Consumer;
use std::process::Command;
use std::time::{Duration, Instant};

/// A simulated workload produced to a fresh topic, and what a clean run of it gives.
#[derive(Default)]
struct Workload {
    _dir: Option<tempfile::TempDir>,
    topic: String,
    want_calls: Vec<(String, String, String, i64, i64)>,
    want_docs: usize,
}

fn workload(prefix: &str, traces: &str, seed: &str, format: &str) -> Workload {
    workload_on(format!("{prefix}-{}", std::process::id()), traces, seed, format)
}

fn workload_on(topic: String, traces: &str, seed: &str, format: &str) -> Workload {
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = dir.path().join("spans.bin");
    let expected = dir.path().join("expected.ndjson");
    let sim = Command::new(env!("CARGO_BIN_EXE_poirot"))
        .args(["simulate", "--traces", traces, "--seed", seed, "--loss-rate", "0.05", "--loop-rate", "0.05"])
        .args(["--format", format, "--brokers", &env("POIROT_TEST_KAFKA"), "--topic", &topic])
        .args(["--start", &chrono_now()])
        .arg("--out")
        .arg(&dump)
        .arg("--expected")
        .arg(&expected)
        .env("POIROT_LOG", "warn")
        .output()
        .expect("simulate");
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    // What a clean run gives: the offline replay of the same spans.
    let want_calls = clean_calls(&dump);
    let want_docs = std::fs::read_to_string(&expected).expect("expected").lines().count();
    Workload { _dir: Some(dir), topic, want_calls, want_docs }
}

/// `poirot run` on the workload's topic with Neo4j and the search index, as group `group`.
fn start_run(w: &Workload, group: &str, listen: &str, config: Option<&std::path::Path>) -> Proc {
    start_run_on(&w.topic, group, listen, config)
}

/// Waits until Neo4j and the index hold exactly what a clean run of `w` gives.
fn assert_as_clean_run(w: &Workload) {
    let deadline = Instant::now() + Duration::from_secs(150);
    while neo4j_calls() != w.want_calls {
        assert!(Instant::now() < deadline, "Neo4j {:?}\nwanted {:?}", neo4j_calls(), w.want_calls);
        std::thread::sleep(Duration::from_secs(1));
    }
    let search = env("POIROT_TEST_OPENSEARCH");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = http::request("POST", &format!("{search}/{}-*/_refresh", w.topic), "application/json", b"");
        let r = http::get(&format!("{search}/{}-*/_count", w.topic)).expect("count");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        if v["count"].as_u64() == Some(w.want_docs as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "index has {}, wanted {}", r.body, w.want_docs);
        std::thread::sleep(Duration::from_secs(1));
    }
    // Give late writes a moment: nothing may be counted twice afterwards.
    std::thread::sleep(Duration::from_secs(3));
    assert_same(&neo4j_calls(), &w.want_calls, "calls");
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn run_killed_mid_stream_and_restarted_leaves_neo4j_and_the_index_as_a_clean_run() {
    neo4j_clear();
    let w = workload("poirot-crash", "3000", "1", "jaeger-proto");
    let group = format!("{}-group", w.topic);
    // First run: killed with SIGKILL while the last traces are still open.
    let first = format!("127.0.0.1:{}", free_port());
    let mut run = start_run(&w, &group, &first, None);
    wait_for_metric(&first, "poirot_neo4j_finished_traces_total", 1000.0, Duration::from_secs(120));
    let open = metric(&first, "poirot_open_traces");
    run.0.kill().expect("SIGKILL");
    let _ = run.0.wait();
    assert!(open > 0.0, "the kill came after every trace had closed: nothing left to recover");

    // Second run, same group: re-reads from the committed offsets.
    let second = format!("127.0.0.1:{}", free_port());
    let _run2 = start_run(&w, &group, &second, None);
    assert_as_clean_run(&w);
    assert!(
        metric(&second, "poirot_replayed_spans_total") > 0.0,
        "the restart re-read spans of counted traces"
    );

    // `poirot deps` answers from the same graph.
    let deps = |args: &[&str]| -> Vec<(String, i64, i64)> {
        let out = neo4j_sink(&mut Command::new(env!("CARGO_BIN_EXE_poirot")))
            .arg("deps")
            .args(args)
            .arg("--json")
            .env("POIROT_LOG", "warn")
            .output()
            .expect("deps");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v.as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    r["service"].as_str().unwrap_or_default().to_owned(),
                    r["hops"].as_i64().unwrap_or(0),
                    r["calls"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    };
    let down = deps(&["downstream", "startWorkflow"]);
    let names: Vec<(&str, i64)> = down.iter().map(|(s, h, _)| (s.as_str(), *h)).collect();
    assert_eq!(
        names,
        vec![("SandboxAnalyser", 1), ("StaticalAnalyser", 1), ("Classificator", 2), ("Reporter", 3)]
    );
    assert_eq!(down[0].2, 3000, "startWorkflow → SandboxAnalyser calls");
    let path = deps(&["path", "startWorkflow", "Reporter"]);
    assert_eq!(path.len(), 3);
    assert_eq!(path.last().map(|p| p.0.as_str()), Some("Reporter"));
    let impact: Vec<String> = deps(&["impact", "Classificator"]).into_iter().map(|r| r.0).collect();
    for s in ["SandboxAnalyser", "StaticalAnalyser", "startWorkflow"] {
        assert!(impact.iter().any(|x| x == s), "{s} depends on Classificator: {impact:?}");
    }
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn three_processes_one_killed_one_joining_end_as_a_single_run() {
    neo4j_clear();
    let w = workload("poirot-scale", "3000", "3", "jaeger-proto");
    let c = consumer(&format!("{}-meta", w.topic));
    let md = c.fetch_metadata(Some(&w.topic), Duration::from_secs(10)).expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 6, "the topic has 6 partitions");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = group_config(dir.path());
    let group = format!("{}-group", w.topic);
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut runs: Vec<Proc> = addrs.iter().map(|a| start_run(&w, &group, a, Some(&config))).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let finished: f64 =
            addrs.iter().map(|a| metric(a, "poirot_neo4j_finished_traces_total").max(0.0)).sum();
        if finished >= 600.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the three processes finished only {finished} traces");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The member about to die owns partitions (the work is really shared).
    let owns = |addr: &str| {
        http::get(&format!("http://{addr}/metrics"))
            .map(|r| r.body.lines().filter(|l| l.starts_with("poirot_kafka_committable_offset{")).count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while owns(&addrs[1]) == 0 {
        assert!(Instant::now() < deadline, "the second process never got a partition");
        std::thread::sleep(Duration::from_millis(200));
    }
    // One member dies without a word; another joins.
    runs[1].0.kill().expect("SIGKILL");
    let _ = runs[1].0.wait();
    let joiner = format!("127.0.0.1:{}", free_port());
    runs.push(start_run(&w, &group, &joiner, Some(&config)));
    assert_as_clean_run(&w);
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn two_processes_on_unkeyed_otlp_batches_end_as_a_single_run() {
    // 50-span OTLP requests without a key land on random partitions; two group members
    // each own half of them, so without the repartition stage most traces would be
    // assembled in two halves, in two processes.
    neo4j_clear();
    let topic = format!("poirot-otlp-{}", std::process::id());
    create_topic(&topic, 6);
    // Both members own partitions before any span arrives, so the work is shared.
    let pending = Workload { topic: topic.clone(), ..Workload::default() };
    let group = format!("{topic}-group");
    let addrs: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let _runs: Vec<Proc> = addrs.iter().map(|a| start_run(&pending, &group, a, None)).collect();
    for a in &addrs {
        wait_for_metric(a, "poirot_kafka_assigned_partitions", 1.0, Duration::from_secs(60));
    }
    let w = workload_on(topic, "1000", "5", "otlp-proto");
    assert_as_clean_run(&w);
    // Both members read records (the assignor balances partitions over both topics, so one may
    // re-key while the other assembles).
    let read: Vec<f64> = addrs
        .iter()
        .map(|a| metric(a, "poirot_records_total") + metric(a, "poirot_repartition_records_total"))
        .collect();
    assert!(read.iter().all(|&c| c > 0.0), "both members took part: {read:?}");
    let rekeyed: f64 = addrs.iter().map(|a| metric(a, "poirot_repartitioned_spans_total").max(0.0)).sum();
    assert!(rekeyed > 10_000.0, "re-keyed spans: {rekeyed}");
}
