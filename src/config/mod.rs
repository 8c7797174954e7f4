//! Configuration: a TOML file, then environment overrides, validated at start.
//!
//! ```toml
//! [assembly]
//! inactivity_gap = "10s"      # a trace closes after this much event time without spans
//! out_of_orderness = "5s"     # how late a span may arrive without changing results
//! idle_timeout = "30s"        # reading time after which a silent partition (read to its end) moves on
//! max_spans_per_trace = 50000 # over it: oversized_trace, spans still count for RED
//! max_buffered_spans = 2000000
//!
//! [anomalies]
//! min_reentries = 2           # recursive_chain threshold (A→B→A→B→A)
//! min_repeated_calls = 5      # repeated_calls (N+1) threshold; 0: off
//! max_evidence_spans = 200    # involved span ids listed, and spans in the evidence snapshot
//! max_list_entries = 64       # missing_span_ids, chain, cycle entries; references per snapshot span
//! max_summary_bytes = 1024    # summary length, cut with "…[truncated]"
//! max_document_bytes = 65536  # a document's JSON; the snapshot takes spans only while it fits
//!
//! [red]
//! adjust_for_sampling = true  # a span of a trace sampled with probability p counts 1/p
//! dimensions = []             # span/resource attributes as extra RED labels (at most 4)
//!
//! [service_graph]
//! virtual_node_peer_attributes = ["peer.service", "db.name", "db.system", "server.address"]
//!
//! [metrics]
//! max_series = 10000          # label sets per family; past it spans count in the __overflow__ series
//! max_names = 100000          # distinct service/operation/destination names (0: no limit); past it: __overflow__
//! max_name_bytes = 256        # longer service/operation/destination names are cut, ending "…[truncated]"
//!
//! [kafka]                     # poirot run
//! brokers = "127.0.0.1:9092"
//! topic = "jaeger-spans"
//! group = "poirot"
//! encoding = "auto"           # auto | jaeger-proto | jaeger-json | otlp-proto | otlp-json
//! dead_letter = true          # undecodable messages go to <topic>-dlq
//! repartition = "auto"        # auto | always | never: re-key unkeyed input via <group>-repartition
//! [kafka.properties]          # passed to librdkafka as they are
//! # "security.protocol" = "SASL_SSL"
//! # "sasl.mechanism" = "SCRAM-SHA-512"
//! # "ssl.ca.location" = "/run/secrets/kafka_ca.pem"
//!
//! [run]
//! listen = "127.0.0.1:9464"   # page, /metrics, /healthz, /readyz
//! tls_cert = ""               # PEM chain and key: HTTPS (the demo's page too)
//! tls_key = ""
//! auth_token_file = ""        # bearer token for /, /api/*, /graph.svg (or auth_token;
//!                             # or auth_user with auth_password(_file) for basic auth)
//! metrics_token_file = ""     # bearer token for /metrics (or metrics_token, metrics_user...);
//!                             # unset: /metrics takes the page's credentials
//!
//! [neo4j]                     # service dependencies; off while uri is empty
//! uri = "127.0.0.1:7687"      # bolt+s://host:7687 (or neo4j+s://): TLS, verified
//! user = "neo4j"
//! password_file = "/run/secrets/neo4j_password"
//! ca_file = ""                # PEM CA to trust besides the system's (needs a +s uri)
//!
//! [elasticsearch]             # anomaly documents; off while url is empty
//! url = "http://127.0.0.1:9200" # https://...: TLS, verified
//! index_prefix = "poirot-anomalies"
//! username = ""               # basic auth, with password or password_file
//! api_key = ""                # or an API key "id:key" (or api_key_file)
//! ca_file = ""                # PEM CA to trust besides the built-in roots (needs https)
//! client_cert = ""            # PEM client certificate (chain) and its key: mutual TLS
//! client_key = ""
//!
//! [jaeger_dependencies]       # service calls as Jaeger's dependency documents, in [elasticsearch]
//! enabled = false
//! index_prefix = ""           # Jaeger's index_prefix: "" writes jaeger-dependencies-<date>
//! bucket = "5m"               # event time per document (and per input partition)
//! date_separator = "-"        # Jaeger's index_date_separator
//!
//! [self_tracing]              # poirot's own traces over OTLP/HTTP; off while endpoint is empty
//! endpoint = "http://127.0.0.1:4318"
//! service_name = "poirot"     # input spans of this service are dropped (no feedback loop)
//! sample_ratio = 1.0
//!
//! [ui]                        # the live page of run and demo
//! jaeger_url = ""             # a Jaeger UI to link trace ids to, e.g. "http://127.0.0.1:16686"
//!
//! [demo]
//! listen = "127.0.0.1:8080"
//! publisher_rate = 5.0        # workflows started per second
//! s3_behaviour = "CONST"      # CONST | PROBABILISTIC | ERROR
//! message_loss_rate = 0.02
//! ping_pong_rate = 0.02
//! n_plus_one_rate = 0.02      # the Reporter stores findings one by one: repeated_calls
//! ```
//!
//! Any key can be overridden by `POIROT_<SECTION>__<KEY>` (for example
//! `POIROT_ASSEMBLY__INACTIVITY_GAP=2s`), a librdkafka property by
//! `POIROT_KAFKA__PROPERTIES__<NAME>` with `_` for `.` (`POIROT_KAFKA__PROPERTIES__SASL_PASSWORD`
//! sets `sasl.password`); the demo also reads the seed pipeline's
//! own `PUBLISHER_RATE` and `SIMULATE_S3_BEHAVIOUR`.

