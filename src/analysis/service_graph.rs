//! Service-graph metrics: every reference between spans of two services is one
//! request from the client (the referenced span's service) to the server (the
//! referencing span's service). Named and labelled as Grafana's service-graph
//! views and node graph expect them (the same names the OpenTelemetry
//! service-graph connector writes):
//!
//! - `traces_service_graph_request_total{client, server, connection_type}`
//! - `traces_service_graph_request_failed_total{...}`: the server span is an error
//!   span, or the client span is an error client/producer span
//! - `traces_service_graph_request_server_seconds_*` (server span duration) and
//!   `traces_service_graph_request_client_seconds_*` (client span duration),
//!   histograms in seconds with trace-id exemplars
//!
//! - `traces_service_graph_request_messaging_system_seconds_*{client, server,
//!   connection_type="messaging_system", destination}`: how long a message waited
//!   between its producer span's end and its consumer span's start (floored at
//!   zero), per producer service, destination and consumer service
//!
//! `connection_type` is `messaging_system` for `follows_from` references and
//! producer spans, `virtual_node` for a client span's call to a peer that sent no
//! spans (the server is the peer's name, [`super::edges::unanswered_calls`]; only
//! the client side is measured), empty for direct calls.

use super::dag::TraceDag;
use super::red::Latency;
use crate::model::{RefKind, Span, SpanKind, Sym};
use rustc_hash::FxHashMap;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct GraphKey {
    pub client: Sym,
    pub server: Sym,
    pub connection: Connection,
}

/// How the client reached the server: the `connection_type` label.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Connection {
    Direct,
    MessagingSystem,
    /// To a peer that sent no spans: the server is a virtual node.
    VirtualNode,
}

impl Connection {
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Direct => "",
            Connection::MessagingSystem => "messaging_system",
            Connection::VirtualNode => "virtual_node",
        }
    }
}

/// Counts of real traffic, weighted for sampling as RED is ([`super::red::RedStats`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphStats {
    pub requests: f64,
    pub failed: f64,
    pub server: Latency,
    pub client: Latency,
}

/// A messaging hop: producer service, destination, consumer service.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct QueueKey {
    pub client: Sym,
    pub destination: Sym,
    pub server: Sym,
}

#[derive(Default, Debug)]
pub struct ServiceGraph {
    edges: FxHashMap<GraphKey, GraphStats>,
    /// Time in the queue (producer end → consumer start) per messaging hop.
    queues: FxHashMap<QueueKey, Latency>,
    /// Most client/server pairs kept (0: no limit); past it requests of new pairs
    /// count in the pair `__overflow__ → __overflow__`.
    max_series: usize,
    overflow: Sym,
}

impl ServiceGraph {
    pub fn with_limit(max_series: usize, overflow: Sym) -> Self {
        ServiceGraph { max_series, overflow, ..ServiceGraph::default() }
    }

    /// Adds the cross-service references of one trace, each counting `weight`
    /// requests (the trace's adjusted count for sampling; 1 unsampled).
    pub fn add_trace(&mut self, spans: &[Span], dag: &TraceDag, weight: f64) {
        for e in dag.graph.raw_edges() {
            let (client, server) = (&spans[e.source().index()], &spans[e.target().index()]);
            if client.service == server.service {
                continue;
            }
            let connection = if e.weight == RefKind::FollowsFrom || client.kind == SpanKind::Producer {
                Connection::MessagingSystem
            } else {
                Connection::Direct
            };
            let key = self.key(client.service, server.service, connection);
            let client_failed = client.error && matches!(client.kind, SpanKind::Client | SpanKind::Producer);
            let st = self.edges.entry(key).or_default();
            st.requests += weight;
            if server.error || client_failed {
                st.failed += weight;
            }
            st.server.observe(server, weight);
            st.client.observe(client, weight);
            if client.kind == SpanKind::Producer {
                let destination =
                    if client.destination != Sym(0) { client.destination } else { server.destination };
                let mut q = QueueKey { client: client.service, destination, server: server.service };
                if self.max_series > 0
                    && self.queues.len() >= self.max_series
                    && !self.queues.contains_key(&q)
                {
                    q = QueueKey { client: self.overflow, destination: self.overflow, server: self.overflow };
                }
                let produced = client.start_us.saturating_add(client.duration_us as i64);
                let waited = server.start_us.saturating_sub(produced).max(0) as u64;
                self.queues.entry(q).or_default().record(waited, server.trace_id, weight);
            }
        }
        for (client, _) in super::edges::unanswered_calls(spans, dag) {
            let key = self.key(client.service, client.peer, Connection::VirtualNode);
            let st = self.edges.entry(key).or_default();
            st.requests += weight;
            if client.error {
                st.failed += weight;
            }
            st.client.observe(client, weight);
        }
    }

    /// The series of a pair, or the overflow pair past the series limit.
    fn key(&self, client: Sym, server: Sym, connection: Connection) -> GraphKey {
        let key = GraphKey { client, server, connection };
        if self.max_series > 0 && self.edges.len() >= self.max_series && !self.edges.contains_key(&key) {
            return GraphKey { client: self.overflow, server: self.overflow, connection };
        }
        key
    }

