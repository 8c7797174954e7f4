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
//! max_evidence_spans = 200    # involved span ids listed, and spans in the evidence snapshot
//! max_list_entries = 64       # missing_span_ids, chain, cycle entries; references per snapshot span
//! max_summary_bytes = 1024    # summary length, cut with "…[truncated]"
//! max_document_bytes = 65536  # a document's JSON; the snapshot takes spans only while it fits
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
//! [self_tracing]              # poirot's own traces over OTLP/HTTP; off while endpoint is empty
//! endpoint = "http://127.0.0.1:4318"
//! service_name = "poirot"     # input spans of this service are dropped (no feedback loop)
//! sample_ratio = 1.0
//!
//! [demo]
//! listen = "127.0.0.1:8080"
//! publisher_rate = 5.0        # workflows started per second
//! s3_behaviour = "CONST"      # CONST | PROBABILISTIC | ERROR
//! message_loss_rate = 0.02
//! ping_pong_rate = 0.02
//! ```
//!
//! Any key can be overridden by `POIROT_<SECTION>__<KEY>` (for example
//! `POIROT_ASSEMBLY__INACTIVITY_GAP=2s`), a librdkafka property by
//! `POIROT_KAFKA__PROPERTIES__<NAME>` with `_` for `.` (`POIROT_KAFKA__PROPERTIES__SASL_PASSWORD`
//! sets `sasl.password`); the demo also reads the seed pipeline's
//! own `PUBLISHER_RATE` and `SIMULATE_S3_BEHAVIOUR`.

use serde::{Deserialize, Deserializer};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
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
    pub metrics: MetricsSection,
    pub demo: DemoSection,
    pub kafka: KafkaSection,
    pub run: RunSection,
    pub elasticsearch: ElasticsearchSection,
    pub neo4j: Neo4jSection,
    pub self_tracing: SelfTracingSection,
}

/// poirot's own traces, sent over OTLP/HTTP; off while `endpoint` is empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfTracingSection {
    /// OTLP/HTTP address of a collector, e.g. `http://127.0.0.1:4318`.
    pub endpoint: String,
    /// `service.name` of poirot's spans; input spans of this service are dropped,
    /// so poirot never analyses (and traces) its own traces.
    pub service_name: String,
    /// Share of poirot's traces kept, in [0, 1].
    pub sample_ratio: f64,
}

impl Default for SelfTracingSection {
    fn default() -> Self {
        SelfTracingSection { endpoint: String::new(), service_name: "poirot".into(), sample_ratio: 1.0 }
    }
}

/// Where `poirot run` writes service dependencies; off while `uri` is empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Neo4jSection {
    /// Bolt address, e.g. `127.0.0.1:7687`.
    pub uri: String,
    pub user: String,
    pub password: String,
    /// A file holding the password (a docker secret), instead of `password`.
    pub password_file: String,
    /// PEM CA certificate(s) trusted for the server's certificate, besides the
    /// system's roots; only with a TLS `uri` (`bolt+s://`, `neo4j+s://`). The
    /// server's name is the uri's host: neo4rs has no name override and no
    /// client certificates.
    pub ca_file: String,
}

impl Default for Neo4jSection {
    fn default() -> Self {
        Neo4jSection {
            uri: String::new(),
            user: "neo4j".into(),
            password: String::new(),
            password_file: String::new(),
            ca_file: String::new(),
        }
    }
}

#[cfg(feature = "servers")]
impl Neo4jSection {
    /// The sink settings, reading the password file; `None` when the sink is off.
    pub fn sink_config(&self) -> Result<Option<crate::sink::neo4j::Neo4jConfig>, ConfigError> {
        if self.uri.is_empty() {
            return Ok(None);
        }
        let password = if self.password_file.is_empty() {
            self.password.clone()
        } else {
            std::fs::read_to_string(&self.password_file).map(|s| s.trim_end().to_owned()).map_err(|e| {
                ConfigError::Invalid {
                    key: "neo4j.password_file".into(),
                    origin: String::new(),
                    message: format!("cannot read {}: {e}", self.password_file),
                }
            })?
        };
        let ca_file = if self.ca_file.is_empty() {
            None
        } else {
            if !crate::sink::neo4j::is_tls_uri(&self.uri) {
                return Err(invalid(
                    "neo4j.ca_file",
                    format!("needs a TLS uri (bolt+s:// or neo4j+s://), not {:?}", self.uri),
                ));
            }
            pem_certificates(&self.ca_file, "neo4j.ca_file")?;
            Some(std::path::PathBuf::from(&self.ca_file))
        };
        Ok(Some(crate::sink::neo4j::Neo4jConfig {
            uri: self.uri.clone(),
            user: self.user.clone(),
            password,
            ca_file,
        }))
    }
}

