//! The sinks' sections: Neo4j, Elasticsearch, self-tracing.

use serde::Deserialize;
use std::time::Duration;

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

/// Service dependencies as Jaeger's own dependency documents, in the
/// `[elasticsearch]` server, where Jaeger's query service reads them for its
/// "System Architecture" view; off unless `enabled`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JaegerDependenciesSection {
    pub enabled: bool,
    /// Jaeger's `index_prefix` (empty: indices `jaeger-dependencies-<date>`;
    /// `prod`: `prod-jaeger-dependencies-<date>`).
    pub index_prefix: String,
    /// The event time one document covers (per input partition). Longer buckets
    /// mean fewer documents for Jaeger to read (it reads at most its
    /// `max_doc_count`, 10,000 by default), shorter ones a smaller re-read after a
    /// crash: a bucket's records are committed once it is written.
    #[serde(deserialize_with = "super::duration")]
    pub bucket: Duration,
    /// What separates the date's parts in the index name (Jaeger's
    /// `index_date_separator`).
    pub date_separator: String,
}

impl Default for JaegerDependenciesSection {
    fn default() -> Self {
        JaegerDependenciesSection {
            enabled: false,
            index_prefix: String::new(),
            bucket: Duration::from_secs(300),
            date_separator: "-".into(),
        }
    }
}

/// The live page of `poirot run` and `poirot demo`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiSection {
    /// A Jaeger UI the page links trace ids to (`<jaeger_url>/trace/<id>`), e.g.
    /// `http://jaeger-query:16686`; empty: no links.
    pub jaeger_url: String,
}
