//! The real servers of the test harness, each shown to work for real.
//!
//! `make test` brings them up (`make services-up`) and runs these with
//! `--ignored`; by hand: `make services-up && . .cache/run/env && cargo test --test services -- --ignored`.

mod common;

use common::http;
use common::servers::{consume_until, env, now_us, root, services_on_topic};
use poirot::decode::{self, Format};
use poirot::model::Interner;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn kafka_produces_and_consumes_with_a_consumer_group() {
    let topic = format!("poirot-selftest-{}", std::process::id());
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", env("POIROT_TEST_KAFKA")).create().expect("producer");
    for i in 0..10 {
        let payload = format!("message {i}");
        producer.send(BaseRecord::to(&topic).key("k").payload(&payload)).expect("enqueue");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let mut seen = BTreeSet::new();
    let ok = consume_until(&topic, Duration::from_secs(60), |p| {
        seen.insert(String::from_utf8_lossy(p).into_owned());
        seen.len() == 10
    });
    assert!(ok, "consumed only {seen:?}");
    assert!(seen.contains("message 9"));
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn neo4j_writes_and_reads_a_node_with_a_parameter() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let graph = neo4rs::Graph::new(
            env("POIROT_TEST_NEO4J"),
            env("POIROT_TEST_NEO4J_USER"),
            env("POIROT_TEST_NEO4J_PASSWORD"),
        )
        .await
        .expect("bolt connection with the password");
        // A hostile name must round-trip as data, never as Cypher.
        let name = format!("x'}}) DETACH DELETE n // {}", std::process::id());
        graph
            .run(
                neo4rs::query("MERGE (s:SelfTest {name: $name}) SET s.calls = $calls")
                    .param("name", name.clone())
                    .param("calls", 42),
            )
            .await
            .expect("write");
        let mut rows = graph
            .execute(
                neo4rs::query("MATCH (s:SelfTest {name: $name}) RETURN s.name AS name, s.calls AS calls")
                    .param("name", name.clone()),
            )
            .await
            .expect("read");
        let row = rows.next().await.expect("row").expect("one row");
        assert_eq!(row.get::<String>("name").expect("name"), name);
        assert_eq!(row.get::<i64>("calls").expect("calls"), 42);
        graph.run(neo4rs::query("MATCH (s:SelfTest) DETACH DELETE s")).await.expect("clean up");

        // One connection, one try: the driver's own retries would trip Neo4j's lockout
        // and refuse the right password to the tests that follow.
        let refused = one_try(&env("POIROT_TEST_NEO4J_USER"), "wrong password").await.is_err();
        assert!(refused, "auth is on: a wrong password must be refused");
        // Leave the account usable, however the server counts failed attempts.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while let Err(e) = one_try(&env("POIROT_TEST_NEO4J_USER"), &env("POIROT_TEST_NEO4J_PASSWORD")).await {
            assert!(std::time::Instant::now() < deadline, "the right password stays refused: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Opens one bolt connection and one transaction, with no retry.
async fn one_try(user: &str, password: &str) -> Result<(), neo4rs::Error> {
    let config = neo4rs::ConfigBuilder::default()
        .uri(env("POIROT_TEST_NEO4J"))
        .user(user)
        .password(password)
        .max_connections(1)
        .build()?;
    let graph = neo4rs::Graph::connect(config).await?;
    graph.start_txn().await?.rollback().await
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn opensearch_bulk_indexes_and_searches() {
    bulk_index_and_search(&env("POIROT_TEST_OPENSEARCH"));
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn elasticsearch_7_bulk_indexes_and_searches() {
    bulk_index_and_search(&env("POIROT_TEST_ELASTICSEARCH"));
}

fn bulk_index_and_search(base: &str) {
    let index = format!("poirot-selftest-{}", std::process::id());
    let bulk = format!(
        "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"a\"}}}}\n{{\"kind\":\"message_loss\",\"summary\":\"SandboxAnalyser lost SANDBOX_RESULT\"}}\n\
         {{\"index\":{{\"_index\":\"{index}\",\"_id\":\"b\"}}}}\n{{\"kind\":\"recursive_chain\",\"summary\":\"Reporter re-enters Classificator\"}}\n"
    );
    let r =
        http::request("POST", &format!("{base}/_bulk?refresh=true"), "application/x-ndjson", bulk.as_bytes())
            .expect("bulk");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["errors"], false, "{}", r.body);
    let q = r#"{"query":{"match":{"summary":"SANDBOX_RESULT"}}}"#;
    let r = http::request("POST", &format!("{base}/{index}/_search"), "application/json", q.as_bytes())
        .expect("search");
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["hits"]["total"]["value"], 1, "{}", r.body);
    assert_eq!(v["hits"]["hits"][0]["_id"], "a");
    let _ = http::request("DELETE", &format!("{base}/{index}"), "application/json", b"");
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn promtool_accepts_the_prometheus_config() {
    let out = Command::new(root().join("scripts/services/prometheus.sh"))
        .arg("check-config")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn hotrod_spans_reach_kafka_through_jaeger_and_poirot_decodes_them() {
    let since_us = now_us();
    let drive = Command::new(root().join("scripts/services/hotrod.sh"))
        .args(["drive", "5"])
        .output()
        .expect("drive hotrod");
    assert!(drive.status.success(), "{}", String::from_utf8_lossy(&drive.stderr));
    let want = ["frontend", "customer", "driver", "route", "mysql", "redis-manual"];
    for (topic, format) in [("jaeger-spans", Format::JaegerProto), ("jaeger-spans-json", Format::JaegerJson)]
    {
        let seen = services_on_topic(topic, format, &want, since_us);
        for w in want {
            assert!(seen.contains(w), "{topic}: no {w} spans; saw {seen:?}");
        }
    }
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn jaeger_v1_collector_writes_kafka_json_that_poirot_decodes() {
    use poirot::source::simulator::{SimConfig, Simulator, EXTRA_TAGS};
    let mut names = Interner::new();
    let start = now_us();
    let (spans, _) =
        Simulator::new(SimConfig::default(), std::process::id().into()).batch(3, start, 100_000, &mut names);
    let body = decode::otlp::encode_proto(&spans, &names, &EXTRA_TAGS);
    let url = format!("{}/v1/traces", env("POIROT_TEST_JAEGER_V1_OTLP_HTTP"));
    let r = http::request("POST", &url, "application/x-protobuf", &body).expect("post OTLP");
    assert_eq!(r.status, 200, "{}", r.body);
    let want: BTreeSet<String> = spans.iter().map(|s| s.span_id.to_string()).collect();
    let mut got = BTreeSet::new();
    let mut decoded = Interner::new();
    let ok = consume_until("jaeger-spans-v1", Duration::from_secs(60), |payload| {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        decode::decode_auto(payload, &mut decoded, &mut out, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        for s in out {
            let id = s.span_id.to_string();
            if want.contains(&id) {
                assert_eq!(
                    s.trace_id,
                    spans.iter().find(|x| x.span_id == s.span_id).map(|x| x.trace_id).unwrap_or_default()
                );
                got.insert(id);
            }
        }
        got.len() == want.len()
    });
    assert!(ok, "{} of {} spans arrived on jaeger-spans-v1", got.len(), want.len());
}