#[cfg(feature = "servers")]
fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { key: key.into(), origin: String::new(), message }
}

#[cfg(feature = "servers")]
/// The bytes of the PEM certificate file `path`, checked to hold at least one
/// certificate; an error names `key` and the path.
fn pem_certificates(path: &str, key: &str) -> Result<Vec<u8>, ConfigError> {
    crate::sink::web_security::read_certificates(Path::new(path)).map_err(|e| invalid(key, e.to_string()))?;
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path}: {e}")))
}

#[cfg(feature = "servers")]
/// The bytes of the PEM private key file `path`, checked to hold a key.
fn pem_private_key(path: &str, key: &str) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::{pem::PemObject, PrivateKeyDer};
    let bytes = std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| invalid(key, format!("no private key in {path}: {e}")))?;
    Ok(bytes)
}

/// Where `poirot run` writes anomaly documents; off while `url` is empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchSection {
    pub url: String,
    pub index_prefix: String,
    pub username: String,
    pub password: String,
    /// A file holding the password (a docker secret), instead of `password`.
    pub password_file: String,
    /// An API key as `id:key`.
    pub api_key: String,
    pub api_key_file: String,
    /// PEM CA certificate(s) trusted for the server's certificate, besides the
    /// built-in (Mozilla) roots; only with an `https://` url. The server's name is
    /// the url's host: the client has no name override.
    pub ca_file: String,
    /// PEM client certificate (chain), presented to a server that asks for one;
    /// with `client_key`.
    pub client_cert: String,
    /// PEM private key of `client_cert` (PKCS#8, PKCS#1 or SEC1).
    pub client_key: String,
}

impl Default for ElasticsearchSection {
    fn default() -> Self {
        ElasticsearchSection {
            url: String::new(),
            index_prefix: "poirot-anomalies".into(),
            username: String::new(),
            password: String::new(),
            password_file: String::new(),
            api_key: String::new(),
            api_key_file: String::new(),
            ca_file: String::new(),
            client_cert: String::new(),
            client_key: String::new(),
        }
    }
}

impl ElasticsearchSection {
    #[cfg(feature = "servers")]
    /// The sink settings, reading secret files; `None` when the sink is off.
    pub fn sink_config(&self) -> Result<Option<crate::sink::elasticsearch::EsConfig>, ConfigError> {
        use crate::sink::elasticsearch::{EsAuth, EsConfig, EsTls, Pem};
        if self.url.is_empty() {
            return Ok(None);
        }
        let secret = |value: &str, file: &str, key: &str| -> Result<String, ConfigError> {
            if file.is_empty() {
                return Ok(value.to_owned());
            }
            std::fs::read_to_string(file).map(|s| s.trim_end().to_owned()).map_err(|e| ConfigError::Invalid {
                key: key.into(),
                origin: String::new(),
                message: format!("cannot read {file}: {e}"),
            })
        };
        let password = secret(&self.password, &self.password_file, "elasticsearch.password_file")?;
        let api_key = secret(&self.api_key, &self.api_key_file, "elasticsearch.api_key_file")?;
        let credentials = if !api_key.is_empty() {
            let (id, key) = api_key.split_once(':').ok_or_else(|| ConfigError::Invalid {
                key: "elasticsearch.api_key".into(),
                origin: String::new(),
                message: "an API key is written id:key".into(),
            })?;
            Some(EsAuth::ApiKey { id: id.into(), key: key.into() })
        } else if !self.username.is_empty() {
            Some(EsAuth::Basic { username: self.username.clone(), password })
        } else {
            None
        };
        let https = self.url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        for (key, value) in
            [("elasticsearch.ca_file", &self.ca_file), ("elasticsearch.client_cert", &self.client_cert)]
        {
            if !value.is_empty() && !https {
                return Err(invalid(key, format!("needs an https:// url, not {:?}", self.url)));
            }
        }
        let ca = if self.ca_file.is_empty() {
            None
        } else {
            Some(Pem(pem_certificates(&self.ca_file, "elasticsearch.ca_file")?))
        };
        let identity = match (self.client_cert.is_empty(), self.client_key.is_empty()) {
            (true, true) => None,
            (false, true) => {
                return Err(invalid(
                    "elasticsearch.client_key",
                    "must be set with elasticsearch.client_cert".into(),
                ))
            }
            (true, false) => {
                return Err(invalid(
                    "elasticsearch.client_cert",
                    "must be set with elasticsearch.client_key".into(),
                ))
            }
            (false, false) => {
                let mut pem = pem_certificates(&self.client_cert, "elasticsearch.client_cert")?;
                pem.push(b'\n');
                pem.extend(pem_private_key(&self.client_key, "elasticsearch.client_key")?);
                Some(Pem(pem))
            }
        };
        Ok(Some(EsConfig {
            url: self.url.clone(),
            index_prefix: self.index_prefix.clone(),
            credentials,
            tls: EsTls { ca, identity },
        }))
    }
}

