//! The dead-letter topic: undecodable Kafka messages copied to `<topic>-dlq`
//! with headers naming why and where from, counted in `poirot_dead_letters_total`.

use super::{Round, Sink, SinkError, Written};
use crate::decode::DecodeError;
use crate::source::kafka_log::QuietContext;
use crate::source::Record;
use crate::telemetry::process::ProcessMetrics;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::time::Duration;

/// Undecodable messages, copied to `<topic>-dlq` with headers naming why and where from.
pub struct DeadLetters {
    producer: BaseProducer<QuietContext>,
    topic: String,
    /// The topics read, by a record's topic index.
    source_topics: Vec<String>,
    sent: prometheus_client::metrics::counter::Counter,
}

impl DeadLetters {
    pub fn new(
        brokers: &str,
        source_topics: &[String],
        props: &std::collections::BTreeMap<String, String>,
        metrics: &ProcessMetrics,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers).set("client.id", "poirot-dlq");
        for (k, v) in props {
            cc.set(k, v);
        }
        Ok(DeadLetters {
            producer: cc.create_with_context(QuietContext::new("dead-letters"))?,
            topic: format!("{}-dlq", source_topics.first().map_or("poirot", |s| s.as_str())),
            source_topics: source_topics.to_vec(),
            sent: metrics.dead_letters.clone(),
        })
    }

    fn send(&mut self, r: &Record, e: &DecodeError) {
        let partition = r.kafka_partition.to_string();
        let offset = r.offset.map_or_else(String::new, |o| o.to_string());
        let source_topic = self.source_topics.get(r.topic).map_or("", |s| s.as_str());
        let headers = OwnedHeaders::new()
            .insert(Header { key: "poirot.reason", value: Some(e.reason.as_str()) })
            .insert(Header { key: "poirot.detail", value: Some(e.detail.as_str()) })
            .insert(Header { key: "poirot.source.topic", value: Some(source_topic) })
            .insert(Header { key: "poirot.source.partition", value: Some(partition.as_str()) })
            .insert(Header { key: "poirot.source.offset", value: Some(offset.as_str()) });
        let mut rec: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.topic).payload(&r.payload[..]).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(&k[..]);
        }
        match self.producer.send(rec) {
            Ok(()) => {
                self.sent.inc();
            }
            Err((err, _)) => tracing::warn!("cannot queue a dead letter: {err}"),
        }
        self.producer.poll(Duration::ZERO);
    }

    fn flush(&self) {
        let _ = self.producer.flush(Duration::from_secs(10));
    }
}

/// Dead letters are sent as they come (librdkafka retries them) and flushed when
/// poirot stops: a message lost there is still counted by reason.
impl Sink for DeadLetters {
    fn name(&self) -> &'static str {
        "dead letters"
    }

    fn wants_rejected(&self) -> bool {
        true
    }

    fn write(
        &mut self,
        round: &Round<'_>,
        _stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Written, SinkError> {
        for r in round.rejected {
            self.send(&r.record, &r.error);
        }
        if round.last.is_some() {
            self.flush();
        }
        Ok(Written::Acknowledged)
    }
}
