//! The startup check of the Kafka connection and credentials.
//!
//! librdkafka reports a wrong SCRAM password, a certificate it cannot verify and a
//! broker it cannot reach alike to the caller of a metadata request: as a transport
//! failure, after the request's timeout. The reason only comes through the client's
//! error callback. [`check`] connects once with the settings `poirot run` and `poirot
//! simulate` use, captures that callback, asks for metadata, and names the cause in one
//! line ([`KafkaCheckError`]) without any secret of the settings in it.

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why poirot cannot use Kafka with its settings. Each message is one line naming the
/// cause and the brokers; secrets of the settings are replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaCheckError {
    /// The broker refused the credentials (SASL / SCRAM), or the mechanism.
    #[error("Kafka authentication failed at {brokers}{who}: {detail}")]
    Authentication { brokers: String, who: String, detail: String },
    /// The TLS handshake failed: a certificate that does not verify, a missing CA, a
    /// name that does not match, or TLS spoken to a listener that does not speak it.
    #[error("TLS handshake with Kafka at {brokers} failed (check ssl.ca.location and the broker's certificate): {detail}")]
    Tls { brokers: String, detail: String },
    /// No broker answered in time (refused, unresolvable, or silent).
    #[error("cannot reach Kafka at {brokers}: {detail}")]
    Unreachable { brokers: String, detail: String },
    /// librdkafka rejected the settings themselves (an unknown property, a value it
    /// cannot use, a SASL mechanism it has no provider for).
    #[error("invalid Kafka client settings for {brokers}: {detail}")]
    Settings { brokers: String, detail: String },
}

impl KafkaCheckError {
    /// Worth trying again later: the brokers may come up; credentials do not heal.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, KafkaCheckError::Unreachable { .. })
    }
}

/// How long one check waits for metadata before it calls the brokers unreachable.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a check keeps listening after every broker went down, for the error that
/// says why (it is queued before the "all brokers down" event, this is only a margin).
const DOWN_GRACE: Duration = Duration::from_millis(500);
/// One metadata request's share of the check: errors are looked at in between.
const SLICE: Duration = Duration::from_millis(250);

/// One error librdkafka reported through the error callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: Option<RDKafkaErrorCode>,
    pub reason: String,
}

/// Captures the client's errors instead of logging them; librdkafka's own log lines
/// go to debug level (the check's outcome is the one line a person reads).
#[derive(Default)]
struct CheckContext {
    errors: Mutex<Vec<ClientError>>,
    /// The last connection failure librdkafka logged: some (a listener closing the
    /// connection during the first request) are logged but not reported as errors.
    last_failure: Mutex<Option<String>>,
}

impl ClientContext for CheckContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, "{fac} {message}");
        if fac == "FAIL" {
            if let Ok(mut last) = self.last_failure.lock() {
                // Without librdkafka's "[thrd:...]: " prefix.
                let text = message.split_once("]: ").filter(|_| message.starts_with("[thrd:"));
                *last = Some(text.map_or(message, |(_, rest)| rest).to_owned());
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            // rdkafka hands each error event to this callback twice; keep one.
            let e = ClientError { code: error.rdkafka_error_code(), reason: reason.to_owned() };
            if errors.last() != Some(&e) {
                errors.push(e);
            }
        }
    }
}

impl ProducerContext for CheckContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Connects to `brokers` with `properties` (as given to librdkafka), fetches the
/// cluster metadata, and names what went wrong, waiting at most `timeout`.
pub fn check(
    brokers: &str,
    properties: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<(), KafkaCheckError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers).set("client.id", "poirot-check");
    for (k, v) in properties {
        cc.set(k, v);
    }
    let secrets = secrets(properties);
    let producer: BaseProducer<CheckContext> =
        cc.create_with_context(CheckContext::default()).map_err(|e| {
            let detail = match e {
                KafkaError::ClientCreation(msg) => msg,
                // Its Display appends the value as given, which may be a misspelled secret.
                KafkaError::ClientConfig(_, description, key, _) => {
                    format!("{description} (property {key:?})")
                }
                other => other.to_string(),
            };
            KafkaCheckError::Settings { brokers: brokers.to_owned(), detail: redact(&detail, &secrets) }
        })?;
    let deadline = Instant::now() + timeout;
    let mut all_down_at: Option<Instant> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let fetch_error =
            match producer.client().fetch_metadata(None, SLICE.min(left).max(Duration::from_millis(1))) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
        // Serve the queued events: the error callback fills the context.
        producer.poll(Duration::from_millis(10));
        let errors = producer.context().errors.lock().map(|e| e.clone()).unwrap_or_default();
        if let Some(e) = classify(brokers, properties, &errors, &secrets) {
            if !e.is_unreachable() {
                return Err(e);
            }
        }
        let now = Instant::now();
        if all_down_at.is_none() && errors.iter().any(|e| e.code == Some(RDKafkaErrorCode::AllBrokersDown)) {
            all_down_at = Some(now);
        }
        let down_long_enough = all_down_at.is_some_and(|t| now.duration_since(t) >= DOWN_GRACE);
        if now >= deadline || down_long_enough {
            let logged = producer.context().last_failure.lock().ok().and_then(|l| l.clone());
            let detail = errors
                .iter()
                .rev()
                .find(|e| e.code != Some(RDKafkaErrorCode::AllBrokersDown))
                .map(|e| e.reason.clone())
                .or(logged.map(|l| {
                    if l.contains("APIVERSION_QUERY") {
                        // What a TLS or SASL listener does to a client that does not speak it.
                        format!("{l}; is security.protocol the listener's?")
                    } else {
                        l
                    }
                }))
                .unwrap_or_else(|| format!("{fetch_error} within {} s", timeout.as_secs()));
            return Err(KafkaCheckError::Unreachable {
                brokers: brokers.to_owned(),
                detail: one_line(&redact(&detail, &secrets)),
            });
        }
    }
}