/// The Kafka source of `poirot run`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// `auto` (detected per message), `jaeger-proto`, `jaeger-json` or `otlp-proto`.
    pub encoding: String,
    /// Send undecodable messages to `<topic>-dlq`.
    pub dead_letter: bool,
    /// Re-key spans by trace id through `<group>-repartition`: `auto` (messages
    /// whose key is not the trace id of all their spans), `always` or `never`.
    pub repartition: String,
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
            encoding: "auto".into(),
            dead_letter: true,
            repartition: "auto".into(),
            properties: Default::default(),
        }
    }
}

/// `poirot run` itself, and the protections of the HTTP listener (of `poirot
/// demo` too).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Address of the page, `/metrics`, `/healthz` and `/readyz`.
    pub listen: String,
    /// PEM certificate chain (server certificate first): TLS on when set, with `tls_key`.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// Bearer token for the page and the API (`/`, `/api/*`, `/graph.svg`).
    pub auth_token: String,
    /// A file holding it (a docker secret), instead of `auth_token`.
    pub auth_token_file: String,
    /// Basic credentials for the page and the API, with `auth_password(_file)`.
    pub auth_user: String,
    pub auth_password: String,
    pub auth_password_file: String,
    /// Bearer token for `/metrics`. When no metrics credentials are set, `/metrics`
    /// takes the page's (and is open when the page is).
    pub metrics_token: String,
    pub metrics_token_file: String,
    /// Basic credentials for `/metrics`, with `metrics_password(_file)`.
    pub metrics_user: String,
    pub metrics_password: String,
    pub metrics_password_file: String,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            listen: "127.0.0.1:9464".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            auth_token: String::new(),
            auth_token_file: String::new(),
            auth_user: String::new(),
            auth_password: String::new(),
            auth_password_file: String::new(),
            metrics_token: String::new(),
            metrics_token_file: String::new(),
            metrics_user: String::new(),
            metrics_password: String::new(),
            metrics_password_file: String::new(),
        }
    }
}

#[cfg(feature = "servers")]
/// `value`, or the content of `file` (trimmed) when `file` is set; `key` names `file`.
fn secret_value(value: &str, file: &str, key: &str) -> Result<String, ConfigError> {
    if file.is_empty() {
        return Ok(value.to_owned());
    }
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
        key: key.into(),
        origin: String::new(),
        message: format!("cannot read {file}: {e}"),
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ConfigError::Invalid {
            key: key.into(),
            origin: String::new(),
            message: format!("{file} is empty"),
        });
    }
    Ok(text.to_owned())
}

