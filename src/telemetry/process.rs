//! poirot's own process metrics that several threads update and that must be
//! current at scrape time even while the pipeline thread waits on a sink: sink
//! writes, failures, retries and write latency; Kafka consumer lag, assigned
//! partitions and rebalances; dead letters; repartitioned spans. They live in a
//! `prometheus-client` registry, encoded as OpenMetrics after the pipeline's
//! series (see [`crate::sink::exposition`] for those).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn write_latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Handles to the metrics; clones share them.
#[derive(Clone)]
pub struct ProcessMetrics {
    registry: Arc<Registry>,
    sink_writes: Family<SinkLabels, Counter>,
    sink_failures: Family<SinkLabels, Counter>,
    sink_retries: Family<SinkLabels, Counter>,
    sink_write_seconds: HistogramFamily<SinkLabels>,
    pub es_indexed: Counter,
    pub es_rejected: Counter,
    pub neo4j_finished_traces: Counter,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub committable_offset: Family<PartitionLabels, Gauge>,
    pub assigned_partitions: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Assigned input partitions not read for now: they ran ahead of the others in event time.
    pub held_back_partitions: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub rebalances: Family<EventLabels, Counter>,
    pub dead_letters: Counter,
    pub repartitioned_spans: Counter<u64, AtomicU64>,
    /// Records the Kafka client fetched again within one assignment, not handed on.
    pub redelivered_records: Counter<u64, AtomicU64>,
    /// The Kafka source's reading clock ([`crate::dataflow::ReadingClock`]), in seconds.
    pub reading_seconds: Gauge<f64, AtomicU64>,
    /// 1 while the brokers leading the assigned partitions answer, else 0.
    pub kafka_reachable: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for ProcessMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessMetrics")
    }
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessMetrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let sink_writes = Family::<SinkLabels, Counter>::default();
        let sink_failures = Family::<SinkLabels, Counter>::default();
        let sink_retries = Family::<SinkLabels, Counter>::default();
        let sink_write_seconds: HistogramFamily<SinkLabels> =
            Family::new_with_constructor(write_latency_histogram as fn() -> Histogram);
        let es_indexed = Counter::default();
        let es_rejected = Counter::default();
        let neo4j_finished_traces = Counter::default();
        let consumer_lag = Family::<PartitionLabels, Gauge>::default();
        let committable_offset = Family::<PartitionLabels, Gauge>::default();
        let assigned_partitions = Gauge::default();
        let held_back_partitions = Gauge::default();
        let rebalances = Family::<EventLabels, Counter>::default();
        let dead_letters = Counter::default();
        let repartitioned_spans = Counter::default();
        let redelivered_records = Counter::default();
        let reading_seconds = Gauge::<f64, AtomicU64>::default();
        let kafka_reachable = Gauge::default();
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION") }).set(1);

        r.register("poirot_build_info", "The running poirot version", build_info);
        r.register("poirot_sink_writes", "Sink writes acknowledged", sink_writes.clone());
        r.register("poirot_sink_failures", "Sink write attempts that failed", sink_failures.clone());
        r.register("poirot_sink_retries", "Sink writes retried after a failure", sink_retries.clone());
        r.register(
            "poirot_sink_write_seconds",
            "Time from a sink write's start to its acknowledgement, retries included",
            sink_write_seconds.clone(),
        );
        r.register(
            "poirot_es_documents_indexed",
            "Anomaly documents Elasticsearch acknowledged",
            es_indexed.clone(),
        );
        r.register(
            "poirot_es_documents_rejected",
            "Anomaly documents Elasticsearch refused for good",
            es_rejected.clone(),
        );
        r.register(
            "poirot_neo4j_finished_traces",
            "Traces whose edges Neo4j counted.",
            neo4j_finished_traces.clone(),
        );
        r.register(
            "poirot_kafka_consumer_lag",
            "Messages behind the end of the partition (librdkafka statistics, every second)",
            consumer_lag.clone(),
        );
        r.register(
            "poirot_kafka_committable_offset",
            "Offset poirot allows to commit, per partition",
            committable_offset.clone(),
        );
        r.register(
            "poirot_kafka_assigned_partitions",
            "Partitions this process owns",
            assigned_partitions.clone(),
        );
        r.register(
            "poirot_kafka_held_back_partitions",
            "Input partitions paused for running ahead of the slowest in event time (re-keyed input)",
            held_back_partitions.clone(),
        );
        r.register("poirot_rebalances", "Partitions assigned and revoked", rebalances.clone());
        r.register(
            "poirot_dead_letters",
            "Undecodable messages sent to the dead-letter topic",
            dead_letters.clone(),
        );
        r.register(
            "poirot_repartitioned_spans",
            "Spans of unkeyed input re-keyed by trace id into the repartition topic",
            repartitioned_spans.clone(),
        );
        r.register(
            "poirot_kafka_redelivered_records",
            "Records the Kafka client fetched again within one assignment (around a pause and resume): dropped, never analysed twice",
            redelivered_records.clone(),
        );
        r.register(
            "poirot_kafka_reading_seconds",
            "Time the Kafka source could read (brokers reachable, pipeline not stalled, no rebalance): the time idleness is measured in",
            reading_seconds.clone(),
        );
        r.register(
            "poirot_kafka_reachable",
            "1 while the brokers leading the assigned partitions answer",
            kafka_reachable.clone(),
        );
        ProcessMetrics {
            registry: Arc::new(r),
            sink_writes,
            sink_failures,
            sink_retries,
            sink_write_seconds,
            es_indexed,
            es_rejected,
            neo4j_finished_traces,
            consumer_lag,
            committable_offset,
            assigned_partitions,
            held_back_partitions,
            rebalances,
            dead_letters,
            repartitioned_spans,
            redelivered_records,
            reading_seconds,
            kafka_reachable,
        }
    }

    /// The metrics of one sink.
    pub fn sink(&self, sink: &'static str) -> SinkMetrics {
        let l = SinkLabels { sink };
        SinkMetrics {
            writes: self.sink_writes.get_or_create(&l).clone(),
            failures: self.sink_failures.get_or_create(&l).clone(),
            retries: self.sink_retries.get_or_create(&l).clone(),
            write_seconds: self.sink_write_seconds.get_or_create(&l).clone(),
        }
    }

    pub fn partition(topic: &str, partition: i32) -> PartitionLabels {
        PartitionLabels { topic: topic.to_owned(), partition: partition.to_string() }
    }

    /// OpenMetrics text of every metric here, ending with `# EOF`.
    pub fn encode(&self, out: &mut String) {
        if prometheus_client::encoding::text::encode(out, &self.registry).is_err() {
            out.push_str("# EOF\n");
        }
    }
}

