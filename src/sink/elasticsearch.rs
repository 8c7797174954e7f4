//! Anomaly documents to Elasticsearch (7.x, 8.x) or OpenSearch (2.x) with the
//! official client.
//!
//! - Daily indices `<prefix>-YYYY.MM.DD` by the anomaly's event time, with an
//!   index template created at start (keyword ids, dates, text summary, the
//!   `truncated` counts as longs; the evidence is stored but not indexed).
//! - `_id` = kind, trace id, span id (and the loop for recursive chains), so a
//!   replay or a re-read after a crash overwrites instead of duplicating.
//! - Bulk writes; a whole request or single items answered 429 or 5xx are retried
//!   with backoff until they succeed or the pipeline stops. Items rejected for
//!   good (4xx) are counted and logged.

use super::documents::{document_id, index_name, template};
use super::process::{ProcessMetrics, SinkMetrics};
use crate::analysis::Anomaly;
use crate::telemetry::health::{Component, Health};
use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderValue, AUTHORIZATION};
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::Url;
use elasticsearch::indices::IndicesPutIndexTemplateParts;
use elasticsearch::{BulkParts, Elasticsearch};
use prometheus_client::metrics::counter::Counter;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Longest wait between two tries while the server is down: recovery comes at most this late.
const RETRY_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("elasticsearch url {0:?} is not valid: {1}")]
    Url(String, String),
    #[error("elasticsearch client: {0}")]
    Client(String),
    #[error("elasticsearch answered {status} to {what}: {body}")]
    Status { what: &'static str, status: u16, body: String },
    #[error("cannot read the elasticsearch secret {path}: {source}")]
    Secret { path: String, source: std::io::Error },
    /// The TLS handshake failed (untrusted or wrong certificate): a setting to
    /// fix, not an outage to wait out.
    #[error("elasticsearch: {0}")]
    Tls(String),
}

impl EsError {
    /// A failed request: the TLS handshake, or the client's error with its causes
    /// (reqwest's own message leaves them out).
    fn request(e: elasticsearch::Error) -> EsError {
        if let Some(detail) = super::tls::handshake_failure(&e, "elasticsearch.ca_file") {
            return EsError::Tls(detail);
        }
        let mut line = e.to_string();
        let mut next = std::error::Error::source(&e);
        while let Some(cause) = next {
            let text = cause.to_string();
            if !line.contains(&text) {
                line = format!("{line}: {text}");
            }
            next = cause.source();
        }
        EsError::Client(line)
    }
}

impl EsError {
    /// Whether trying again later may help (overload, outage), or the request is wrong.
    pub fn retryable(&self) -> bool {
        match self {
            EsError::Client(_) => true,
            EsError::Status { status, .. } => *status == 429 || *status >= 500,
            EsError::Url(..) | EsError::Secret { .. } | EsError::Tls(_) => false,
        }
    }

    /// Whether the server refused poirot's credentials (401) or rights (403), or
    /// the TLS handshake failed: retrying cannot help, and dropping the documents
    /// would lose them.
    pub fn refused(&self) -> bool {
        matches!(self, EsError::Status { status: 401 | 403, .. } | EsError::Tls(_))
    }
}

#[derive(Clone, Debug, Default)]
pub struct EsConfig {
    pub url: String,
    pub index_prefix: String,
    pub credentials: Option<EsAuth>,
    pub tls: EsTls,
}

/// TLS settings beyond the built-in roots, as PEM read at start.
#[derive(Clone, Debug, Default)]
pub struct EsTls {
    /// CA certificate(s) to trust.
    pub ca: Option<Pem>,
    /// The client certificate (chain) followed by its private key.
    pub identity: Option<Pem>,
}

/// PEM bytes; never printed (a private key may be among them).
#[derive(Clone, Default)]
pub struct Pem(pub Vec<u8>);

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pem({} bytes)", self.0.len())
    }
}

