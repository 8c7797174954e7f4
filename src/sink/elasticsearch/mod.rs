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

mod bulk;
mod jaeger;

pub use jaeger::JaegerDependencies;

use super::documents::template;
use super::retry::{retry, Backoff, Classify, Fault, Retried};
use super::{Closing, Round, Sink, SinkError, Written};
use crate::config::{ConfigError, ElasticsearchSection};
use crate::telemetry::events::{SinkEvent, SinkTelemetry};
use crate::telemetry::health::{Component, Health};
use crate::telemetry::process::ProcessMetrics;
use crate::telemetry::work;
use bulk::Doc;
use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderValue, AUTHORIZATION};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::Url;
use elasticsearch::indices::IndicesPutIndexTemplateParts;
use elasticsearch::Elasticsearch;
use opentelemetry::KeyValue;
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::AtomicBool;
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

impl Classify for EsError {
    /// Overload and outages are waited out; refused credentials or rights (401,
    /// 403), a failed TLS handshake or a bad setting are the user's to fix; any
    /// other 4xx answer to a whole request means poirot sent something wrong.
    fn fault(&self) -> Fault {
        match self {
            EsError::Client(_) => Fault::External,
            EsError::Status { status, .. } if *status == 429 || *status >= 500 => Fault::External,
            EsError::Status { status: 401 | 403, .. } => Fault::User,
            EsError::Status { .. } => Fault::Internal,
            EsError::Url(..) | EsError::Secret { .. } | EsError::Tls(_) => Fault::User,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct EsConfig {
    pub url: String,
    pub index_prefix: String,
    pub credentials: Option<EsAuth>,
    pub tls: EsTls,
    /// Jaeger's dependency documents too, when on.
    pub jaeger: Option<JaegerDependencies>,
}

impl EsConfig {
    /// The sink's settings from `[elasticsearch]`, reading secret files and
    /// checking the TLS files; `None` when the sink is off.
    pub fn from_section(section: &ElasticsearchSection) -> Result<Option<EsConfig>, ConfigError> {
        if section.url.is_empty() {
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
        let password = secret(&section.password, &section.password_file, "elasticsearch.password_file")?;
        let api_key = secret(&section.api_key, &section.api_key_file, "elasticsearch.api_key_file")?;
        let credentials = if !api_key.is_empty() {
            let (id, key) = api_key.split_once(':').ok_or_else(|| ConfigError::Invalid {
                key: "elasticsearch.api_key".into(),
                origin: String::new(),
                message: "an API key is written id:key".into(),
            })?;
            Some(EsAuth::ApiKey { id: id.into(), key: key.into() })
        } else if !section.username.is_empty() {
            Some(EsAuth::Basic { username: section.username.clone(), password })
        } else {
            None
        };
        let https = section.url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        for (key, value) in
            [("elasticsearch.ca_file", &section.ca_file), ("elasticsearch.client_cert", &section.client_cert)]
        {
            if !value.is_empty() && !https {
                return Err(crate::config::invalid(
                    key,
                    format!("needs an https:// url, not {:?}", section.url),
                ));
            }
        }
        let ca = if section.ca_file.is_empty() {
            None
        } else {
            Some(Pem(super::tls::pem_certificates(&section.ca_file, "elasticsearch.ca_file")?))
        };
        let identity = match (section.client_cert.is_empty(), section.client_key.is_empty()) {
            (true, true) => None,
            (false, true) => {
                return Err(crate::config::invalid(
                    "elasticsearch.client_key",
                    "must be set with elasticsearch.client_cert".into(),
                ))
            }
            (true, false) => {
                return Err(crate::config::invalid(
                    "elasticsearch.client_cert",
                    "must be set with elasticsearch.client_key".into(),
                ))
            }
            (false, false) => {
                let mut pem =
                    super::tls::pem_certificates(&section.client_cert, "elasticsearch.client_cert")?;
                pem.push(b'\n');
                pem.extend(super::tls::pem_private_key(&section.client_key, "elasticsearch.client_key")?);
                Some(Pem(pem))
            }
        };
        Ok(Some(EsConfig {
            url: section.url.clone(),
            index_prefix: section.index_prefix.clone(),
            credentials,
            tls: EsTls { ca, identity },
            jaeger: None,
        }))
    }
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
    jaeger: Option<JaegerDependencies>,
    rt: tokio::runtime::Runtime,
    pending: Vec<Doc>,
    /// Write counters, readiness and log lines.
    telemetry: SinkTelemetry,
    indexed: Counter,
    rejected: Counter,
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
        let telemetry = SinkTelemetry::new(
            "elasticsearch",
            Component::Elasticsearch,
            metrics.sink("elasticsearch"),
            health.clone(),
        );
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
            jaeger: config.jaeger.clone(),
            rt,
            pending: Vec::new(),
            telemetry: telemetry.clone(),
            indexed: metrics.es_indexed.clone(),
            rejected: metrics.es_rejected.clone(),
        };
        let connecting = retry(
            Backoff::new(Duration::from_millis(500), RETRY_MAX),
            stop,
            || sink.put_template(),
            |e, delay| telemetry.emit(SinkEvent::Unreachable { address: &config.url, error: e, delay }),
        );
        match connecting {
            Retried::Done(()) => {
                telemetry.emit(SinkEvent::Ready);
                Ok(sink)
            }
            Retried::Failed(e) | Retried::Stopped(e) => {
                telemetry.emit(SinkEvent::Refused { error: &e });
                Err(e)
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

    fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes everything pending, retrying with backoff while `stop` is not set.
    /// `Ok(false)` when it stopped with documents still pending; an error when
    /// retrying cannot help (refused credentials, a request the server rejects):
    /// the documents stay pending and nothing is committed past them.
    fn flush(&mut self, stop: &AtomicBool) -> Result<bool, EsError> {
        if !self.has_pending() {
            return Ok(true);
        }
        let started = std::time::Instant::now();
        let telemetry = self.telemetry.clone();
        let written = retry(
            Backoff::new(Duration::from_millis(100), RETRY_MAX),
            stop,
            || self.bulk_once(),
            |e, delay| telemetry.emit(SinkEvent::Retrying { what: "write a bulk request", error: e, delay }),
        );
        match written {
            Retried::Done(()) => {
                telemetry.emit(SinkEvent::Written { took: started.elapsed() });
                Ok(true)
            }
            Retried::Failed(e) => {
                telemetry.emit(SinkEvent::Refused { error: &e });
                Err(e)
            }
            Retried::Stopped(e) => {
                telemetry.emit(SinkEvent::Abandoned { error: &e });
                Ok(!self.has_pending())
            }
        }
    }
}

/// Anomaly documents, one bulk request per round, acknowledged before the
/// offsets behind them are committed (while the server is down this waits, and
/// Kafka polling waits with it).
impl Sink for EsSink {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn write(&mut self, round: &Round<'_>, stop: &AtomicBool) -> Result<Written, SinkError> {
        if round.last == Some(Closing::Stopping) {
            return Ok(Written::Stopped);
        }
        self.pending.extend(round.anomalies.iter().map(|a| Doc::Anomaly(Box::new(a.clone()))));
        self.pending.extend(round.resolutions.iter().map(|r| Doc::Resolution(Box::new(r.clone()))));
        if self.jaeger.is_some() {
            self.pending.extend(round.dependencies.iter().map(|b| Doc::Dependencies(Box::new(b.clone()))));
        }
        if !self.has_pending() {
            return Ok(Written::Acknowledged);
        }
        let mut w = work("elasticsearch.bulk", vec![KeyValue::new("documents", self.pending.len() as i64)]);
        match self.flush(stop) {
            Ok(true) => Ok(Written::Acknowledged),
            Ok(false) => {
                w.fail("stopped with documents pending");
                Ok(Written::Stopped)
            }
            Err(e) => {
                w.fail("refused");
                Err(SinkError::classified("elasticsearch", e))
            }
        }
    }
}

#[cfg(test)]
mod tests;
