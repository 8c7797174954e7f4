//! Service dependencies to Neo4j over Bolt.
//!
//! Schema: `(:Service {name})-[:CALLS {relation, calls, errors, duration_us_sum,
//! duration_us_min, duration_us_max, first_seen, last_seen}]->(:Service)`,
//! `(:Operation {service, name})-[:PART_OF]->(:Service)` with operation-level
//! `CALLS`, and messaging as `(:Service)-[:PUBLISHES {messages}]->(:Destination {name})`,
//! `(:Destination)-[:CONSUMED_BY {messages, hop_latency_us_*}]->(:Service)`.
//! Uniqueness constraints are created at start; writes are batched with
//! `UNWIND $rows ... MERGE`, every value a parameter.
//!
//! Exactly once: each write adds the edges of a set of finished traces and, in the
//! same transaction, records those traces (`:PoirotFinishedTrace`, keyed by group,
//! topic, partition and trace id, with the trace's last offset). A new owner of a
//! partition loads the records and drops the spans of traces already counted when
//! it reads them again; records are deleted once the committed offset has passed
//! them.

mod queries;

pub use queries::operation_key;
use queries::write_queries;

use crate::analysis::Edges;
use crate::analysis::FinishedTrace;
use crate::config::{ConfigError, Neo4jSection};
use crate::model::{Interner, TraceId};
use crate::sink::retry::{retry, Backoff, Classify, Fault, Retried};
use crate::sink::{Closing, Round, Sink, SinkError, Written};
use crate::telemetry::events::{SinkEvent, SinkTelemetry};
use crate::telemetry::health::{Component, Health};
use crate::telemetry::process::ProcessMetrics;
use crate::telemetry::work;
use neo4rs::{query, Graph};
use opentelemetry::KeyValue;
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Longest wait between two tries while the server is down: recovery comes at most this late.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// How long the marker of a write is kept (ms): far longer than any retry of it.
const WRITE_MARKER_KEEP_MS: i64 = 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum Neo4jError {
    /// Neo4j refused the credentials (or the user may not do this): retrying
    /// would only lock the account out.
    #[error("neo4j at {uri} refused poirot's credentials: {detail}")]
    Refused { uri: String, detail: String },
    /// The TLS handshake failed (untrusted or wrong certificate): a setting to
    /// fix, not an outage to wait out.
    #[error("neo4j at {uri}: {detail}")]
    Tls { uri: String, detail: String },
    /// Neo4j rejected poirot's query itself (a syntax, schema or request error):
    /// the same query would fail again.
    #[error("neo4j rejected poirot's query ({code}): {detail}")]
    Rejected { code: String, detail: String },
    #[error("neo4j: {0}")]
    Failed(String),
}

impl Neo4jError {
    pub fn from_bolt(uri: &str, e: neo4rs::Error) -> Neo4jError {
        if let Some(detail) = super::tls::handshake_failure(&e, "neo4j.ca_file") {
            return Neo4jError::Tls { uri: uri.to_owned(), detail };
        }
        let fault = match &e {
            neo4rs::Error::AuthenticationError(_) => Fault::User,
            neo4rs::Error::Neo4j(n) => fault_of_code(n.code()),
            _ => Fault::External,
        };
        match (fault, &e) {
            (Fault::User, _) => Neo4jError::Refused { uri: uri.to_owned(), detail: e.to_string() },
            (Fault::Internal, neo4rs::Error::Neo4j(n)) => {
                Neo4jError::Rejected { code: n.code().to_owned(), detail: e.to_string() }
            }
            _ => Neo4jError::Failed(e.to_string()),
        }
    }
}

/// Whose fault a Neo4j status code is: `Neo.ClientError.Security.*` the user's
/// (credentials, rights); a query Neo4j cannot run as written (syntax, types,
/// missing parameters, a malformed request) poirot's own; everything else the
/// server's, to wait out — transient and database errors, and client errors that
/// concurrent writers can cause and a retry resolves (a constraint raced by
/// another process's MERGE, a schema rule another process just created).
fn fault_of_code(code: &str) -> Fault {
    const POIROTS_OWN: [&str; 7] = [
        "Neo.ClientError.Statement.SyntaxError",
        "Neo.ClientError.Statement.SemanticError",
        "Neo.ClientError.Statement.ParameterMissing",
        "Neo.ClientError.Statement.TypeError",
        "Neo.ClientError.Statement.ArgumentError",
        "Neo.ClientError.Statement.ArithmeticError",
        "Neo.ClientError.Request.",
    ];
    if code.starts_with("Neo.ClientError.Security.") {
        Fault::User
    } else if POIROTS_OWN.iter().any(|p| code.starts_with(p)) {
        Fault::Internal
    } else {
        Fault::External
    }
}

