//! `poirot run` end to end with the real servers, one process at a time:
//! simulated spans through Kafka in every encoding into files, dead letters,
//! committed offsets, Elasticsearch/OpenSearch and Neo4j; a loss resolved by a
//! late consumer; poirot tracing itself (HotROD is in tests/hotrod.rs).
//!
//! `make test` runs them with the other server tests; by hand:
//! `make services-up && . .cache/run/env && cargo test --test run -- --ignored`.

mod common;

use common::http;
use common::servers::{
    anomaly_keys, assert_same, consumer, create_topic, env, free_port, metric, neo4j_clear, neo4j_sink,
    now_us, produce_junk, root, services_on_topic, simulate_into, wait_for_metric, Proc,
};
use poirot::decode::Format;
use poirot::model::Interner;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn run_consumes_simulated_kafka_spans_and_finds_exactly_the_simulated_anomalies() {
    run_end_to_end(&env("POIROT_TEST_OPENSEARCH"), "os", "jaeger-proto");
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn run_writes_the_same_anomalies_to_elasticsearch_7() {
    run_end_to_end(&env("POIROT_TEST_ELASTICSEARCH"), "es7", "jaeger-proto");
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn run_reads_jaeger_json_messages_with_the_same_results() {
    run_end_to_end(&env("POIROT_TEST_OPENSEARCH"), "json", "jaeger-json");
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn run_repartitions_unkeyed_otlp_batches_with_the_same_results() {
    run_end_to_end(&env("POIROT_TEST_OPENSEARCH"), "otlp", "otlp-proto");
}

/// The sum of a labelled counter's samples on poirot's `/metrics`.
fn labelled_sum(addr: &str, family: &str) -> f64 {
    let body = http::get(&format!("http://{addr}/metrics")).map(|r| r.body).unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Produces `spans` to `topic`, one Jaeger protobuf message per span keyed by its trace id.
fn produce_spans(topic: &str, spans: &[poirot::model::Span], names: &Interner) {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", env("POIROT_TEST_KAFKA")).create().expect("producer");
    for s in spans {
        let key = s.trace_id.to_string();
        let payload = poirot::decode::jaeger_proto::encode(s, names, &[]);
        producer.send(BaseRecord::to(topic).key(&key).payload(&payload)).expect("queued");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn a_loss_resolved_by_a_late_consumer_is_marked_resolved_in_the_index() {
    use poirot::source::simulator::{SimConfig, Simulator};
    // Workflows whose reports an Archiver takes, in traces of its own, through links. The
    // Archiver's spans are produced only once the reports were reported lost (3 s deadline):
    // a consumer that shows up after the report. The same documents are then marked
    // resolved, with the consumer named; the messages truly lost stay lost.
    let topic = format!("poirot-resolve-{}", std::process::id());
    create_topic(&topic, 3);
    let mut names = Interner::new();
    let config = SimConfig { message_loss_rate: 0.1, archive_every: 5, ..SimConfig::default() };
    let (spans, expected) = Simulator::new(config, 5).batch(40, now_us() / 1000 * 1000, 50_000, &mut names);
    let archiver = names.get("Archiver");
    let (archive, workflows): (Vec<_>, Vec<_>) = spans.into_iter().partition(|s| Some(s.service) == archiver);
    let reports = workflows.iter().filter(|s| names.resolve(s.destination) == "REPORT_STORED").count();
    assert!(reports >= 30 && !archive.is_empty());
    produce_spans(&topic, &workflows, &names);

    let listen = format!("127.0.0.1:{}", free_port());
    let search = env("POIROT_TEST_OPENSEARCH");
    let _run = Proc(
        Command::new(env!("CARGO_BIN_EXE_poirot"))
            .args(["run", "--brokers", &env("POIROT_TEST_KAFKA"), "--topic", &topic])
            .args(["--group", &format!("{topic}-group"), "--listen", &listen])
            .env("POIROT_ASSEMBLY__INACTIVITY_GAP", "2s")
            .env("POIROT_MESSAGE_LOSS__MIN_DEADLINE", "3s")
            .env("POIROT_ASSEMBLY__OUT_OF_ORDERNESS", "1s")
            .env("POIROT_ASSEMBLY__IDLE_TIMEOUT", "3s")
            .env("POIROT_ELASTICSEARCH__URL", &search)
            .env("POIROT_ELASTICSEARCH__INDEX_PREFIX", &topic)
            .env("POIROT_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("poirot run starts"),
    );
    let truly_lost = expected.iter().filter(|e| e.kind == poirot::analysis::AnomalyKind::MessageLoss).count();
    let wait = |what: &str, family: &str, want: usize| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while labelled_sum(&listen, family) < want as f64 {
            assert!(Instant::now() < deadline, "{what}: {} of {want}", labelled_sum(&listen, family));
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    wait("reports lost before the Archiver came", "poirot_message_loss_total", truly_lost + reports);
    produce_spans(&topic, &archive, &names);
    wait("losses resolved by the Archiver", "poirot_message_loss_resolved_total", reports);
    wait_for_metric(
        &listen,
        "poirot_es_documents_indexed_total",
        (truly_lost + 2 * reports) as f64,
        Duration::from_secs(30),
    );

    let _ = http::request("POST", &format!("{search}/{topic}-*/_refresh"), "application/json", b"");
    let q = r#"{"size":1000,"query":{"term":{"kind":"message_loss"}}}"#;
    let r = http::request("POST", &format!("{search}/{topic}-*/_search"), "application/json", q.as_bytes())
        .expect("search");
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("search answer");
    let hits: Vec<serde_json::Value> =
        v["hits"]["hits"].as_array().into_iter().flatten().map(|h| h["_source"].clone()).collect();
    let archived: Vec<&serde_json::Value> =
        hits.iter().filter(|d| d["destination"] == "REPORT_STORED").collect();
    assert_eq!(archived.len(), reports, "one document per report, updated in place: {hits:?}");
    for d in &archived {
        assert_eq!(d["status"], "resolved", "{d}");
        assert_eq!(d["consumer"]["service"], "Archiver", "{d}");
        assert!(d["resolved_at"].as_str().is_some_and(|t| t.starts_with("20")), "{d}");
        assert!(
            d["summary"].as_str().is_some_and(|s| s.contains("REPORT_STORED")),
            "the document stays whole: {d}"
        );
    }
    let lost: BTreeSet<String> = hits
        .iter()
        .filter(|d| d["status"] == "lost")
        .map(|d| d["span_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let want: BTreeSet<String> = expected
        .iter()
        .filter(|e| e.kind == poirot::analysis::AnomalyKind::MessageLoss)
        .map(|e| e.span_id.clone())
        .collect();
    assert_eq!(lost, want, "the messages truly lost stay lost");
}

/// simulate → Kafka → `poirot run` → files, dead letters, offsets and the search index at `search`.
/// OTLP is produced as unkeyed 50-span batches spread over the partitions, so it
/// only adds up through the repartition topic.
fn run_end_to_end(search: &str, tag: &str, format: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = format!("poirot-e2e-{tag}-{}", std::process::id());
    let brokers = env("POIROT_TEST_KAFKA");
    let expected = dir.path().join("expected.ndjson");
    simulate_into(&topic, "200", format, &expected);
    // One message that is no span at all: it must go to the dead-letter topic.
    produce_junk(&topic, b"\xde\xad\xbe\xef not a span");

    let listen = format!("127.0.0.1:{}", free_port());
    let out = dir.path().join("out");
    let group = format!("{topic}-group");
    let start_run = |group: &str, listen: &str, out: &std::path::Path| {
        Proc(
            Command::new(env!("CARGO_BIN_EXE_poirot"))
                .args(["run", "--brokers", &brokers, "--topic", &topic, "--group", group, "--listen", listen])
                .arg("--out")
                .arg(out)
                .env("POIROT_ASSEMBLY__INACTIVITY_GAP", "2s")
                .env("POIROT_MESSAGE_LOSS__MIN_DEADLINE", "3s")
                .env("POIROT_ASSEMBLY__OUT_OF_ORDERNESS", "1s")
                .env("POIROT_ASSEMBLY__IDLE_TIMEOUT", "3s")
                .env("POIROT_ELASTICSEARCH__URL", search)
                .env("POIROT_ELASTICSEARCH__INDEX_PREFIX", &topic)
                .env("POIROT_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("poirot run starts"),
        )
    };
    let mut run = start_run(&group, &listen, &out);
    wait_for_metric(&listen, "poirot_traces_closed_total", 200.0, Duration::from_secs(90));
    wait_for_metric(&listen, "poirot_dead_letters_total", 1.0, Duration::from_secs(30));

    // Exactly the simulated anomalies, once each.
    let want = anomaly_keys(&expected);
    assert!(want.len() > 10);
    let deadline = Instant::now() + Duration::from_secs(20);
    while anomaly_keys(&out.join("anomalies.ndjson")).len() < want.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_same(&anomaly_keys(&out.join("anomalies.ndjson")), &want, "anomalies");

    // Unkeyed input went through `<group>-repartition`, made with the input's partition count;
    // keyed input did not.
    let repartitioned = metric(&listen, "poirot_repartitioned_spans_total");
    let c = consumer(&format!("{topic}-meta"));
    let partition_count = |t: &str| {
        let md = c.fetch_metadata(Some(t), Duration::from_secs(10)).expect("metadata");
        md.topics().first().map_or(0, |t| t.partitions().len())
    };
    if format.starts_with("otlp") {
        assert!(repartitioned > 1000.0, "re-keyed spans: {repartitioned}");
        assert_eq!(partition_count(&format!("{group}-repartition")), partition_count(&topic));
    } else {
        assert_eq!(repartitioned, 0.0, "Jaeger's messages are keyed by trace id");
    }

    // The dead letter names why and where from.
    let dlq = consumer(&format!("{topic}-dlq-reader"));
    dlq.subscribe(&[&format!("{topic}-dlq")]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let headers = loop {
        if let Some(Ok(m)) = dlq.poll(Duration::from_millis(500)) {
            use rdkafka::message::Headers;
            let hs = m.headers().map(|h| {
                h.iter()
                    .map(|x| {
                        (x.key.to_owned(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned())
                    })
                    .collect::<Vec<_>>()
            });
            assert_eq!(m.payload(), Some(&b"\xde\xad\xbe\xef not a span"[..]));
            break hs.unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "nothing on the dead-letter topic");
    };
    assert!(headers.iter().any(|(k, v)| k == "poirot.reason" && v == "unrecognized_format"), "{headers:?}");
    assert!(headers.iter().any(|(k, _)| k == "poirot.source.offset"), "{headers:?}");

    // Every trace closed: the committed offsets reach the end of every partition.
    std::thread::sleep(Duration::from_secs(2));
    let c = consumer(&group);
    let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition(&topic, *p);
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    let mut nonempty = 0;
    for p in partitions {
        let (_, high) = c.fetch_watermarks(&topic, p, Duration::from_secs(10)).expect("watermarks");
        if high == 0 {
            continue; // unkeyed batches may leave a partition empty: nothing to commit there
        }
        nonempty += 1;
        let got = committed.find_partition(&topic, p).map(|e| e.offset());
        assert_eq!(got, Some(rdkafka::Offset::Offset(high)), "partition {p}");
    }

    // The anomaly documents in the search index, once each, in daily indices.
    let docs = |search: &str| -> Vec<(String, String)> {
        let _ = http::request("POST", &format!("{search}/{topic}-*/_refresh"), "application/json", b"");
        let q = r#"{"size":1000,"query":{"match_all":{}},"_source":["kind","trace_id"]}"#;
        let r =
            http::request("POST", &format!("{search}/{topic}-*/_search"), "application/json", q.as_bytes())
                .expect("search");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("search answer");
        let mut out: Vec<(String, String)> = v["hits"]["hits"]
            .as_array()
            .map(|hits| {
                hits.iter()
                    .map(|h| {
                        (
                            h["_index"].as_str().unwrap_or_default().to_owned(),
                            h["_id"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    };
    wait_for_metric(&listen, "poirot_es_documents_indexed_total", want.len() as f64, Duration::from_secs(30));
    let indexed = docs(search);
    assert_eq!(indexed.len(), want.len(), "{indexed:?}");
    assert!(indexed.iter().all(|(index, _)| index.starts_with(&format!("{topic}-20"))), "{indexed:?}");
    let ids: BTreeSet<String> = want.iter().map(|(kind, trace, _, _)| format!("{kind}:{trace}")).collect();
    let got: BTreeSet<String> =
        indexed.iter().map(|(_, id)| id.splitn(3, ':').take(2).collect::<Vec<_>>().join(":")).collect();
    assert_eq!(got, ids);

    // A second consumer group re-reads the whole topic: documents are overwritten, not duplicated.
    let listen2 = format!("127.0.0.1:{}", free_port());
    let again = start_run(&format!("{group}-again"), &listen2, &dir.path().join("out2"));
    wait_for_metric(
        &listen2,
        "poirot_es_documents_indexed_total",
        want.len() as f64,
        Duration::from_secs(90),
    );
    drop(again);
    assert_eq!(docs(search), indexed, "a replay must not duplicate documents");

    // Consumer lag per partition, from librdkafka's statistics: nothing left behind.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = http::get(&format!("http://{listen}/metrics")).map(|r| r.body).unwrap_or_default();
        let prefix = format!("poirot_kafka_consumer_lag{{topic=\"{topic}\",");
        let lags: Vec<&str> = body.lines().filter(|l| l.starts_with(&prefix)).collect();
        // librdkafka knows no lag for a partition that never had a message.
        if lags.len() >= nonempty && lags.iter().all(|l| l.ends_with(" 0")) {
            break;
        }
        assert!(Instant::now() < deadline, "consumer lag: {lags:?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // SIGTERM: a clean stop.
    let pid = run.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = run.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "poirot run did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "{status:?}");
    let deps = std::fs::read_to_string(out.join("dependencies.ndjson")).expect("dependencies written");
    assert!(
        deps.contains(
            r#""source":"startWorkflow","target":"SandboxAnalyser","relation":"follows_from","calls":200"#
        ),
        "{deps}"
    );
}

/// Creates `topic` with `partitions` partitions (replication 1).
#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn run_traces_itself_to_jaeger_and_drops_its_own_spans_from_its_input() {
    // The worst deployment: poirot's own traces go to the Jaeger collector whose
    // Kafka topic poirot reads. They must reach Jaeger, and never be analysed.
    neo4j_clear();
    let since_us = now_us();
    let listen = format!("127.0.0.1:{}", free_port());
    let group = format!("poirot-self-{}", std::process::id());
    let _run = Proc(
        neo4j_sink(&mut Command::new(env!("CARGO_BIN_EXE_poirot")))
            .args(["run", "--brokers", &env("POIROT_TEST_KAFKA"), "--topic", "jaeger-spans"])
            .args(["--group", &group, "--listen", &listen])
            .env("POIROT_SELF_TRACING__ENDPOINT", env("POIROT_TEST_JAEGER_OTLP_HTTP"))
            .env("POIROT_ASSEMBLY__INACTIVITY_GAP", "1s")
            .env("POIROT_MESSAGE_LOSS__MIN_DEADLINE", "3s")
            .env("POIROT_ASSEMBLY__IDLE_TIMEOUT", "3s")
            .env("POIROT_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("poirot run starts"),
    );
    let drive =
        Command::new(root().join("scripts/services/hotrod.sh")).args(["drive", "3"]).output().expect("drive");
    assert!(drive.status.success(), "{}", String::from_utf8_lossy(&drive.stderr));
    // Its Neo4j writes are traced, exported to Jaeger, and written to the topic...
    let seen = services_on_topic("jaeger-spans", Format::JaegerProto, &["poirot"], since_us);
    assert!(seen.contains("poirot"), "no poirot spans on jaeger-spans: {seen:?}");
    // ...where poirot reads them back and drops them. RED counts a span when it is read, so
    // once the topic is read to its end after a drop, any own span that got through would
    // show. (Waiting for one more closed trace instead raced with HotROD's last trace.)
    wait_for_metric(&listen, "poirot_own_spans_dropped_total", 1.0, Duration::from_secs(60));
    wait_until_read_to_the_end(&listen, "jaeger-spans", Duration::from_secs(60));
    let body = http::get(&format!("http://{listen}/metrics")).expect("metrics").body;
    assert!(!body.contains("service_name=\"poirot\""), "poirot's own spans reached RED");
    assert!(body.contains("service_name=\"frontend\""), "HotROD's spans are analysed");
}

/// Waits until poirot's consumer lag on every partition of `topic` is 0 in two scrapes more
/// than a statistics interval (1 s) apart.
fn wait_until_read_to_the_end(addr: &str, topic: &str, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    let prefix = format!("poirot_kafka_consumer_lag{{topic=\"{topic}\"");
    let caught_up = || {
        let body = http::get(&format!("http://{addr}/metrics")).map(|r| r.body).unwrap_or_default();
        let lags: Vec<f64> = body
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        !lags.is_empty() && lags.iter().all(|&l| l <= 0.0)
    };
    let mut in_a_row = 0;
    while in_a_row < 2 {
        assert!(std::time::Instant::now() < deadline, "poirot did not read {topic} to its end");
        in_a_row = if caught_up() { in_a_row + 1 } else { 0 };
        std::thread::sleep(Duration::from_millis(1200));
    }
}