impl RunSection {
    #[cfg(feature = "servers")]
    /// The listener's protections, reading the secret and certificate files (a
    /// missing or unreadable one is an error naming its key and path).
    pub fn web_security(&self) -> Result<crate::sink::web_security::WebSecurity, ConfigError> {
        use crate::sink::web_security::{self, Access, Secret, TlsError, WebSecurity};
        let access = |prefix: &str,
                      token: &str,
                      token_file: &str,
                      user: &str,
                      password: &str,
                      password_file: &str|
         -> Result<Access, ConfigError> {
            let token = secret_value(token, token_file, &format!("run.{prefix}_token_file"))?;
            let password = secret_value(password, password_file, &format!("run.{prefix}_password_file"))?;
            Ok(Access {
                token: (!token.is_empty()).then(|| Secret::new(token)),
                basic: (!user.is_empty()).then(|| (user.to_owned(), Secret::new(password))),
            })
        };
        let page = access(
            "auth",
            &self.auth_token,
            &self.auth_token_file,
            &self.auth_user,
            &self.auth_password,
            &self.auth_password_file,
        )?;
        let mut metrics = access(
            "metrics",
            &self.metrics_token,
            &self.metrics_token_file,
            &self.metrics_user,
            &self.metrics_password,
            &self.metrics_password_file,
        )?;
        if metrics.is_open() {
            metrics = page.clone();
        }
        let tls = if self.tls_cert.is_empty() {
            None
        } else {
            let config = web_security::server_config(Path::new(&self.tls_cert), Path::new(&self.tls_key))
                .map_err(|e| {
                    let key = match e {
                        TlsError::Key { .. } => "run.tls_key",
                        _ => "run.tls_cert",
                    };
                    ConfigError::Invalid { key: key.into(), origin: String::new(), message: e.to_string() }
                })?;
            Some(std::sync::Arc::new(config))
        };
        Ok(WebSecurity { tls, page, metrics })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssemblySection {
    #[serde(deserialize_with = "duration")]
    pub inactivity_gap: Duration,
    #[serde(deserialize_with = "duration")]
    pub out_of_orderness: Duration,
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    pub max_spans_per_trace: usize,
    pub max_buffered_spans: usize,
}

impl Default for AssemblySection {
    fn default() -> Self {
        AssemblySection {
            inactivity_gap: Duration::from_secs(10),
            out_of_orderness: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_spans_per_trace: 50_000,
            max_buffered_spans: 2_000_000,
        }
    }
}

/// Anomaly detection, and the caps on every anomaly document. What a cap cut is
/// counted in the document's `truncated` object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalySection {
    pub min_reentries: u32,
    /// Most involved span ids listed in `evidence.span_ids`, and most spans in the
    /// evidence snapshot. 200 shows a whole ordinary trace; a reference cycle
    /// through 100,000 spans is still one readable document.
    pub max_evidence_spans: usize,
    /// Most entries of `missing_span_ids`, `chain` and `cycle`, and most references
    /// shown per snapshot span. 64 is more than a person reads in one document
    /// (and what `chain` always kept); a span with a million broken links lists
    /// 64 of them and counts the rest.
    pub max_list_entries: usize,
    /// Longest `summary`, in bytes: a line for a log, an alert or a Kibana column.
    /// 1024 holds the longest summary built from three names at the name limit.
    pub max_summary_bytes: usize,
    /// Largest document, in bytes of JSON. 64 KiB keeps a bulk request of many
    /// documents far below Elasticsearch's request limit and the page's snapshot
    /// small; every field but the evidence snapshot is bounded by the caps above
    /// and fits in it, and the snapshot takes spans only while the document fits.
    pub max_document_bytes: usize,
}

impl Default for AnomalySection {
    fn default() -> Self {
        let d = crate::analysis::DocLimits::default();
        AnomalySection {
            min_reentries: 2,
            max_evidence_spans: d.max_evidence_spans,
            max_list_entries: d.max_list_entries,
            max_summary_bytes: d.max_summary_bytes,
            max_document_bytes: d.max_document_bytes,
        }
    }
}

impl AnomalySection {
    pub fn limits(&self) -> crate::analysis::DocLimits {
        crate::analysis::DocLimits {
            max_evidence_spans: self.max_evidence_spans,
            max_list_entries: self.max_list_entries,
            max_summary_bytes: self.max_summary_bytes,
            max_document_bytes: self.max_document_bytes,
        }
    }
}

/// The RED metrics.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Most label sets (service, operation, kind, status); past it spans count in
    /// the `__overflow__` series.
    pub max_series: usize,
    /// Most distinct names (services, operations, destinations) kept; past it new
    /// names count as `__overflow__`.
    pub max_names: usize,
    /// Longest service, operation, destination (and `peer.service`, `db.system`)
    /// name kept, in bytes; a longer one is cut where it enters, at a character
    /// boundary, ending with `…[truncated]` (counted in
    /// `poirot_truncated_names_total{kind}`). Every label value, Neo4j node and
    /// anomaly field poirot writes is such a name or its own vocabulary, so this
    /// bounds them all. The default, [`crate::model::DEFAULT_MAX_NAME_BYTES`]
    /// (256), keeps real names whole (routes, gRPC methods, topics are far
    /// shorter) and makes a name that is really a payload cost 256 bytes per label.
    pub max_name_bytes: usize,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            max_series: 10_000,
            max_names: 100_000,
            max_name_bytes: crate::model::DEFAULT_MAX_NAME_BYTES,
        }
    }
}