impl Classify for Neo4jError {
    fn fault(&self) -> Fault {
        match self {
            Neo4jError::Refused { .. } | Neo4jError::Tls { .. } => Fault::User,
            Neo4jError::Rejected { .. } => Fault::Internal,
            Neo4jError::Failed(_) => Fault::External,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Neo4jConfig {
    pub uri: String,
    pub user: String,
    pub password: String,
    /// PEM CA certificate(s) trusted besides the system's roots (TLS uris only).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Neo4jConfig {
    /// The sink's settings from `[neo4j]`, reading the password file and checking
    /// the CA file; `None` when the sink is off.
    pub fn from_section(section: &Neo4jSection) -> Result<Option<Neo4jConfig>, ConfigError> {
        if section.uri.is_empty() {
            return Ok(None);
        }
        let password = if section.password_file.is_empty() {
            section.password.clone()
        } else {
            std::fs::read_to_string(&section.password_file).map(|s| s.trim_end().to_owned()).map_err(|e| {
                ConfigError::Invalid {
                    key: "neo4j.password_file".into(),
                    origin: String::new(),
                    message: format!("cannot read {}: {e}", section.password_file),
                }
            })?
        };
        let ca_file = if section.ca_file.is_empty() {
            None
        } else {
            if !is_tls_uri(&section.uri) {
                return Err(crate::config::invalid(
                    "neo4j.ca_file",
                    format!("needs a TLS uri (bolt+s:// or neo4j+s://), not {:?}", section.uri),
                ));
            }
            super::tls::pem_certificates(&section.ca_file, "neo4j.ca_file")?;
            Some(std::path::PathBuf::from(&section.ca_file))
        };
        Ok(Some(Neo4jConfig { uri: section.uri.clone(), user: section.user.clone(), password, ca_file }))
    }
}

/// Whether neo4rs speaks TLS to `uri`: `bolt+s://`, `neo4j+s://` (and their
/// `+ssc` forms, which neo4rs 0.8 verifies the same way).
pub fn is_tls_uri(uri: &str) -> bool {
    let scheme = uri.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
    ["bolt+s", "bolt+ssc", "neo4j+s", "neo4j+ssc"].contains(&scheme.as_str())
}

/// A client for `config` whose first connection is made now, once: neo4rs's
/// queries retry a failed connection for up to a minute, which would hide a
/// refused password or a failed TLS handshake (and try the password again and
/// again). Opening and rolling back a transaction does not retry.
pub async fn connect_once(config: neo4rs::Config, uri: &str) -> Result<Graph, Neo4jError> {
    let graph = Graph::connect(config).await.map_err(|e| Neo4jError::from_bolt(uri, e))?;
    let txn = graph.start_txn().await.map_err(|e| Neo4jError::from_bolt(uri, e))?;
    txn.rollback().await.map_err(|e| Neo4jError::from_bolt(uri, e))?;
    Ok(graph)
}

impl Neo4jConfig {
    /// The client settings: with a TLS uri the server's certificate is verified
    /// against the system's roots and `ca_file`, for the uri's host name.
    pub fn bolt(&self, max_connections: usize) -> Result<neo4rs::Config, Neo4jError> {
        let mut builder = neo4rs::ConfigBuilder::default()
            .uri(self.uri.as_str())
            .user(self.user.as_str())
            .password(self.password.as_str())
            .max_connections(max_connections);
        if let Some(ca) = &self.ca_file {
            // Despite its name, the CA to trust.
            builder = builder.with_client_certificate(ca);
        }
        builder.build().map_err(|e| Neo4jError::Failed(format!("{}: {e}", self.uri)))
    }
}

pub struct Neo4jSink {
    graph: Graph,
    uri: String,
    rt: tokio::runtime::Runtime,
    /// `group/topic`: whose finished-trace records these are.
    source: String,
    /// Write counters, readiness and log lines.
    telemetry: SinkTelemetry,
    finished_traces: Counter,
}

impl Neo4jSink {
    /// Connects and creates the constraints; counts into `metrics`. While Neo4j
    /// cannot be reached it tries again with backoff (logging a line per try)
    /// until `stop`; refused credentials end it at once: one connection, one try,
    /// so a wrong password never trips Neo4j's lockout.
    pub fn connect(
        config: &Neo4jConfig,
        group: &str,
        topic: &str,
        metrics: &ProcessMetrics,
        health: &Health,
        stop: &AtomicBool,
    ) -> Result<Neo4jSink, Neo4jError> {
        let telemetry = SinkTelemetry::new("neo4j", Component::Neo4j, metrics.sink("neo4j"), health.clone());
        // The sink writes one transaction at a time: one connection is enough,
        // and a refused password is tried once, not by a pool of 16.
        let bolt = config.bolt(1)?;
        let source = format!("{group}/{topic}");
        let connecting = retry(
            Backoff::new(Duration::from_millis(500), RETRY_MAX),
            stop,
            || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Neo4jError::Failed(e.to_string()))?;
                let graph = rt.block_on(connect_once(bolt.clone(), &config.uri))?;
                let sink = Neo4jSink {
                    graph,
                    uri: config.uri.clone(),
                    rt,
                    source: source.clone(),
                    telemetry: telemetry.clone(),
                    finished_traces: metrics.neo4j_finished_traces.clone(),
                };
                sink.create_constraints().map(|()| sink)
            },
            |e, delay| telemetry.emit(SinkEvent::Unreachable { address: &config.uri, error: e, delay }),
        );
        match connecting {
            Retried::Done(sink) => {
                telemetry.emit(SinkEvent::Ready);
                Ok(sink)
            }
            Retried::Failed(e) | Retried::Stopped(e) => {
                telemetry.emit(SinkEvent::Refused { error: &e });
                Err(e)
            }
        }
    }

    fn create_constraints(&self) -> Result<(), Neo4jError> {
        for c in queries::CONSTRAINTS {
            self.rt.block_on(self.graph.run(query(c))).map_err(|e| {
                match Neo4jError::from_bolt(&self.uri, e) {
                    Neo4jError::Failed(d) => Neo4jError::Failed(format!("{c}: {d}")),
                    refused => refused,
                }
            })?;
        }
        Ok(())
    }

    /// Traces of `partition` a previous owner finished and counted, with their
    /// last offsets. The partition must not be read before they are known, so
    /// while Neo4j is unavailable this tries again with backoff until `stop`.
    pub fn finished_traces(
        &self,
        partition: u32,
        stop: &AtomicBool,
    ) -> Result<Vec<(TraceId, i64)>, Neo4jError> {
        let loaded = retry(
            Backoff::new(Duration::from_millis(500), RETRY_MAX),
            stop,
            || self.load_finished_traces(partition),
            |e, delay| {
                let what = format!("load the finished traces of partition {partition}");
                self.telemetry.emit(SinkEvent::Retrying { what: &what, error: e, delay });
            },
        );
        match loaded {
            Retried::Done(traces) => Ok(traces),
            Retried::Failed(e) | Retried::Stopped(e) => Err(e),
        }
    }

    fn load_finished_traces(&self, partition: u32) -> Result<Vec<(TraceId, i64)>, Neo4jError> {
        self.rt.block_on(async {
            let q = query(
                "MATCH (f:PoirotFinishedTrace {source: $source, partition: $partition}) \
                 RETURN f.trace_id AS trace_id, f.last_offset AS last_offset",
            )
            .param("source", self.source.as_str())
            .param("partition", i64::from(partition));
            let bolt = |e| Neo4jError::from_bolt(&self.uri, e);
            let mut rows = self.graph.execute(q).await.map_err(bolt)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await.map_err(bolt)? {
                let t: String = r.get("trace_id").map_err(|e| Neo4jError::Failed(e.to_string()))?;
                let o: i64 = r.get("last_offset").map_err(|e| Neo4jError::Failed(e.to_string()))?;
                if let Some(t) = TraceId::from_hex(&t) {
                    out.push((t, o));
                }
            }
            Ok(out)
        })
    }

    /// Whether the transaction that carried write `id` committed: a commit whose
    /// answer was lost (Neo4j stopped in the middle) must not be applied twice.
    fn committed(&self, id: &str) -> Result<bool, neo4rs::Error> {
        self.rt.block_on(async {
            let q = query("MATCH (w:PoirotWrite {id: $id}) RETURN count(w) AS n").param("id", id);
            let mut rows = self.graph.execute(q).await?;
            let n = match rows.next().await? {
                Some(row) => row.get::<i64>("n").unwrap_or(0),
                None => 0,
            };
            Ok(n > 0)
        })
    }

    /// Writes `delta` and records `finished` in one transaction, deleting records
    /// below the `gc` offsets; retries with backoff while `stop` is not set.
    /// `Ok(false)`: stopped before the write was acknowledged; an error: Neo4j
    /// refused the credentials (nothing was written, retrying cannot help).
    fn write_round(
        &mut self,
        delta: &Edges,
        names: &Interner,
        finished: &[FinishedTrace],
        gc: &[(u32, i64)],
        stop: &AtomicBool,
    ) -> Result<bool, Neo4jError> {
        if write_queries(&self.source, delta, names, finished, gc).is_empty() {
            return Ok(true);
        }
        let started = std::time::Instant::now();
        // Every write carries a marker with its own id, so that after an error whose
        // cause may have come after the commit, a retry first asks whether it landed.
        let id = format!("{}/{:016x}{:016x}", self.source, rand::random::<u64>(), rand::random::<u64>());
        let mut attempted = false;
        let telemetry = self.telemetry.clone();
        let written = retry(
            Backoff::new(Duration::from_millis(100), RETRY_MAX),
            stop,
            || {
                let mut qs = write_queries(&self.source, delta, names, finished, gc);
                qs.push(
                    query("CREATE (:PoirotWrite {id: $id, source: $source, at: timestamp()})")
                        .param("id", id.as_str())
                        .param("source", self.source.as_str()),
                );
                // After a failed attempt: did it land after all? (Not knowing is a failure too.)
                let landed = if attempted { self.committed(&id) } else { Ok(false) };
                attempted = true;
                match landed {
                    Ok(true) => Ok(()),
                    Ok(false) => self.rt.block_on(async {
                        let mut txn = self.graph.start_txn().await?;
                        txn.run_queries(qs).await?;
                        txn.commit().await
                    }),
                    Err(e) => Err(e),
                }
                .map_err(|e| Neo4jError::from_bolt(&self.uri, e))
            },
            |e, delay| telemetry.emit(SinkEvent::Retrying { what: "write", error: e, delay }),
        );
        match written {
            Retried::Done(()) => {
                telemetry.emit(SinkEvent::Written { took: started.elapsed() });
                self.finished_traces.inc_by(finished.len() as u64);
                Ok(true)
            }
            Retried::Failed(e) => {
                telemetry.emit(SinkEvent::Refused { error: &e });
                Err(e)
            }
            Retried::Stopped(e) => {
                telemetry.emit(SinkEvent::Abandoned { error: &e });
                Ok(false)
            }
        }
    }
}

/// Edge deltas and the finished-trace registry, one transaction per round; the
/// registry tells the next owner of a partition which traces to drop when it
/// reads them again.
impl Sink for Neo4jSink {
    fn name(&self) -> &'static str {
        "neo4j"
    }