/// Checks like [`check`] until the brokers answer: while they are unreachable, waits
/// (1 s, doubling up to `max_backoff`) and tries again, calling `on_retry` once per try
/// with the error and the wait. Other failures (credentials, TLS, settings) return at once.
pub fn check_until_reachable(
    brokers: &str,
    properties: &BTreeMap<String, String>,
    timeout: Duration,
    max_backoff: Duration,
    mut on_retry: impl FnMut(&KafkaCheckError, Duration),
) -> Result<(), KafkaCheckError> {
    let mut wait = Duration::from_secs(1).min(max_backoff);
    loop {
        match check(brokers, properties, timeout) {
            Err(e) if e.is_unreachable() => {
                on_retry(&e, wait);
                std::thread::sleep(wait);
                wait = (wait * 2).min(max_backoff);
            }
            other => return other,
        }
    }
}

/// The longest wait between two tries of [`startup_check`].
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `poirot run`'s check before it uses Kafka: returns once the brokers answer with these
/// settings; a failure other than unreachable brokers is returned at once. While they
/// are unreachable, logs one line per try and tries again with backoff (up to 30 s).
pub fn startup_check(brokers: &str, properties: &BTreeMap<String, String>) -> Result<(), KafkaCheckError> {
    check_until_reachable(brokers, properties, CHECK_TIMEOUT, MAX_BACKOFF, |e, wait| {
        tracing::warn!("{e}; trying again in {} s", wait.as_secs());
    })
}

/// The cause among the errors librdkafka reported, most specific first:
/// authentication, then TLS; `Unreachable` when there were only transport errors.
pub fn classify(
    brokers: &str,
    properties: &BTreeMap<String, String>,
    errors: &[ClientError],
    secrets: &[String],
) -> Option<KafkaCheckError> {
    use RDKafkaErrorCode as C;
    let text = |e: &ClientError| one_line(&redact(&e.reason, secrets));
    let brokers = brokers.to_owned();
    if let Some(e) =
        errors.iter().find(|e| matches!(e.code, Some(C::Authentication | C::SaslAuthenticationFailed)))
    {
        return Some(KafkaCheckError::Authentication { brokers, who: who(properties), detail: text(e) });
    }
    if let Some(e) = errors.iter().find(|e| e.code == Some(C::SSL)) {
        return Some(KafkaCheckError::Tls { brokers, detail: text(e) });
    }
    errors
        .iter()
        .rev()
        .find(|e| e.code != Some(C::AllBrokersDown))
        .or_else(|| errors.last())
        .map(|e| KafkaCheckError::Unreachable { brokers, detail: text(e) })
}

/// " (SCRAM-SHA-512 as user poirot)": the mechanism and user name, which are no secrets.
fn who(properties: &BTreeMap<String, String>) -> String {
    let mechanism = properties.get("sasl.mechanism").or_else(|| properties.get("sasl.mechanisms"));
    match (mechanism, properties.get("sasl.username")) {
        (Some(m), Some(u)) => format!(" ({m} as user {u})"),
        (None, Some(u)) => format!(" (as user {u})"),
        (Some(m), None) => format!(" ({m})"),
        (None, None) => String::new(),
    }
}

