//! The Cypher poirot writes: the constraints, and one transaction's queries for
//! a batch of edge deltas, finished-trace records and their garbage collection.
//! Every value is a parameter.

use super::WRITE_MARKER_KEEP_MS;
use crate::analysis::Edges;
use crate::analysis::FinishedTrace;
use crate::model::Interner;
use neo4rs::{query, BoltType, Query};
use std::collections::HashMap;

type Row = HashMap<String, BoltType>;

fn row<const N: usize>(fields: [(&str, BoltType); N]) -> BoltType {
    let m: Row = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    m.into()
}

/// A CALLS row: its key fields plus the call figures [`ADD_CALLS`] reads.
fn calls_row<const N: usize>(key: [(&str, BoltType); N], s: &crate::analysis::edges::CallStats) -> BoltType {
    let mut m: Row = key.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    for (k, v) in [
        ("calls", int(s.calls)),
        ("errors", int(s.errors)),
        ("sum", int(s.duration_us_sum)),
        ("min", int(s.duration_us_min)),
        ("max", int(s.duration_us_max)),
        ("first", millis(s.first_seen_us)),
        ("last", millis(s.last_seen_us)),
    ] {
        m.insert(k.to_owned(), v);
    }
    m.into()
}

fn int(v: u64) -> BoltType {
    BoltType::from(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Epoch milliseconds of an event time in µs.
fn millis(us: i64) -> BoltType {
    BoltType::from(us / 1000)
}

/// How long applied-link registrations are kept: as long as poirot remembers them.
const APPLIED_LINK_KEEP_MS: i64 = crate::analysis::flows::applied::KEEP_US / 1000;

pub(super) const CONSTRAINTS: [&str; 7] = [
    "CREATE CONSTRAINT poirot_service IF NOT EXISTS FOR (s:Service) REQUIRE s.name IS UNIQUE",
    "CREATE CONSTRAINT poirot_write IF NOT EXISTS FOR (w:PoirotWrite) REQUIRE w.id IS UNIQUE",
    "CREATE CONSTRAINT poirot_operation IF NOT EXISTS FOR (o:Operation) REQUIRE o.key IS UNIQUE",
    "CREATE CONSTRAINT poirot_destination IF NOT EXISTS FOR (d:Destination) REQUIRE d.name IS UNIQUE",
    "CREATE CONSTRAINT poirot_peer IF NOT EXISTS FOR (p:Peer) REQUIRE p.name IS UNIQUE",
    "CREATE CONSTRAINT poirot_finished IF NOT EXISTS FOR (f:PoirotFinishedTrace) REQUIRE f.key IS UNIQUE",
    "CREATE INDEX poirot_finished_partition IF NOT EXISTS FOR (f:PoirotFinishedTrace) ON (f.source, f.partition)",
];

/// Adds a delta to a CALLS relationship `c` from row `r`.
const ADD_CALLS: &str = "ON CREATE SET c.calls = 0, c.errors = 0, c.duration_us_sum = 0, \
     c.duration_us_min = r.min, c.duration_us_max = r.max, \
     c.first_seen = datetime({epochMillis: r.first}), c.last_seen = datetime({epochMillis: r.last}) \
     SET c.calls = c.calls + r.calls, c.errors = c.errors + r.errors, c.duration_us_sum = c.duration_us_sum + r.sum, \
     c.duration_us_min = CASE WHEN r.min < c.duration_us_min THEN r.min ELSE c.duration_us_min END, \
     c.duration_us_max = CASE WHEN r.max > c.duration_us_max THEN r.max ELSE c.duration_us_max END, \
     c.first_seen = CASE WHEN datetime({epochMillis: r.first}) < c.first_seen THEN datetime({epochMillis: r.first}) ELSE c.first_seen END, \
     c.last_seen = CASE WHEN datetime({epochMillis: r.last}) > c.last_seen THEN datetime({epochMillis: r.last}) ELSE c.last_seen END";

/// The unique key of an operation node.
pub fn operation_key(service: &str, operation: &str) -> String {
    format!("{service}\u{1f}{operation}")
}

/// One write's queries: the edge deltas, the finished-trace records, and the
/// deletion of records and write markers the committed offsets no longer need.
pub(super) fn write_queries(
    source: &str,
    delta: &Edges,
    names: &Interner,
    finished: &[FinishedTrace],
    gc: &[(u32, i64)],
) -> Vec<Query> {
    let n = |s| names.resolve(s).to_owned();
    let services: Vec<BoltType> = delta
        .services
        .iter()
        .map(|(k, s)| {
            calls_row(
                [
                    ("source", n(k.source).into()),
                    ("target", n(k.target).into()),
                    ("relation", k.relation.as_str().into()),
                ],
                s,
            )
        })
        .collect();
    let operations: Vec<BoltType> = delta
        .operations
        .iter()
        .map(|(k, s)| {
            let (ss, so, ts, to) =
                (n(k.source_service), n(k.source_operation), n(k.target_service), n(k.target_operation));
            calls_row(
                [
                    ("source_key", operation_key(&ss, &so).into()),
                    ("target_key", operation_key(&ts, &to).into()),
                    ("source", ss.into()),
                    ("source_operation", so.into()),
                    ("target", ts.into()),
                    ("target_operation", to.into()),
                    ("relation", k.relation.as_str().into()),
                ],
                s,
            )
        })
        .collect();
    let virtuals: Vec<BoltType> = delta
        .virtuals
        .iter()
        .map(|(k, s)| calls_row([("source", n(k.source).into()), ("peer", n(k.peer).into())], s))
        .collect();
    let hops: Vec<BoltType> = delta
        .hops
        .iter()
        .filter(|(k, _)| !names.resolve(k.destination).is_empty())
        .map(|(k, s)| {
            row([
                ("producer", n(k.producer).into()),
                ("destination", n(k.destination).into()),
                ("consumer", n(k.consumer).into()),
                ("messages", int(s.messages)),
                ("sum", int(s.hop_latency_us_sum)),
                ("min", int(s.hop_latency_us_min)),
                ("max", int(s.hop_latency_us_max)),
            ])
        })
        .collect();
    let finished_rows: Vec<BoltType> = finished
        .iter()
        .map(|f| {
            let t = f.trace_id.to_string();
            row([
                ("key", format!("{}/{}/{}", source, f.partition, t).into()),
                ("partition", BoltType::from(i64::from(f.partition))),
                ("trace_id", t.into()),
                ("last_offset", BoltType::from(f.last_offset)),
            ])
        })
        .collect();
    let gc_rows: Vec<BoltType> = gc
        .iter()
        .map(|(p, o)| row([("partition", BoltType::from(i64::from(*p))), ("offset", BoltType::from(*o))]))
        .collect();
    let mut qs = Vec::new();
    if !services.is_empty() {
        qs.push(
            query(&format!(
                "UNWIND $rows AS r MERGE (s:Service {{name: r.source}}) MERGE (t:Service {{name: r.target}}) \
                 MERGE (s)-[c:CALLS {{relation: r.relation}}]->(t) {ADD_CALLS}"
            ))
            .param("rows", services),
        );
    }
    if !operations.is_empty() {
        qs.push(
            query(&format!(
                "UNWIND $rows AS r \
                 MERGE (ss:Service {{name: r.source}}) MERGE (ts:Service {{name: r.target}}) \
                 MERGE (so:Operation {{key: r.source_key}}) ON CREATE SET so.service = r.source, so.name = r.source_operation \
                 MERGE (to:Operation {{key: r.target_key}}) ON CREATE SET to.service = r.target, to.name = r.target_operation \
                 MERGE (so)-[:PART_OF]->(ss) MERGE (to)-[:PART_OF]->(ts) \
                 MERGE (so)-[c:CALLS {{relation: r.relation}}]->(to) {ADD_CALLS}"
            ))
            .param("rows", operations),
        );
    }
    if !virtuals.is_empty() {
        // A peer that sent no spans is a node of its own label, marked virtual, so
        // it never merges with a traced service of the same name.
        qs.push(
            query(&format!(
                "UNWIND $rows AS r MERGE (s:Service {{name: r.source}}) \
                 MERGE (t:Peer {{name: r.peer}}) ON CREATE SET t.virtual = true \
                 MERGE (s)-[c:CALLS {{relation: 'child_of', virtual: true}}]->(t) {ADD_CALLS}"
            ))
            .param("rows", virtuals),
        );
    }
    if !hops.is_empty() {
        qs.push(
            query(
                "UNWIND $rows AS r \
                 MERGE (p:Service {name: r.producer}) MERGE (c:Service {name: r.consumer}) \
                 MERGE (d:Destination {name: r.destination}) \
                 MERGE (p)-[pub:PUBLISHES]->(d) ON CREATE SET pub.messages = 0 \
                 SET pub.messages = pub.messages + r.messages \
                 MERGE (d)-[con:CONSUMED_BY]->(c) \
                 ON CREATE SET con.messages = 0, con.hop_latency_us_sum = 0, con.hop_latency_us_min = r.min, con.hop_latency_us_max = r.max \
                 SET con.messages = con.messages + r.messages, con.hop_latency_us_sum = con.hop_latency_us_sum + r.sum, \
                 con.hop_latency_us_min = CASE WHEN r.min < con.hop_latency_us_min THEN r.min ELSE con.hop_latency_us_min END, \
                 con.hop_latency_us_max = CASE WHEN r.max > con.hop_latency_us_max THEN r.max ELSE con.hop_latency_us_max END",
            )
            .param("rows", hops),
        );
    }
    if !finished_rows.is_empty() {
        qs.push(
            query(
                "UNWIND $rows AS r MERGE (f:PoirotFinishedTrace {key: r.key}) \
                 SET f.source = $source, f.partition = r.partition, f.trace_id = r.trace_id, f.last_offset = r.last_offset, \
                 f.at = timestamp()",
            )
            .param("rows", finished_rows)
            .param("source", source),
        );
    }
    if !gc_rows.is_empty() {
        qs.push(
            query(
                "UNWIND $rows AS r MATCH (f:PoirotFinishedTrace {source: $source, partition: r.partition}) \
                 WHERE f.last_offset < r.offset DELETE f",
            )
            .param("rows", gc_rows.clone())
            .param("source", source),
        );
        // Applied links (registered at the largest offset, see analysis::flows::applied) go by age.
        qs.push(
            query(
                "UNWIND $rows AS r MATCH (f:PoirotFinishedTrace {source: $source, partition: r.partition}) \
                 WHERE f.last_offset = $forever AND f.at < timestamp() - $keep DELETE f",
            )
            .param("rows", gc_rows)
            .param("source", source)
            .param("forever", i64::MAX)
            .param("keep", APPLIED_LINK_KEEP_MS),
        );
        qs.push(
            query("MATCH (w:PoirotWrite {source: $source}) WHERE w.at < timestamp() - $keep DELETE w")
                .param("source", source)
                .param("keep", WRITE_MARKER_KEEP_MS),
        );
    }
    qs
}
