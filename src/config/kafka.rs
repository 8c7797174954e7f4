//! The Kafka source's section.

use super::string_map;
use crate::decode::Format;
use serde::Deserialize;

/// How Kafka messages are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// Detected per message.
    Auto,
    JaegerProto,
    JaegerJson,
    OtlpProto,
    OtlpJson,
}

impl Encoding {
    /// The one format every message is in; `None`: detect each.
    pub fn format(self) -> Option<Format> {
        match self {
            Encoding::Auto => None,
            Encoding::JaegerProto => Some(Format::JaegerProto),
            Encoding::JaegerJson => Some(Format::JaegerJson),
            Encoding::OtlpProto => Some(Format::OtlpProto),
            Encoding::OtlpJson => Some(Format::OtlpJson),
        }
    }
}

/// When input goes through the repartition topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Repartition {
    /// Messages whose key is not the trace id of every span in them.
    Auto,
    Always,
    Never,
}

/// The Kafka source of `poirot run`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// `auto` (detected per message), `jaeger-proto`, `jaeger-json`, `otlp-proto` or `otlp-json`.
    pub encoding: Encoding,
    /// Send undecodable messages to `<topic>-dlq`.
    pub dead_letter: bool,
    /// Re-key spans by trace id through `<group>-repartition`: `auto` (messages
    /// whose key is not the trace id of all their spans), `always` or `never`.
    pub repartition: Repartition,
    /// Passed to librdkafka as they are: `security.protocol`, `sasl.mechanism`, `ssl.ca.location`, ...
    /// (numbers and booleans are written as librdkafka reads them). From the environment:
    /// `POIROT_KAFKA__PROPERTIES__SASL_MECHANISM` sets `sasl.mechanism` (`_` stands for `.`).
    #[serde(deserialize_with = "string_map")]
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            brokers: "127.0.0.1:9092".into(),
            topic: "jaeger-spans".into(),
            group: "poirot".into(),
            encoding: Encoding::Auto,
            dead_letter: true,
            repartition: Repartition::Auto,
            properties: Default::default(),
        }
    }
}