#[derive(Clone, Debug)]
pub enum EsAuth {
    Basic {
        username: String,
        password: String,
    },
    /// An API key as `id:key`.
    ApiKey {
        id: String,
        key: String,
    },
}

pub struct EsSink {
    client: Elasticsearch,
    prefix: String,
    rt: tokio::runtime::Runtime,
    pending: Vec<Anomaly>,
    metrics: SinkMetrics,
    indexed: Counter,
    rejected: Counter,
    /// Where its state is reported for `/readyz`.
    health: Health,
}

/// The `Authorization` header of basic or API-key credentials, marked sensitive.
fn authorization(c: &Credentials) -> Result<HeaderValue, EsError> {
    use base64::Engine as _;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let value = match c {
        Credentials::Basic(user, password) => format!("Basic {}", b64(format!("{user}:{password}"))),
        Credentials::ApiKey(id, key) => format!("ApiKey {}", b64(format!("{id}:{key}"))),
        _ => return Err(EsError::Client("unsupported credentials with a client certificate".into())),
    };
    let mut header = HeaderValue::from_str(&value)
        .map_err(|_| EsError::Client("the credentials are not valid in an HTTP header".into()))?;
    header.set_sensitive(true);
    Ok(header)
}

impl EsSink {
    /// Connects and puts the index template; counts into `metrics`. While the
    /// server cannot be reached it tries again with backoff until `stop`; a
    /// refused credential ends it at once.
    pub fn connect(
        config: &EsConfig,
        metrics: &ProcessMetrics,
        health: &Health,
        stop: &AtomicBool,
    ) -> Result<EsSink, EsError> {
        health.register(Component::Elasticsearch);
        let url = Url::parse(&config.url).map_err(|e| EsError::Url(config.url.clone(), e.to_string()))?;
        let mut builder =
            TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(Duration::from_secs(30));
        let credentials = match &config.credentials {
            Some(EsAuth::Basic { username, password }) => {
                Some(Credentials::Basic(username.clone(), password.clone()))
            }
            Some(EsAuth::ApiKey { id, key }) => Some(Credentials::ApiKey(id.clone(), key.clone())),
            None => None,
        };
        if let Some(ca) = &config.tls.ca {
            let certs = Certificate::from_pem(&ca.0).map_err(|e| EsError::Client(format!("ca_file: {e}")))?;
            builder = builder.cert_validation(CertificateValidation::Full(certs));
        }
        match (&config.tls.identity, credentials) {
            // The client holds one credential: a certificate as well as a password
            // or key goes as a default Authorization header.
            (Some(identity), Some(c)) => {
                builder = builder
                    .auth(Credentials::Certificate(ClientCertificate::Pem(identity.0.clone())))
                    .header(AUTHORIZATION, authorization(&c)?);
            }
            (Some(identity), None) => {
                builder = builder.auth(Credentials::Certificate(ClientCertificate::Pem(identity.0.clone())))
            }
            (None, Some(c)) => builder = builder.auth(c),
            (None, None) => {}
        }
        let transport = builder.build().map_err(|e| EsError::Client(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EsError::Client(e.to_string()))?;
        let sink = EsSink {
            client: Elasticsearch::new(transport),
            prefix: config.index_prefix.clone(),
            rt,
            pending: Vec::new(),
            metrics: metrics.sink("elasticsearch"),
            indexed: metrics.es_indexed.clone(),
            rejected: metrics.es_rejected.clone(),
            health: health.clone(),
        };
        let mut backoff = Duration::from_millis(500);
        loop {
            match sink.put_template() {
                Ok(()) => {
                    health.ok(Component::Elasticsearch);
                    return Ok(sink);
                }
                Err(e) if !e.retryable() || stop.load(Ordering::Relaxed) => {
                    health.failing(Component::Elasticsearch, e.to_string());
                    return Err(e);
                }
                Err(e) => {
                    health.failing(Component::Elasticsearch, format!("cannot reach {}: {e}", config.url));
                    tracing::warn!(
                        "cannot reach elasticsearch at {}: {e}; trying again in {backoff:?}",
                        config.url
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }

    fn put_template(&self) -> Result<(), EsError> {
        let name = self.prefix.clone();
        self.rt.block_on(async {
            let r = self
                .client
                .indices()
                .put_index_template(IndicesPutIndexTemplateParts::Name(&name))
                .body(template(&self.prefix))
                .send()
                .await
                .map_err(EsError::request)?;
            let status = r.status_code().as_u16();
            if status >= 300 {
                let body = r.text().await.unwrap_or_default();
                return Err(EsError::Status { what: "the index template", status, body });
            }
            Ok(())
        })
    }

    pub fn push(&mut self, a: Anomaly) {
        self.pending.push(a);
    }

    /// Documents waiting to be written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// One bulk request for the pending documents; keeps those to retry.
    fn bulk_once(&mut self) -> Result<(), EsError> {
        let docs = std::mem::take(&mut self.pending);
        let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(docs.len() * 2);
        for a in &docs {
            body.push(
                json!({"index": {"_index": index_name(&self.prefix, a), "_id": document_id(a)}}).into(),
            );
            body.push(serde_json::to_value(a).unwrap_or(Value::Null).into());
        }
        let sent = self.rt.block_on(async {
            let r = self.client.bulk(BulkParts::None).body(body).send().await.map_err(EsError::request)?;
            let status = r.status_code().as_u16();
            if status >= 300 {
                let body = r.text().await.unwrap_or_default();
                return Err(EsError::Status { what: "a bulk request", status, body });
            }
            r.json::<Value>().await.map_err(|e| EsError::Client(e.to_string()))
        });
        let answer = match sent {
            Ok(v) => v,
            Err(e) => {
                self.pending = docs;
                return Err(e);
            }
        };
        let items = answer["items"].as_array().cloned().unwrap_or_default();
        for (a, item) in docs.into_iter().zip(items.iter().chain(std::iter::repeat(&Value::Null))) {
            let status = item["index"]["status"].as_u64().unwrap_or(0);
            match status {
                200..=299 => {
                    self.indexed.inc();
                }
                429 | 500..=599 | 0 => self.pending.push(a),
                _ => {
                    self.rejected.inc();
                    tracing::warn!(
                        "elasticsearch rejected anomaly {}: {}",
                        document_id(&a),
                        item["index"]["error"]
                    );
                }
            }
        }
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(EsError::Status {
                what: "some bulk items",
                status: 429,
                body: format!("{} to retry", self.pending.len()),
            })
        }
    }

    /// Writes everything pending, retrying with backoff while `stop` is not set.
    /// `Ok(false)` when it stopped with documents still pending; an error when the
    /// server refused the credentials (the documents stay pending: nothing is
    /// committed past them).
    pub fn flush(&mut self, stop: &AtomicBool) -> Result<bool, EsError> {
        let mut backoff = Duration::from_millis(100);
        let started = std::time::Instant::now();
        while self.has_pending() {
            match self.bulk_once() {
                Ok(()) => {
                    self.metrics.written(started.elapsed());
                    self.health.ok(Component::Elasticsearch);
                    break;
                }
                Err(e) if e.refused() => {
                    self.metrics.failures.inc();
                    self.health.failing(Component::Elasticsearch, e.to_string());
                    return Err(e);
                }
                Err(e) if e.retryable() && !stop.load(Ordering::Relaxed) => {
                    self.metrics.retried();
                    self.health.failing(Component::Elasticsearch, e.to_string());
                    tracing::warn!("{e}; retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    self.metrics.failures.inc();
                    tracing::warn!("{e}");
                    if !e.retryable() {
                        self.pending.clear();
                    }
                    return Ok(!self.has_pending());
                }
            }
        }
        Ok(true)
    }
}