/// The counters of one sink; every series exists (at zero) from the start. They
/// move with [`crate::telemetry::events::SinkEvent`]s.
#[derive(Clone, Debug)]
pub struct SinkMetrics {
    pub writes: Counter,
    pub failures: Counter,
    pub retries: Counter,
    pub write_seconds: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::events::{SinkEvent, SinkTelemetry};
    use crate::telemetry::health::{Component, Health};
    use std::time::Duration;

    #[test]
    fn sink_series_exist_from_the_start_and_count() {
        let m = ProcessMetrics::new();
        let es = SinkTelemetry::new(
            "elasticsearch",
            Component::Elasticsearch,
            m.sink("elasticsearch"),
            Health::new(),
        );
        let _neo = m.sink("neo4j");
        let error = "503";
        es.emit(SinkEvent::Retrying { what: "write", error: &error, delay: Duration::from_millis(1) });
        es.emit(SinkEvent::Written { took: Duration::from_millis(3) });
        let mut out = String::new();
        m.encode(&mut out);
        assert!(out.contains("poirot_sink_failures_total{sink=\"elasticsearch\"} 1\n"), "{out}");
        assert!(out.contains("poirot_sink_failures_total{sink=\"neo4j\"} 0\n"), "{out}");
        assert!(
            out.contains("poirot_sink_write_seconds_bucket{le=\"0.004\",sink=\"elasticsearch\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("poirot_build_info{version=\""), "{out}");
        assert!(out.ends_with("# EOF\n"));
    }
}