    /// Every messaging hop with its time in the queue.
    pub fn queues(&self) -> impl Iterator<Item = (&QueueKey, &Latency)> {
        self.queues.iter()
    }

    pub fn get(&self, key: &GraphKey) -> Option<&GraphStats> {
        self.edges.get(key)
    }

    pub fn len(&self) -> usize {
        self.edges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Every pair with its counts.
    pub fn edges(&self) -> impl Iterator<Item = (&GraphKey, &GraphStats)> {
        self.edges.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Interner, SpanId, SpanRef, TraceId};

    fn span(
        names: &mut Interner,
        id: u64,
        parent: Option<(u64, RefKind)>,
        svc: &str,
        kind: SpanKind,
    ) -> Span {
        let mut s = Span {
            trace_id: TraceId { high: 0, low: 7 },
            span_id: SpanId(id),
            service: names.intern(svc),
            kind,
            duration_us: 3_000 * id,
            start_us: id as i64,
            ..Span::default()
        };
        if let Some((p, kind)) = parent {
            s.refs.push(SpanRef { trace_id: s.trace_id, span_id: SpanId(p), kind });
        }
        s
    }

    #[test]
    fn time_in_the_queue_is_from_the_producer_end_to_the_consumer_start() {
        let mut names = Interner::new();
        let mut g = ServiceGraph::default();
        let mut producer = span(&mut names, 1, None, "orders", SpanKind::Producer);
        producer.destination = names.intern("ORDER_PLACED");
        (producer.start_us, producer.duration_us) = (1_000, 2_000);
        let mut consumer =
            span(&mut names, 2, Some((1, RefKind::FollowsFrom)), "billing", SpanKind::Consumer);
        consumer.start_us = 10_000;
        // A consumer that started before the producer returned waited no time.
        let mut early = span(&mut names, 3, Some((1, RefKind::FollowsFrom)), "audit", SpanKind::Consumer);
        early.start_us = 2_500;
        let spans = vec![producer, consumer, early];
        g.add_trace(&spans, &TraceDag::build(&spans), 1.0);
        let waits: Vec<(String, String, String, u64)> = g
            .queues()
            .map(|(k, l)| {
                let n = |s| names.resolve(s).to_owned();
                (n(k.client), n(k.destination), n(k.server), l.sum_us as u64)
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            waits,
            [
                ("orders".into(), "ORDER_PLACED".into(), "audit".into(), 0),
                ("orders".into(), "ORDER_PLACED".into(), "billing".into(), 7_000)
            ]
        );
    }

    #[test]
    fn counts_requests_failures_and_latency_per_client_server_pair() {
        let mut names = Interner::new();
        let mut g = ServiceGraph::default();
        let mut spans = vec![
            span(&mut names, 1, None, "frontend", SpanKind::Server),
            span(&mut names, 2, Some((1, RefKind::ChildOf)), "frontend", SpanKind::Client),
            span(&mut names, 3, Some((2, RefKind::ChildOf)), "customer", SpanKind::Server),
            span(&mut names, 4, Some((1, RefKind::ChildOf)), "frontend", SpanKind::Producer),
            span(&mut names, 5, Some((4, RefKind::FollowsFrom)), "worker", SpanKind::Consumer),
        ];
        spans[2].error = true;
        let dag = TraceDag::build(&spans);
        g.add_trace(&spans, &dag, 1.0);
        let (fe, cu, wo) = (names.intern("frontend"), names.intern("customer"), names.intern("worker"));
        let call = g
            .get(&GraphKey { client: fe, server: cu, connection: Connection::Direct })
            .expect("frontend→customer");
        assert_eq!((call.requests, call.failed), (1.0, 1.0));
        assert_eq!(call.server.sum_us, 9_000.0, "the server span's duration");
        assert_eq!(call.client.sum_us, 6_000.0, "the client span's duration");
        let msg = g
            .get(&GraphKey { client: fe, server: wo, connection: Connection::MessagingSystem })
            .expect("frontend→worker");
        assert_eq!((msg.requests, msg.failed), (1.0, 0.0));
        assert_eq!(g.len(), 2, "calls inside one service are no requests");
    }

    #[test]
    fn pairs_past_the_limit_share_the_overflow_pair() {
        let mut names = Interner::new();
        let overflow = names.intern(super::super::red::OVERFLOW);
        let mut g = ServiceGraph::with_limit(2, overflow);
        for i in 0..10u64 {
            let spans = vec![
                span(&mut names, 1, None, "gateway", SpanKind::Client),
                span(&mut names, 2, Some((1, RefKind::ChildOf)), &format!("svc-{i}"), SpanKind::Server),
            ];
            g.add_trace(&spans, &TraceDag::build(&spans), 1.0);
        }
        assert_eq!(g.len(), 3);
        let o = g
            .get(&GraphKey { client: overflow, server: overflow, connection: Connection::Direct })
            .expect("overflow");
        assert_eq!(o.requests, 8.0);
    }
}