/// The values of settings that are secrets (passwords, keys, tokens).
pub fn secrets(properties: &BTreeMap<String, String>) -> Vec<String> {
    let secret = |k: &str| {
        let k = k.to_ascii_lowercase();
        k.contains("password")
            || k.contains("secret")
            || k.contains("token")
            || k == "ssl.key.pem"
            || k == "sasl.oauthbearer.config"
    };
    let mut v: Vec<String> =
        properties.iter().filter(|(k, v)| secret(k) && !v.is_empty()).map(|(_, v)| v.clone()).collect();
    // Longest first, so a secret that contains another is replaced whole.
    v.sort_by_key(|s| std::cmp::Reverse(s.len()));
    v
}

/// `text` with every secret replaced by `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn err(code: RDKafkaErrorCode, reason: &str) -> ClientError {
        ClientError { code: Some(code), reason: reason.into() }
    }

    #[test]
    fn authentication_wins_over_the_transport_errors_around_it() {
        let p = props(&[
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "poirot"),
            ("sasl.password", "hunter2"),
        ]);
        let errors = [
            err(RDKafkaErrorCode::Authentication, "sasl_ssl://b:9096/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (password hunter2)\n"),
            err(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down"),
        ];
        let e = classify("b:9096", &p, &errors, &secrets(&p)).expect("an error");
        assert!(matches!(e, KafkaCheckError::Authentication { .. }), "{e:?}");
        let line = e.to_string();
        assert!(
            line.starts_with("Kafka authentication failed at b:9096 (SCRAM-SHA-512 as user poirot): "),
            "{line}"
        );
        assert!(!line.contains("hunter2") && line.contains("***") && !line.contains('\n'), "{line}");
    }

    #[test]
    fn broker_side_sasl_failure_counts_as_authentication() {
        let errors = [err(RDKafkaErrorCode::SaslAuthenticationFailed, "Broker: SASL Authentication failed")];
        let e = classify("b", &props(&[]), &errors, &[]).expect("an error");
        assert_eq!(e.to_string(), "Kafka authentication failed at b: Broker: SASL Authentication failed");
    }

    #[test]
    fn tls_failures_name_tls() {
        let errors = [
            err(RDKafkaErrorCode::BrokerTransportFailure, "connect"),
            err(
                RDKafkaErrorCode::SSL,
                "ssl://b:9097/bootstrap: SSL handshake failed: certificate verify failed",
            ),
        ];
        let e = classify("b:9097", &props(&[]), &errors, &[]).expect("an error");
        assert!(matches!(e, KafkaCheckError::Tls { .. }), "{e:?}");
        assert!(e.to_string().starts_with("TLS handshake with Kafka at b:9097 failed"), "{e}");
    }

    #[test]
    fn only_transport_errors_mean_unreachable() {
        let errors = [
            err(
                RDKafkaErrorCode::BrokerTransportFailure,
                "Connect to ipv4#127.0.0.1:1 failed: Connection refused",
            ),
            err(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down"),
        ];
        let e = classify("127.0.0.1:1", &props(&[]), &errors, &[]).expect("an error");
        assert_eq!(
            e.to_string(),
            "cannot reach Kafka at 127.0.0.1:1: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
        );
        assert!(e.is_unreachable());
        assert_eq!(classify("b", &props(&[]), &[], &[]), None);
    }

    #[test]
    fn secrets_are_the_values_of_secret_keys_longest_first() {
        let p = props(&[
            ("sasl.password", "pw"),
            ("ssl.key.password", "pw-long"),
            ("sasl.username", "poirot"),
            ("sasl.oauthbearer.client.secret", ""),
        ]);
        assert_eq!(secrets(&p), vec!["pw-long".to_owned(), "pw".to_owned()]);
        assert_eq!(redact("a pw-long b pw c poirot", &secrets(&p)), "a *** b *** c poirot");
    }

    #[test]
    fn an_unreachable_broker_is_named_within_the_timeout() {
        // A loopback port nothing listens on: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let brokers = format!("127.0.0.1:{port}");
        let started = Instant::now();
        let e = check(&brokers, &props(&[]), Duration::from_secs(5)).expect_err("nothing listens there");
        assert!(e.is_unreachable(), "{e:?}");
        assert!(e.to_string().starts_with(&format!("cannot reach Kafka at {brokers}: ")), "{e}");
        assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    }

    #[test]
    fn settings_librdkafka_rejects_are_named_without_secrets() {
        // A misspelled password key: its value is no known secret, and still not shown.
        let p = props(&[("sasl.pasword", "hunter2")]);
        let e = check("127.0.0.1:1", &p, Duration::from_secs(1)).expect_err("unknown property");
        assert!(matches!(e, KafkaCheckError::Settings { .. }), "{e:?}");
        assert!(e.to_string().contains("sasl.pasword") && !e.to_string().contains("hunter2"), "{e}");
    }
}