mod analysis;
mod kafka;
mod run;
mod sinks;
#[cfg(test)]
mod tests;
mod validate;

pub use analysis::{
    AnomalySection, AssemblySection, DemoSection, MessageLossSection, MetricsSection, PeerOrder, RedSection,
    S3Behaviour, ServiceGraphSection,
};
pub use kafka::{Encoding, KafkaSection, Repartition};
pub use run::RunSection;
pub use sinks::{
    ElasticsearchSection, JaegerDependenciesSection, Neo4jSection, SelfTracingSection, UiSection,
};

use serde::{Deserialize, Deserializer};
use std::path::Path;
use std::time::Duration;
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The OS error is the source, printed once after this.
    #[error("cannot read config file {path}")]
    Read { path: String, source: std::io::Error },
    /// `message` is TOML's own: where, the line with a caret under the spot, and what.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("config key `{key}`{origin}: {message}")]
    Invalid { key: String, origin: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub assembly: AssemblySection,
    pub anomalies: AnomalySection,
    pub message_loss: MessageLossSection,
    pub metrics: MetricsSection,
    pub red: RedSection,
    pub service_graph: ServiceGraphSection,
    pub demo: DemoSection,
    pub kafka: KafkaSection,
    pub run: RunSection,
    pub elasticsearch: ElasticsearchSection,
    pub jaeger_dependencies: JaegerDependenciesSection,
    pub neo4j: Neo4jSection,
    pub self_tracing: SelfTracingSection,
    pub ui: UiSection,
}

/// An error naming config key `key` (for the components that check their own
/// settings at start: secret and certificate files, TLS requirements).
pub fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { key: key.into(), origin: String::new(), message }
}

/// Parses "10s", "250ms", "2m", "1h", "1500us" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return None,
    };
    (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs))
}

/// A table of scalars as strings: librdkafka takes `linger.ms = 5` as "5".
pub(crate) fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    /// A string, number or bool, as the text librdkafka takes.
    struct Scalar(String);
    impl<'de> Deserialize<'de> for Scalar {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Scalar;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string, a number or a bool")
                }
                fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_owned()))
                }
                fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
    let raw = std::collections::BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, Scalar(v))| (k, v)).collect())
}

pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration like \"10s\", \"500ms\" or \"2m\" (a bare number is seconds)")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            parse_duration(text).ok_or_else(|| {
                E::custom(format!("invalid duration {text:?} (write it like \"10s\", \"500ms\" or \"2m\")"))
            })
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
            self.visit_str(&format!("{v}"))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            self.visit_str(&format!("{v}"))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            self.visit_str(&format!("{v}"))
        }
    }
    d.deserialize_any(V)
}

/// A table of durations, e.g. per destination.
pub(crate) fn durations<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, Duration>, D::Error> {
    #[derive(Deserialize)]
    struct One(#[serde(deserialize_with = "duration")] Duration);
    let raw = std::collections::BTreeMap::<String, One>::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, One(v))| (k, v)).collect())
}

impl Config {
    /// Loads `path` (if any), applies overrides from `env`, and validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| ConfigError::Read { path: p.display().to_string(), source })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::Syntax {
                    path: p.display().to_string(),
                    message: e.to_string().trim_end().to_owned(),
                })?
            }
            None => toml::Table::new(),
        };
        let mut origins: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            let Some((section, key)) = env_key(&name) else { continue };
            let section_table =
                table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(t) = section_table else { continue };
            if let Some(property) = kafka_property(&section, &key) {
                // A librdkafka property: always a string, under [kafka.properties].
                let map = t.entry("properties").or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(m) = map {
                    m.insert(property.clone(), toml::Value::String(value));
                }
                origins.push((format!("kafka.properties.{property}"), name));
                continue;
            }
            t.insert(key.clone(), env_value(&value));
            origins.push((format!("{section}.{key}"), name));
        }
        let origin_of = |key: &str| {
            origins
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, env)| format!(" (from environment variable {env})"))
                .unwrap_or_default()
        };
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                origin: origin_of(&key),
                key,
                message: e.into_inner().to_string().lines().next().unwrap_or_default().to_owned(),
            }
        })?;
        config.validate().map_err(|(key, message)| ConfigError::Invalid {
            origin: origin_of(key),
            key: key.into(),
            message,
        })?;
        Ok(config)
    }
}

/// The smallest `metrics.max_name_bytes` and `anomalies.max_summary_bytes`: room
/// for the cut marker and some text before it.
pub const MIN_NAME_BYTES: usize = 32;

/// `POIROT_SECTION__KEY` → (section, key); the seed pipeline's demo variables too.
fn env_key(name: &str) -> Option<(String, String)> {
    match name {
        "PUBLISHER_RATE" => return Some(("demo".into(), "publisher_rate".into())),
        "SIMULATE_S3_BEHAVIOUR" => return Some(("demo".into(), "s3_behaviour".into())),
        _ => {}
    }
    let rest = name.strip_prefix("POIROT_")?;
    let (section, key) = rest.split_once("__")?;
    Some((section.to_ascii_lowercase(), key.to_ascii_lowercase()))
}

/// `POIROT_KAFKA__PROPERTIES__SASL_MECHANISM` (section `kafka`, key
/// `properties__sasl_mechanism`) → `sasl.mechanism`: librdkafka's settable properties
/// are written with dots, which environment variable names rarely allow.
fn kafka_property(section: &str, key: &str) -> Option<String> {
    let name = key.strip_prefix("properties__").filter(|_| section == "kafka")?;
    (!name.is_empty()).then(|| name.replace('_', "."))
}

/// An environment value as TOML if it parses as a scalar, else as a string.
fn env_value(v: &str) -> toml::Value {
    match format!("v = {v}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            // Lists too: POIROT_RED__DIMENSIONS='["deployment.environment"]'.
            Some(
                val @ (toml::Value::Integer(_)
                | toml::Value::Float(_)
                | toml::Value::Boolean(_)
                | toml::Value::Array(_)),
            ) => val,
            _ => toml::Value::String(v.to_owned()),
        },
        Err(_) => toml::Value::String(v.to_owned()),
    }
}