/// How the simulated S3 download behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum S3Behaviour {
    /// Always succeeds in the same time.
    #[serde(rename = "CONST")]
    Const,
    /// Succeeds with a random, long-tailed duration.
    #[serde(rename = "PROBABILISTIC")]
    Probabilistic,
    /// Fails: the sandbox's result message is lost.
    #[serde(rename = "ERROR")]
    Error,
}

impl S3Behaviour {
    pub fn parse(s: &str) -> Option<S3Behaviour> {
        match s {
            "CONST" => Some(S3Behaviour::Const),
            "PROBABILISTIC" => Some(S3Behaviour::Probabilistic),
            "ERROR" => Some(S3Behaviour::Error),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSection {
    pub listen: String,
    pub publisher_rate: f64,
    pub s3_behaviour: S3Behaviour,
    pub message_loss_rate: f64,
    pub ping_pong_rate: f64,
}

impl Default for DemoSection {
    fn default() -> Self {
        DemoSection {
            listen: "127.0.0.1:8080".into(),
            publisher_rate: 5.0,
            s3_behaviour: S3Behaviour::Const,
            message_loss_rate: 0.02,
            ping_pong_rate: 0.02,
        }
    }
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
fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }
    let raw = std::collections::BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Text(t) => t,
                Scalar::Integer(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Seconds(f64),
    }
    let raw = Raw::deserialize(d)?;
    let text = match &raw {
        Raw::Text(t) => t.clone(),
        Raw::Seconds(v) => format!("{v}"),
    };
    parse_duration(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} (write it like \"10s\", \"500ms\" or \"2m\")"
        ))
    })
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
                    message: e.to_string().trim().replace('\n', " "),
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

    fn validate(&self) -> Result<(), (&'static str, String)> {
        let a = &self.assembly;
        if a.inactivity_gap.is_zero() {
            return Err(("assembly.inactivity_gap", "must be greater than zero".into()));
        }
        if a.idle_timeout.is_zero() {
            return Err(("assembly.idle_timeout", "must be greater than zero".into()));
        }
        if a.max_spans_per_trace == 0 {
            return Err(("assembly.max_spans_per_trace", "must be at least 1".into()));
        }
        if a.max_buffered_spans < a.max_spans_per_trace {
            return Err(("assembly.max_buffered_spans", "must be at least max_spans_per_trace".into()));
        }
        if self.anomalies.min_reentries == 0 {
            return Err(("anomalies.min_reentries", "must be at least 1".into()));
        }
        let marker = crate::model::text::TRUNCATION_MARKER.len();
        let m = &self.metrics;
        if m.max_name_bytes < MIN_NAME_BYTES {
            return Err((
                "metrics.max_name_bytes",
                format!("must be at least {MIN_NAME_BYTES} (the cut marker alone is {marker} bytes)"),
            ));
        }
        let an = &self.anomalies;
        for (key, v) in [
            ("anomalies.max_evidence_spans", an.max_evidence_spans),
            ("anomalies.max_list_entries", an.max_list_entries),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        if an.max_summary_bytes < MIN_NAME_BYTES {
            return Err(("anomalies.max_summary_bytes", format!("must be at least {MIN_NAME_BYTES}")));
        }
        // The fields no cap shortens (three names, the summary, ids and times)
        // must fit, even with every character escaped by JSON (up to 6 bytes).
        let floor = 6 * (3 * m.max_name_bytes + an.max_summary_bytes) + 1024;
        if an.max_document_bytes < floor {
            return Err((
                "anomalies.max_document_bytes",
                format!(
                    "must be at least {floor}: 6 × (3 × metrics.max_name_bytes + anomalies.max_summary_bytes) + 1024"
                ),
            ));
        }
        let d = &self.demo;
        if !(d.publisher_rate > 0.0 && d.publisher_rate <= 10_000.0) {
            return Err((
                "demo.publisher_rate",
                format!("{} is not in (0, 10000] workflows per second", d.publisher_rate),
            ));
        }
        for (key, v) in
            [("demo.message_loss_rate", d.message_loss_rate), ("demo.ping_pong_rate", d.ping_pong_rate)]
        {
            if !(0.0..=1.0).contains(&v) {
                return Err((key, format!("{v} is not a probability in [0, 1]")));
            }
        }
        if d.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(("demo.listen", format!("{:?} is not an address like 127.0.0.1:8080", d.listen)));
        }
        if self.run.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "run.listen",
                format!("{:?} is not an address like 127.0.0.1:9464", self.run.listen),
            ));
        }
        let r = &self.run;
        match (r.tls_cert.is_empty(), r.tls_key.is_empty()) {
            (false, true) => return Err(("run.tls_key", "must be set with run.tls_cert".into())),
            (true, false) => return Err(("run.tls_cert", "must be set with run.tls_key".into())),
            _ => {}
        }
        for (value, file, key) in [
            (&r.auth_token, &r.auth_token_file, "run.auth_token_file"),
            (&r.auth_password, &r.auth_password_file, "run.auth_password_file"),
            (&r.metrics_token, &r.metrics_token_file, "run.metrics_token_file"),
            (&r.metrics_password, &r.metrics_password_file, "run.metrics_password_file"),
        ] {
            if !value.is_empty() && !file.is_empty() {
                let value_key = key.trim_end_matches("_file");
                return Err((key, format!("set either {value_key} or {key}, not both")));
            }
        }
        for (user, password, file, user_key, password_key) in [
            (&r.auth_user, &r.auth_password, &r.auth_password_file, "run.auth_user", "run.auth_password"),
            (
                &r.metrics_user,
                &r.metrics_password,
                &r.metrics_password_file,
                "run.metrics_user",
                "run.metrics_password",
            ),
        ] {
            let has_password = !password.is_empty() || !file.is_empty();
            if !user.is_empty() && !has_password {
                return Err((
                    password_key,
                    format!("{user_key} needs {password_key} or {password_key}_file"),
                ));
            }
            if user.is_empty() && has_password {
                return Err((user_key, format!("{password_key} needs {user_key}")));
            }
            if user.contains(':') {
                return Err((user_key, "a basic-auth user name cannot contain ':'".into()));
            }
        }
        let t = &self.self_tracing;
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return Err((
                "self_tracing.sample_ratio",
                format!("{} is not a ratio in [0, 1]", t.sample_ratio),
            ));
        }
        if !t.endpoint.is_empty() && !t.endpoint.starts_with("http://") && !t.endpoint.starts_with("https://")
        {
            return Err(("self_tracing.endpoint", format!("{:?} is not an http(s) URL", t.endpoint)));
        }
        let k = &self.kafka;
        if !["auto", "jaeger-proto", "jaeger-json", "otlp-proto", "otlp-json"].contains(&k.encoding.as_str())
        {
            return Err((
                "kafka.encoding",
                format!("{:?} is not auto, jaeger-proto, jaeger-json, otlp-proto or otlp-json", k.encoding),
            ));
        }
        if !["auto", "always", "never"].contains(&k.repartition.as_str()) {
            return Err(("kafka.repartition", format!("{:?} is not auto, always or never", k.repartition)));
        }
        for (key, v) in [("kafka.brokers", &k.brokers), ("kafka.topic", &k.topic), ("kafka.group", &k.group)]
        {
            if v.trim().is_empty() {
                return Err((key, "must not be empty".into()));
            }
        }
        Ok(())
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
            Some(val @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) => val,
            _ => toml::Value::String(v.to_owned()),
        },
        Err(_) => toml::Value::String(v.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::load(None, env(&[])).expect("defaults are valid");
        assert_eq!(c.assembly.inactivity_gap, Duration::from_secs(10));
        assert_eq!(c.assembly.out_of_orderness, Duration::from_secs(5));
        assert_eq!(c.anomalies.min_reentries, 2);
        assert_eq!(c.metrics.max_name_bytes, 256);
        assert_eq!(c.anomalies.limits(), crate::analysis::DocLimits::default());
        assert_eq!(c.anomalies.max_document_bytes, 65_536);
    }

    #[test]
    fn caps_are_configurable_and_checked() {
        let c = Config::load(
            None,
            env(&[("POIROT_METRICS__MAX_NAME_BYTES", "64"), ("POIROT_ANOMALIES__MAX_LIST_ENTRIES", "10")]),
        )
        .expect("valid");
        assert_eq!((c.metrics.max_name_bytes, c.anomalies.max_list_entries), (64, 10));
        let e = Config::load(None, env(&[("POIROT_METRICS__MAX_NAME_BYTES", "8")])).expect_err("too small");
        assert!(e.to_string().contains("metrics.max_name_bytes"), "{e}");
        let e = Config::load(None, env(&[("POIROT_ANOMALIES__MAX_DOCUMENT_BYTES", "4096")]))
            .expect_err("names and summary would not fit");
        assert!(e.to_string().contains("anomalies.max_document_bytes"), "{e}");
        let e = Config::load(None, env(&[("POIROT_ANOMALIES__MAX_EVIDENCE_SPANS", "0")])).expect_err("zero");
        assert!(e.to_string().contains("anomalies.max_evidence_spans"), "{e}");
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("poirot.toml");
        std::fs::write(&p, "[assembly]\ninactivity_gap = \"20s\"\nmax_spans_per_trace = 10\n")
            .expect("write");
        let c = Config::load(
            Some(&p),
            env(&[
                ("POIROT_ASSEMBLY__INACTIVITY_GAP", "2s"),
                ("SIMULATE_S3_BEHAVIOUR", "ERROR"),
                ("HOME", "/x"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.assembly.inactivity_gap, Duration::from_secs(2));
        assert_eq!(c.assembly.max_spans_per_trace, 10);
        assert_eq!(c.demo.s3_behaviour, S3Behaviour::Error);
    }

    #[test]
    fn errors_name_the_bad_key() {
        let e = Config::load(None, env(&[("POIROT_ASSEMBLY__INACTIVITY_GAP", "soon")]))
            .expect_err("bad duration");
        let msg = e.to_string();
        assert!(msg.contains("assembly.inactivity_gap"), "{msg}");
        assert!(msg.contains("POIROT_ASSEMBLY__INACTIVITY_GAP"), "{msg}");
        let e = Config::load(None, env(&[("POIROT_ASSEMBLY__GAP", "1s")])).expect_err("unknown key");
        assert!(e.to_string().contains("unknown field `gap`"), "{e}");
        let e = Config::load(None, env(&[("POIROT_DEMO__PING_PONG_RATE", "1.5")])).expect_err("range");
        assert!(e.to_string().contains("demo.ping_pong_rate"), "{e}");
        let e = Config::load(None, env(&[("SIMULATE_S3_BEHAVIOUR", "SOMETIMES")])).expect_err("variant");
        assert!(e.to_string().contains("demo.s3_behaviour"), "{e}");
    }

    #[test]
    fn listener_settings_are_checked_at_start() {
        let e = Config::load(None, env(&[("POIROT_RUN__TLS_CERT", "/x/cert.pem")])).expect_err("no key");
        assert!(e.to_string().contains("run.tls_key"), "{e}");
        let e = Config::load(None, env(&[("POIROT_RUN__AUTH_USER", "alice")])).expect_err("no password");
        assert!(e.to_string().contains("run.auth_password"), "{e}");
        let e = Config::load(
            None,
            env(&[("POIROT_RUN__METRICS_TOKEN", "t"), ("POIROT_RUN__METRICS_TOKEN_FILE", "/f")]),
        )
        .expect_err("both");
        assert!(e.to_string().contains("not both"), "{e}");

        let missing = "/nonexistent/poirot/metrics_token";
        let c = Config::load(None, env(&[("POIROT_RUN__METRICS_TOKEN_FILE", missing)])).expect("valid");
        let e = c.run.web_security().expect_err("missing file");
        let line = e.to_string();
        assert!(line.contains("run.metrics_token_file") && line.contains(missing), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn sink_tls_files_are_checked_at_start() {
        let missing = "/nonexistent/poirot/ca.pem";
        let c = Config::load(
            None,
            env(&[("POIROT_NEO4J__URI", "bolt+s://127.0.0.1:7687"), ("POIROT_NEO4J__CA_FILE", missing)]),
        )
        .expect("valid");
        let line = c.neo4j.sink_config().expect_err("missing CA").to_string();
        assert!(line.contains("neo4j.ca_file") && line.contains(missing), "{line}");
        assert!(!line.contains('\n'), "{line}");
        let c = Config::load(
            None,
            env(&[("POIROT_NEO4J__URI", "127.0.0.1:7687"), ("POIROT_NEO4J__CA_FILE", missing)]),
        )
        .expect("valid");
        let line = c.neo4j.sink_config().expect_err("plain bolt").to_string();
        assert!(line.contains("neo4j.ca_file") && line.contains("bolt+s://"), "{line}");

        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").expect("write");
        let junk = junk.display().to_string();
        let es = |pairs: &[(&str, &str)]| {
            let mut all = vec![("POIROT_ELASTICSEARCH__URL", "https://127.0.0.1:9200")];
            all.extend_from_slice(pairs);
            Config::load(None, env(&all)).expect("valid").elasticsearch.sink_config().map(|_| ())
        };
        let line = es(&[("POIROT_ELASTICSEARCH__CA_FILE", &junk)]).expect_err("no certificate").to_string();
        assert!(line.contains("elasticsearch.ca_file") && line.contains(&junk), "{line}");
        let line = es(&[("POIROT_ELASTICSEARCH__CLIENT_CERT", missing)]).expect_err("no key").to_string();
        assert!(line.contains("elasticsearch.client_key"), "{line}");
        let line = es(&[
            ("POIROT_ELASTICSEARCH__CLIENT_CERT", missing),
            ("POIROT_ELASTICSEARCH__CLIENT_KEY", &junk),
        ])
        .expect_err("missing certificate")
        .to_string();
        assert!(line.contains("elasticsearch.client_cert") && line.contains(missing), "{line}");
        let c = Config::load(
            None,
            env(&[
                ("POIROT_ELASTICSEARCH__URL", "http://127.0.0.1:9200"),
                ("POIROT_ELASTICSEARCH__CA_FILE", &junk),
            ]),
        )
        .expect("valid");
        let line = c.elasticsearch.sink_config().expect_err("plain http").to_string();
        assert!(line.contains("elasticsearch.ca_file") && line.contains("https://"), "{line}");
    }

    #[test]
    fn metrics_take_the_page_credentials_unless_they_have_their_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "page-token\n").expect("write");
        let page_file = token.display().to_string();
        let c = Config::load(None, env(&[("POIROT_RUN__AUTH_TOKEN_FILE", &page_file)])).expect("valid");
        let s = c.run.web_security().expect("readable");
        assert!(s.page.allows(Some(b"Bearer page-token")), "trimmed");
        assert!(!s.metrics.allows(None));
        assert!(s.metrics.allows(Some(b"Bearer page-token")));
        let c = Config::load(
            None,
            env(&[("POIROT_RUN__AUTH_TOKEN_FILE", &page_file), ("POIROT_RUN__METRICS_TOKEN", "scrape")]),
        )
        .expect("valid");
        let s = c.run.web_security().expect("readable");
        assert!(s.metrics.allows(Some(b"Bearer scrape")));
        assert!(!s.metrics.allows(Some(b"Bearer page-token")));
        assert!(!s.page.allows(Some(b"Bearer scrape")));
        let open = Config::default().run.web_security().expect("nothing to read");
        assert!(open.tls.is_none() && open.page.is_open() && open.metrics.is_open());
        std::fs::write(&token, "\n").expect("write");
        let e = c.run.web_security().expect_err("empty token file");
        assert!(e.to_string().contains("is empty"), "{e}");
    }

    #[test]
    fn kafka_properties_come_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("poirot.toml");
        std::fs::write(
            &p,
            "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"linger.ms\" = 5\n\"enable.idempotence\" = true\n",
        )
        .expect("write");
        let c = Config::load(
            Some(&p),
            env(&[
                ("POIROT_KAFKA__PROPERTIES__SASL_MECHANISM", "SCRAM-SHA-512"),
                ("POIROT_KAFKA__PROPERTIES__SASL_PASSWORD", "1234"),
                ("POIROT_KAFKA__PROPERTIES__ssl.ca.location", "/ca.pem"),
                ("POIROT_KAFKA__TOPIC", "spans"),
            ]),
        )
        .expect("valid");
        let props: Vec<(&str, &str)> =
            c.kafka.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            props,
            [
                ("enable.idempotence", "true"),
                ("linger.ms", "5"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.password", "1234"),
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.location", "/ca.pem"),
            ]
        );
        assert_eq!(c.kafka.topic, "spans");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1 fortnight"), None);
    }
}
