//! HotROD through the Jaeger collector and Kafka into `poirot run`, against
//! the real servers: Neo4j, Prometheus, the anomaly index and Jaeger's own
//! dependency view must say what an offline replay of the topic says, and the
//! analyses of real traffic (repeated calls, virtual nodes, critical paths)
//! must find what HotROD does.
//!
//! `make test` runs it with the other server tests; by hand:
//! `make services-up && . .cache/run/env && cargo test --test hotrod -- --ignored`.

mod common;

use common::http;
use common::servers::{
    clean_calls, consumer, env, neo4j_calls, neo4j_clear, neo4j_sink, now_us, prom_query, root, Proc, VIRTUAL,
};
use poirot::decode::{self, Format};
use poirot::model::Interner;
use rdkafka::consumer::Consumer;
use rdkafka::Message;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The spans of a dump that called `redis-manual:GetDriver` five times or more:
/// HotROD's driver does it one call after the other, once per request.
fn sequential_driver_reads(dump: &std::path::Path) -> usize {
    let file = std::io::BufReader::new(std::fs::File::open(dump).expect("dump"));
    let records =
        poirot::source::file::RecordReader::new(file, poirot::source::file::framing_for(Format::JaegerProto));
    let mut names = Interner::new();
    let mut reads: std::collections::BTreeMap<
        (poirot::model::TraceId, u64),
        std::collections::BTreeSet<u64>,
    > = Default::default();
    for record in records.flatten() {
        let Ok(s) = decode::jaeger_proto::decode(&record, &mut names) else { continue };
        if names.resolve(s.service) == "redis-manual" && names.resolve(s.operation) == "GetDriver" {
            if let Some(parent) = s.refs.first() {
                reads.entry((s.trace_id, parent.span_id.0)).or_default().insert(s.span_id.0);
            }
        }
    }
    reads.values().filter(|calls| calls.len() >= 5).count()
}

