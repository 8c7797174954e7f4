//! The repartition topic itself: created beside the input, with its partition
//! count and replication, on first start.

use super::{client_config, RepartitionError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::time::Duration;

/// Retention of the repartition topic: one day.
const RETENTION_MS: &str = "86400000";

/// How long [`ensure_topic`] waits for the input topic to appear (the Jaeger
/// collector creates it with its first span).
const INPUT_WAIT: Duration = Duration::from_secs(300);

/// Creates `topic` with the partition count and replication of `input` unless it
/// exists (waiting for `input` to exist first); returns its partition count.
pub fn ensure_topic(
    brokers: &str,
    props: &BTreeMap<String, String>,
    input: &str,
    topic: &str,
) -> Result<usize, RepartitionError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, props, "poirot-admin").create()?;
    let timeout = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let (partitions, replication) = loop {
        let md = admin.inner().fetch_metadata(Some(input), timeout)?;
        let found = md
            .topics()
            .iter()
            .find(|t| t.name() == input && t.error().is_none() && !t.partitions().is_empty());
        if let Some(t) = found {
            break (t.partitions().len(), t.partitions().first().map_or(1, |p| p.replicas().len().max(1)));
        }
        if started.elapsed() >= INPUT_WAIT {
            return Err(RepartitionError::NoTopic(input.to_owned()));
        }
        if started.elapsed() < Duration::from_secs(2) {
            tracing::info!("waiting for topic {input} to exist, to give {topic} its partition count");
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RepartitionError::Runtime)?;
    // Records are needed only until read and committed; a day bounds the copy's disk use.
    // A group more than a day behind on this topic loses those spans: raise the topic's
    // retention.ms where outages can last longer (see the README).
    let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(replication as i32))
        .set("retention.ms", RETENTION_MS);
    let results = rt.block_on(admin.create_topics([&new], &AdminOptions::new()))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!("created {topic} with {partitions} partitions"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(RepartitionError::Create { topic: topic.to_owned(), detail: code.to_string() })
            }
        }
    }
    // A topic just created may take a moment to show its partitions in metadata.
    let started = std::time::Instant::now();
    let have = loop {
        let md = admin.inner().fetch_metadata(Some(topic), timeout)?;
        let have = md.topics().first().filter(|t| t.error().is_none()).map_or(0, |t| t.partitions().len());
        if have > 0 {
            break have;
        }
        if started.elapsed() >= timeout {
            return Err(RepartitionError::NoTopic(topic.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if have != partitions {
        tracing::warn!("{topic} has {have} partitions, {input} {partitions}: scaling follows the smaller");
    }
    Ok(have)
}