    fn wants_deltas(&self) -> bool {
        true
    }

    fn write(&mut self, round: &Round<'_>, stop: &AtomicBool) -> Result<Written, SinkError> {
        let (delta, finished) = (round.delta, round.finished);
        if round.last == Some(Closing::Stopping) {
            return Ok(Written::Stopped);
        }
        if delta.is_empty() && finished.is_empty() && round.forget_below.is_empty() {
            return Ok(Written::Acknowledged);
        }
        let mut w = work(
            "neo4j.write",
            vec![
                KeyValue::new("edges", delta.services.len() as i64),
                KeyValue::new("finished_traces", finished.len() as i64),
            ],
        );
        match self.write_round(delta, round.outputs.names, finished, round.forget_below, stop) {
            Ok(true) => Ok(Written::Acknowledged),
            Ok(false) => {
                w.fail("stopped before the write was acknowledged");
                Ok(Written::Stopped)
            }
            Err(e) => {
                w.fail("refused");
                Err(SinkError::classified("neo4j", e))
            }
        }
    }

    fn finished_before(
        &mut self,
        partition: u32,
        stop: &AtomicBool,
    ) -> Result<Vec<(TraceId, i64)>, SinkError> {
        self.finished_traces(partition, stop).map_err(|e| {
            let detail = std::io::Error::other(format!("partition {partition}: {e}"));
            SinkError::new("neo4j", e.fault(), detail)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neo4j_codes_say_whose_fault_a_failure_is() {
        assert_eq!(fault_of_code("Neo.ClientError.Security.Unauthorized"), Fault::User);
        assert_eq!(fault_of_code("Neo.ClientError.Statement.SyntaxError"), Fault::Internal);
        assert_eq!(fault_of_code("Neo.ClientError.Request.InvalidFormat"), Fault::Internal);
        // Concurrent writers cause these; the retry resolves them.
        assert_eq!(fault_of_code("Neo.ClientError.Schema.ConstraintValidationFailed"), Fault::External);
        assert_eq!(
            fault_of_code("Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists"),
            Fault::External
        );
        assert_eq!(fault_of_code("Neo.TransientError.Transaction.DeadlockDetected"), Fault::External);
        assert_eq!(fault_of_code("Neo.TransientError.General.DatabaseUnavailable"), Fault::External);
    }
}
