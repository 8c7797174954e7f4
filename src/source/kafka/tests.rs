use super::context::STALL_GRACE;
use super::*;

#[test]
fn consumer_defaults_apply_and_kafka_properties_override_them() {
    let mut config = KafkaSourceConfig {
        brokers: "127.0.0.1:9092".into(),
        topics: vec!["jaeger-spans".into()],
        group: "poirot".into(),
        properties: BTreeMap::new(),
        formats: vec![None],
    };
    let cc = client_config(&config);
    assert_eq!(cc.get("fetch.queue.backoff.ms"), Some("10"));
    assert_eq!(cc.get("queued.max.messages.kbytes"), Some("8192"));
    assert_eq!(cc.get("max.partition.fetch.bytes"), Some("262144"));
    config.properties.insert("fetch.queue.backoff.ms".into(), "250".into());
    config.properties.insert("partition.assignment.strategy".into(), "range".into());
    let cc = client_config(&config);
    assert_eq!(cc.get("fetch.queue.backoff.ms"), Some("250"));
    assert_eq!(cc.get("partition.assignment.strategy"), Some("range"));
    assert_eq!(cc.get("queued.min.messages"), Some("20000"));
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn reading_time_stops_while_the_pipeline_does_not_ask_for_events() {
    let t0 = Instant::now();
    let mut stall = Stall::default();
    // The pipeline asks and takes everything: time passes.
    let d = stall.update(t0, true, 10 * MS);
    assert!(stall.reading(d));
    // A brief backlog (the pipeline busy with a large batch): time still passes.
    let d = stall.update(t0 + 100 * MS, false, 50 * MS);
    assert!(stall.reading(d));
    // Blocked on a sink: everything fits in the channel, so all is "delivered",
    // but nobody asks. Time stands still, however long that lasts.
    let d = stall.update(t0 + 200 * MS, true, STALL_GRACE);
    assert!(!stall.reading(d));
    let d = stall.update(t0 + 60_000 * MS, true, 60 * STALL_GRACE);
    assert!(!stall.reading(d));
    assert!(d >= PAUSE_AFTER, "long enough to pause the assignment: {d:?}");
    // Asking again: time passes again at once.
    let d = stall.update(t0 + 60_100 * MS, true, MS);
    assert!(stall.reading(d));
    assert_eq!(d, Duration::ZERO);
    // A backlog that lasts: time stops after the grace.
    stall.update(t0 + 61_000 * MS, false, MS);
    let d = stall.update(t0 + 61_000 * MS + STALL_GRACE, false, MS);
    assert!(!stall.reading(d));
}