/// The documents of `index`, waiting until there are at least `want`.
fn search_all(search: &str, index: &str, want: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = http::request("POST", &format!("{search}/{index}/_refresh"), "application/json", b"");
        let docs: Vec<serde_json::Value> = http::get(&format!("{search}/{index}/_search?size=1000"))
            .ok()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .and_then(|v| v["hits"]["hits"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .map(|h| h["_source"].clone())
            .collect();
        if docs.len() >= want || Instant::now() >= deadline {
            return docs;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Everything on `topic` now, as length-delimited frames (what `poirot replay` reads),
/// in the spans' event-time order: partitions are read interleaved, and replay reads
/// one stream.
/// The traces of a dump, each from its first start to its last end, in seconds in all.
fn trace_seconds(dump: &std::path::Path) -> f64 {
    let file = std::io::BufReader::new(std::fs::File::open(dump).expect("dump"));
    let records =
        poirot::source::file::RecordReader::new(file, poirot::source::file::framing_for(Format::JaegerProto));
    let mut names = Interner::new();
    let mut traces: std::collections::BTreeMap<poirot::model::TraceId, (i64, i64)> = Default::default();
    for record in records.flatten() {
        let Ok(s) = decode::jaeger_proto::decode(&record, &mut names) else { continue };
        let end = s.start_us + s.duration_us as i64;
        let t = traces.entry(s.trace_id).or_insert((s.start_us, end));
        *t = (t.0.min(s.start_us), t.1.max(end));
    }
    traces.values().map(|(start, end)| (end - start) as f64 / 1e6).sum()
}

fn dump_topic(topic: &str, into: &std::path::Path) -> usize {
    let c = consumer(&format!("poirot-dump-{}-{}", std::process::id(), now_us()));
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut ends = std::collections::BTreeMap::new();
    for p in md.topics()[0].partitions() {
        let (low, high) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).expect("watermarks");
        if high > low {
            ends.insert(p.id(), high);
        }
    }
    c.subscribe(&[topic]).expect("subscribe");
    let mut frames: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut names = Interner::new();
    let mut done = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.len() < ends.len() {
        assert!(Instant::now() < deadline, "could not read {topic} to its end");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let end = ends.get(&m.partition()).copied().unwrap_or(0);
            if m.offset() < end {
                let payload = m.payload().unwrap_or_default().to_vec();
                let event = decode::jaeger_proto::decode(&payload, &mut names)
                    .map(|s| s.event_time_us())
                    .unwrap_or(0);
                frames.push((event, payload));
            }
            if m.offset() + 1 >= end {
                done.insert(m.partition());
            }
        }
    }
    frames.sort_by_key(|(event, _)| *event);
    let mut out = Vec::new();
    for (_, f) in &frames {
        poirot::source::file::write_delimited(&mut out, f);
    }
    std::fs::write(into, out).expect("write dump");
    frames.len()
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn hotrod_through_jaeger_kafka_and_run_reaches_prometheus_neo4j_the_index_and_jaegers_dependency_view() {
    neo4j_clear();
    // Jaeger's query service reads the dependency documents under this prefix: the
    // documents of earlier runs go first.
    let jaeger_prefix = env("POIROT_TEST_JAEGER_QUERY_INDEX_PREFIX");
    let search = env("POIROT_TEST_OPENSEARCH");
    let r = http::request(
        "DELETE",
        &format!("{search}/{jaeger_prefix}-jaeger-dependencies-*"),
        "application/json",
        b"",
    );
    assert!(r.is_ok_and(|r| r.status < 300), "cannot clear the dependency indices");
    let drive =
        Command::new(root().join("scripts/services/hotrod.sh")).args(["drive", "5"]).output().expect("drive");
    assert!(drive.status.success(), "{}", String::from_utf8_lossy(&drive.stderr));
    // The oracle: every span the collector wrote, replayed offline.
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = dir.path().join("jaeger-spans.bin");
    let spans = dump_topic("jaeger-spans", &dump);
    let want_calls = clean_calls(&dump);
    for (a, b) in [
        ("frontend", "customer"),
        ("frontend", "driver"),
        ("frontend", "route"),
        ("customer", "mysql"),
        ("driver", "redis-manual"),
    ] {
        let calls: i64 = want_calls.iter().filter(|c| c.0 == a && c.1 == b).map(|c| c.3).sum();
        assert!(calls >= 5, "{a} → {b}: {calls} calls for at least 5 requests");
    }
    // HotROD's MySQL is simulated: its client spans name `peer.service=mysql` and no
    // server answers them, so they are calls to a virtual node. Every other client
    // span is answered.
    let peers: Vec<_> = want_calls.iter().filter(|c| c.2.ends_with(VIRTUAL)).collect();
    assert!(
        peers.len() == 1 && peers[0].0 == "mysql" && peers[0].1 == "mysql" && peers[0].3 >= 5,
        "calls to virtual nodes: {peers:?}"
    );
    let virtual_calls = peers[0].3;

    let listen = env("POIROT_TEST_POIROT_METRICS");
    let prefix = format!("poirot-hotrod-{}", std::process::id());
    let _run = Proc(
        neo4j_sink(&mut Command::new(env!("CARGO_BIN_EXE_poirot")))
            .args(["run", "--brokers", &env("POIROT_TEST_KAFKA"), "--topic", "jaeger-spans"])
            .args(["--group", &format!("{prefix}-group"), "--listen", &listen])
            .env("POIROT_ASSEMBLY__INACTIVITY_GAP", "2s")
            .env("POIROT_MESSAGE_LOSS__MIN_DEADLINE", "3s")
            .env("POIROT_ASSEMBLY__OUT_OF_ORDERNESS", "1s")
            .env("POIROT_ASSEMBLY__IDLE_TIMEOUT", "3s")
            .env("POIROT_ELASTICSEARCH__URL", &search)
            .env("POIROT_ELASTICSEARCH__INDEX_PREFIX", &prefix)
            .env("POIROT_JAEGER_DEPENDENCIES__ENABLED", "true")
            .env("POIROT_JAEGER_DEPENDENCIES__INDEX_PREFIX", &jaeger_prefix)
            .env("POIROT_JAEGER_DEPENDENCIES__BUCKET", "5s")
            .env("POIROT_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("poirot run starts"),
    );
    // Neo4j: exactly the edges and call counts of the offline replay.
    let deadline = Instant::now() + Duration::from_secs(90);
    while neo4j_calls() != want_calls {
        assert!(Instant::now() < deadline, "Neo4j {:?}\nwanted {want_calls:?}", neo4j_calls());
        std::thread::sleep(Duration::from_secs(1));
    }
    // Prometheus scraped poirot: RED per service adds up to every span the collector wrote.
    let deadline = Instant::now() + Duration::from_secs(60);
    let per_service = loop {
        let rows = prom_query(r#"sum by (service_name) (traces_span_metrics_calls_total{job="poirot"})"#);
        let m: std::collections::BTreeMap<String, f64> = rows
            .iter()
            .map(|r| {
                let v = r["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(0.0);
                (r["metric"]["service_name"].as_str().unwrap_or_default().to_owned(), v)
            })
            .collect();
        if m.values().sum::<f64>() as usize == spans {
            break m;
        }
        assert!(Instant::now() < deadline, "Prometheus has {m:?}, {} spans wanted", spans);
        std::thread::sleep(Duration::from_secs(1));
    };
    for s in ["frontend", "customer", "driver", "route", "mysql", "redis-manual"] {
        assert!(per_service.get(s).is_some_and(|v| *v > 0.0), "no RED series for {s}: {per_service:?}");
    }
    // The virtual node in the service-graph metrics, as Grafana's views mark one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = prom_query(
            r#"sum by (client, server) (traces_service_graph_request_total{job="poirot",connection_type="virtual_node"})"#,
        );
        let got: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| {
                let l = |k: &str| r["metric"][k].as_str().unwrap_or_default().to_owned();
                (l("client"), l("server"), r["value"][1].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        if got == [("mysql".to_owned(), "mysql".to_owned(), virtual_calls.to_string())] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "virtual-node requests {got:?}, {virtual_calls} mysql → mysql wanted"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Complete traces: the one anomaly is N+1. The driver reads each driver from
    // Redis one at a time, once per request; the frontend's calls to route run on
    // a pool of three workers and are not repeated calls.
    let want_repeated = sequential_driver_reads(&dump);
    assert!(want_repeated >= 5, "{want_repeated} FindNearest spans with five reads or more");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<(String, String, String)> =
            prom_query(r#"sum by (kind, service) (poirot_anomalies_total{job="poirot"}) > 0"#)
                .iter()
                .map(|r| {
                    let l = |k: &str| r["metric"][k].as_str().unwrap_or_default().to_owned();
                    (l("kind"), l("service"), r["value"][1].as_str().unwrap_or_default().to_owned())
                })
                .collect();
        if got == [("repeated_calls".to_owned(), "driver".to_owned(), want_repeated.to_string())] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "anomalies {got:?}, {want_repeated} repeated_calls from driver wanted"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let docs = search_all(&search, &format!("{prefix}-*"), want_repeated);
    assert_eq!(docs.len(), want_repeated, "documents in the index");
    for d in &docs {
        let callee = (d["callee_service"].as_str(), d["callee_operation"].as_str());
        assert_eq!(
            (d["kind"].as_str(), d["service"].as_str()),
            (Some("repeated_calls"), Some("driver")),
            "{d}"
        );
        assert_eq!(callee, (Some("redis-manual"), Some("GetDriver")), "{d}");
        assert!(d["calls"].as_u64().unwrap_or(0) >= 5, "{d}");
        assert!(d["batched_duration_us"].as_u64() < d["calls_duration_us"].as_u64(), "{d}");
    }
    // Critical paths in Prometheus: the self times add up to the traces' end-to-end
    // durations, as computed offline from the topic (first start to last end).
    let want_seconds = trace_seconds(&dump);
    assert!(want_seconds > 0.0, "no trace in the dump");
    let scalar = |q: &str| {
        prom_query(q).first().and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok()).unwrap_or(-1.0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let on_path = scalar(r#"sum(poirot_critical_path_seconds_total{job="poirot"})"#);
        let durations = scalar(r#"sum(poirot_critical_path_trace_seconds_total{job="poirot"})"#);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-3 + 1e-6 * b;
        if close(on_path, durations) && close(durations, want_seconds) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "critical paths {on_path} s, traces {durations} s, offline {want_seconds} s"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Jaeger's own dependency view, fed by poirot: the same service edges with the
    // same call counts (Jaeger adds up both relations), once every bucket is complete.
    let mut want: std::collections::BTreeMap<(String, String), i64> = Default::default();
    // Calls to virtual nodes are not dependencies of Jaeger's view.
    for (a, b, _, calls, _) in want_calls.iter().filter(|c| !c.2.ends_with(VIRTUAL)) {
        *want.entry((a.clone(), b.clone())).or_default() += calls;
    }
    let url = format!(
        "{}/api/dependencies?endTs={}&lookback={}",
        env("POIROT_TEST_JAEGER_QUERY"),
        now_us() / 1000 + 600_000,
        6 * 3_600_000
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::BTreeMap<(String, String), i64> = http::get(&url)
            .ok()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .and_then(|v| v["data"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|d| {
                let s = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
                ((s("parent"), s("child")), d["callCount"].as_i64().unwrap_or(0))
            })
            .collect();
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "Jaeger's /api/dependencies {got:?}\nwanted {want:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
}
