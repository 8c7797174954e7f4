use super::*;
use crate::analysis::anomaly::ConsumerRef;
use crate::analysis::Resolution;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// A bulk endpoint answering each request with the next of `answers` (the
/// per-item statuses), as a real server under load can: one item refused
/// with 429 while the next in the same request is applied. Records what was asked.
fn bulk_server(answers: Vec<Vec<(&'static str, u16)>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            loop {
                let mut length = 0;
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                seen.lock().expect("lock").push(String::from_utf8_lossy(&body).into_owned());
                let items: Vec<Value> = answers
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(action, status)| json!({ action: { "status": status } }))
                    .collect();
                let reply = json!({ "errors": true, "items": items }).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-elastic-product: Elasticsearch\r\ncontent-length: {}\r\n\r\n{reply}",
                    reply.len()
                );
            }
        }
    });
    (format!("http://{addr}"), asked)
}

fn sink(url: &str) -> EsSink {
    let transport = TransportBuilder::new(SingleNodeConnectionPool::new(Url::parse(url).expect("url")))
        .build()
        .expect("transport");
    let metrics = ProcessMetrics::new();
    EsSink {
        client: Elasticsearch::new(transport),
        prefix: "poirot-test".into(),
        jaeger: None,
        rt: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
        pending: Vec::new(),
        telemetry: SinkTelemetry::new(
            "elasticsearch",
            Component::Elasticsearch,
            metrics.sink("elasticsearch"),
            Health::new(),
        ),
        indexed: Counter::default(),
        rejected: Counter::default(),
    }
}

fn resolution() -> Resolution {
    Resolution {
        trace_id: "00000000000000000000000000000001".into(),
        span_id: "0000000000000002".into(),
        timestamp: "2026-12-01T00:00:00.000000Z".into(),
        resolved_at: "2026-12-01T00:05:00.000000Z".into(),
        consumer: ConsumerRef {
            trace_id: "00000000000000000000000000000003".into(),
            span_id: "0000000000000004".into(),
            service: "Archiver".into(),
            operation: "archive reports".into(),
        },
    }
}

#[test]
fn a_resolution_whose_loss_is_retried_in_the_same_bulk_is_retried_after_it() {
    let (url, asked) =
        bulk_server(vec![vec![("create", 429), ("update", 404)], vec![("create", 201), ("update", 200)]]);
    let mut es = sink(&url);
    let r = resolution();
    es.pending = vec![Doc::Anomaly(Box::new(r.document_key())), Doc::Resolution(Box::new(r.clone()))];
    assert!(es.bulk_once().is_err(), "the refused loss is retried");
    assert_eq!(es.pending.len(), 2, "and its resolution with it, after it");
    assert!(es.bulk_once().is_ok());
    assert_eq!((es.indexed.get(), es.rejected.get()), (2, 0));
    let asked = asked.lock().expect("lock");
    let second = &asked[1];
    assert!(second.find("\"create\"") < second.find("\"update\""), "create before update: {second}");
}

#[test]
fn a_resolution_of_a_loss_nobody_wrote_is_rejected_not_retried_forever() {
    let (url, _) = bulk_server(vec![vec![("update", 404)]]);
    let mut es = sink(&url);
    es.pending = vec![Doc::Resolution(Box::new(resolution()))];
    assert!(es.bulk_once().is_ok());
    assert_eq!((es.indexed.get(), es.rejected.get()), (0, 1));
}

#[test]
fn a_dependency_bucket_is_created_once_and_a_second_copy_is_not_an_error() {
    let (url, asked) = bulk_server(vec![vec![("create", 201)], vec![("create", 409)]]);
    let mut es = sink(&url);
    let section = crate::config::JaegerDependenciesSection {
        enabled: true,
        index_prefix: "jq".into(),
        ..Default::default()
    };
    es.jaeger = Some(JaegerDependencies::new(&section, "group-1"));
    let bucket = crate::runtime::pipeline::DependencyBucket {
        partition: 2,
        start_us: 1_796_169_540_000_000,
        calls: vec![("frontend".into(), "driver".into(), 7)],
    };
    for _ in 0..2 {
        es.pending = vec![Doc::Dependencies(Box::new(bucket.clone()))];
        assert!(es.bulk_once().is_ok());
    }
    assert_eq!((es.indexed.get(), es.rejected.get()), (2, 0), "written, then found there already");
    let asked = asked.lock().expect("lock");
    let action: Value = serde_json::from_str(asked[0].lines().next().unwrap_or_default()).expect("action");
    assert_eq!(
        action,
        json!({"create": {"_index": "jq-jaeger-dependencies-2026-12-01", "_id": "poirot:group-1:2:1796169540000"}})
    );
    assert!(asked[0].contains(r#""callCount":7"#), "{}", asked[0]);
}
