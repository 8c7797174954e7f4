//! The analyses' sections: assembly, anomalies, metrics, and the demo's simulator.

use super::duration;
use serde::Deserialize;
use std::time::Duration;

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
    /// How long (event time) a closed trace stays joinable: a span that arrives
    /// later, or a link from another trace, still finds it.
    #[serde(deserialize_with = "duration")]
    pub closed_retention: Duration,
    /// Most bytes the closed-trace index holds (about 20 bytes a span plus 90 a
    /// trace); past it the oldest traces leave early, counted.
    pub max_closed_bytes: usize,
}

impl Default for AssemblySection {
    fn default() -> Self {
        AssemblySection {
            inactivity_gap: Duration::from_secs(10),
            out_of_orderness: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_spans_per_trace: 50_000,
            max_buffered_spans: 2_000_000,
            closed_retention: Duration::from_secs(300),
            max_closed_bytes: 64 << 20,
        }
    }
}

/// When a message counts as lost: a producer span that no span consumed is
/// pending until its deadline, counted from when its trace closed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageLossSection {
    /// The least deadline, for every destination. 2 minutes lets an ordinary
    /// slow queue (a consumer group that lags, a sandbox that takes a minute) pass.
    #[serde(deserialize_with = "duration")]
    pub min_deadline: Duration,
    /// The largest deadline the observed latency may set.
    #[serde(deserialize_with = "duration")]
    pub max_deadline: Duration,
    /// The deadline follows the destination's observed producer → consumer latency:
    /// this multiple of its 99th percentile (within the two bounds above).
    pub latency_factor: f64,
    /// Fixed deadlines per destination name, e.g. `{ "SAMPLE_RECEIVED" = "10m" }`.
    #[serde(deserialize_with = "super::durations")]
    pub deadlines: std::collections::BTreeMap<String, Duration>,
}

impl Default for MessageLossSection {
    fn default() -> Self {
        MessageLossSection {
            min_deadline: Duration::from_secs(120),
            max_deadline: Duration::from_secs(3600),
            latency_factor: 4.0,
            deadlines: Default::default(),
        }
    }
}

/// Anomaly detection, and the caps on every anomaly document. What a cap cut is
/// counted in the document's `truncated` object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalySection {
    pub min_reentries: u32,
    /// Calls of one span to the same callee (and statement), one after another,
    /// that make a repeated_calls (N+1) anomaly; 0 turns the detector off.
    pub min_repeated_calls: u32,
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
            min_repeated_calls: 5,
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

/// What RED and the service graph count.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedSection {
    /// A span of a trace that states it was sampled with probability p
    /// (`sampler.type`/`sampler.param`, or `tracestate` `ot=th:`) counts 1/p,
    /// so rates are those of the real traffic.
    pub adjust_for_sampling: bool,
    /// Span attributes (else resource or process attributes) added as labels
    /// to the RED series, e.g. `deployment.environment`: the label is the key
    /// with every character but letters, digits and `_` made `_`. At most
    /// [`MAX_DIMENSIONS`]; series stay capped by `metrics.max_series`.
    pub dimensions: Vec<String>,
}

/// Most RED dimensions: each multiplies the series a service can have.
pub const MAX_DIMENSIONS: usize = 4;

impl Default for RedSection {
    fn default() -> Self {
        RedSection { adjust_for_sampling: true, dimensions: Vec::new() }
    }
}

impl RedSection {
    /// Checks the dimensions: few, distinct as labels, not RED's own labels.
    pub fn check(&self) -> Result<(), String> {
        if self.dimensions.len() > MAX_DIMENSIONS {
            return Err(format!("{} dimensions; at most {MAX_DIMENSIONS}", self.dimensions.len()));
        }
        let mut labels: Vec<String> = Vec::new();
        for key in &self.dimensions {
            let label = crate::sink::prometheus::red::dimension_label(key);
            if key.is_empty() {
                return Err("a dimension is an empty key".into());
            }
            if label.starts_with("__") || ["le", "quantile"].contains(&label.as_str()) {
                return Err(format!("{key:?} would be the label {label:?}, which Prometheus reserves"));
            }
            if crate::sink::prometheus::red::LABELS.contains(&label.as_str()) || labels.contains(&label) {
                return Err(format!("{key:?} would be the label {label:?}, which is already taken"));
            }
            labels.push(label);
        }
        Ok(())
    }
}

/// The service graph (metrics, Neo4j, the page's graph).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceGraphSection {
    /// A client span no server span answers called a peer that sends no
    /// spans: it is drawn as a virtual node named by the first of these
    /// attributes it has (the OpenTelemetry connector's setting of the same
    /// name). Known: `peer.service`, `db.name` (or `db.namespace`), `db.system`
    /// (or `db.system.name`), `server.address` (or `net.peer.name`); empty: no
    /// virtual nodes.
    pub virtual_node_peer_attributes: Vec<String>,
}

impl Default for ServiceGraphSection {
    fn default() -> Self {
        ServiceGraphSection {
            virtual_node_peer_attributes: crate::model::DEFAULT_PEER_ATTRIBUTES
                .iter()
                .map(|a| a.key().to_owned())
                .collect(),
        }
    }
}

impl ServiceGraphSection {
    /// The attributes in order; `Err` names the first unknown one.
    pub fn peer_attributes(&self) -> Result<PeerOrder, String> {
        let mut order = PeerOrder::default();
        for (slot, key) in self.virtual_node_peer_attributes.iter().enumerate() {
            let a = crate::model::PeerAttribute::from_key(key).ok_or_else(|| {
                format!(
                    "{key:?} is not one of peer.service, db.name, db.namespace, db.system, db.system.name, \
                     server.address, net.peer.name"
                )
            })?;
            if order.0.contains(&Some(a)) || slot >= order.0.len() {
                return Err(format!("{key:?} names an attribute already listed"));
            }
            order.0[slot] = Some(a);
        }
        Ok(order)
    }
}

/// The order virtual nodes are named in: at most one entry per attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerOrder(pub [Option<crate::model::PeerAttribute>; crate::model::PeerAttribute::ALL.len()]);

impl PeerOrder {
    pub fn attributes(&self) -> Vec<crate::model::PeerAttribute> {
        self.0.iter().flatten().copied().collect()
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
    /// Longest service, operation, destination (and a client span's peer)
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
    /// Share of workflows whose Reporter stores findings one INSERT at a time (N+1).
    pub n_plus_one_rate: f64,
    /// The demo's `message_loss.min_deadline`: its simulated queues deliver in
    /// milliseconds, so a lost message is reported within seconds.
    #[serde(deserialize_with = "duration")]
    pub message_loss_deadline: Duration,
}

impl Default for DemoSection {
    fn default() -> Self {
        DemoSection {
            listen: "127.0.0.1:8080".into(),
            publisher_rate: 5.0,
            s3_behaviour: S3Behaviour::Const,
            message_loss_rate: 0.02,
            ping_pong_rate: 0.02,
            n_plus_one_rate: 0.02,
            message_loss_deadline: Duration::from_secs(5),
        }
    }
}
