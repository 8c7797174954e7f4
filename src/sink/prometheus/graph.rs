//! Service-graph series under the names Grafana's service-graph views and node
//! graph expect (those of the OpenTelemetry service-graph connector): see
//! [`crate::analysis::service_graph`] for what they count.

use super::red::histogram;
use crate::analysis::red::BUCKETS_MS;
use crate::analysis::service_graph::{Connection, GraphKey, ServiceGraph};
use crate::model::Interner;
use crate::sink::exposition::{Exposition, Float, Kind};

pub const REQUEST_METRIC: &str = "traces_service_graph_request_total";
pub const FAILED_METRIC: &str = "traces_service_graph_request_failed_total";
pub const SERVER_SECONDS_METRIC: &str = "traces_service_graph_request_server_seconds";
pub const CLIENT_SECONDS_METRIC: &str = "traces_service_graph_request_client_seconds";
pub const QUEUE_SECONDS_METRIC: &str = "traces_service_graph_request_messaging_system_seconds";

/// Bucket bounds in seconds: the RED bounds, so both views bucket alike.
const BUCKETS_S: [f64; 16] = {
    let mut b = [0.0; 16];
    let mut i = 0;
    while i < 16 {
        b[i] = BUCKETS_MS[i] / 1000.0;
        i += 1;
    }
    b
};

/// Every pair, sorted by client, server and connection type.
pub fn render(graph: &ServiceGraph, names: &Interner, e: &mut Exposition) {
    let mut sorted: Vec<_> = graph.edges().collect();
    sorted.sort_by(|(a, _), (b, _)| {
        (names.resolve(a.client), names.resolve(a.server), a.connection).cmp(&(
            names.resolve(b.client),
            names.resolve(b.server),
            b.connection,
        ))
    });
    let labels = |k: &GraphKey| {
        [
            ("client", names.resolve(k.client)),
            ("server", names.resolve(k.server)),
            ("connection_type", k.connection.as_str()),
        ]
    };
    e.family(REQUEST_METRIC, Kind::Counter, "Requests between two services.");
    for (k, s) in &sorted {
        e.sample(REQUEST_METRIC, &labels(k), Float(s.requests));
    }
    e.family(FAILED_METRIC, Kind::Counter, "Failed requests between two services.");
    for (k, s) in &sorted {
        e.sample(FAILED_METRIC, &labels(k), Float(s.failed));
    }
    e.family(SERVER_SECONDS_METRIC, Kind::Histogram, "Server-side request latency in seconds.");
    // A virtual node has no server side to time.
    for (k, s) in sorted.iter().filter(|(k, _)| k.connection != Connection::VirtualNode) {
        e.histogram(SERVER_SECONDS_METRIC, &labels(k), &histogram(&s.server, &BUCKETS_S, 1e6));
    }
    e.family(CLIENT_SECONDS_METRIC, Kind::Histogram, "Client-side request latency in seconds.");
    for (k, s) in &sorted {
        e.histogram(CLIENT_SECONDS_METRIC, &labels(k), &histogram(&s.client, &BUCKETS_S, 1e6));
    }
    let mut queues: Vec<_> = graph
        .queues()
        .map(|(k, l)| ((names.resolve(k.client), names.resolve(k.server), names.resolve(k.destination)), l))
        .collect();
    queues.sort_by(|a, b| a.0.cmp(&b.0));
    e.family(
        QUEUE_SECONDS_METRIC,
        Kind::Histogram,
        "Time a message waited between its producer span's end and its consumer span's start, in seconds.",
    );
    for ((client, server, destination), l) in &queues {
        let labels = [
            ("client", *client),
            ("server", *server),
            ("connection_type", "messaging_system"),
            ("destination", *destination),
        ];
        e.histogram(QUEUE_SECONDS_METRIC, &labels, &histogram(l, &BUCKETS_S, 1e6));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::dag::TraceDag;
    use crate::model::{RefKind, Span, SpanId, SpanKind, SpanRef, TraceId};
    use crate::sink::exposition::ExpoFormat;

    fn span(
        names: &mut Interner,
        id: u64,
        parent: Option<(u64, RefKind)>,
        svc: &str,
        kind: SpanKind,
    ) -> Span {
        let trace_id = TraceId { high: 0, low: 7 };
        let mut s = Span {
            trace_id,
            span_id: SpanId(id),
            service: names.intern(svc),
            kind,
            duration_us: 3_000 * id,
            start_us: id as i64,
            ..Span::default()
        };
        if let Some((p, kind)) = parent {
            s.refs.push(SpanRef { trace_id, span_id: SpanId(p), kind });
        }
        s
    }

    #[test]
    fn renders_requests_failures_and_latency_with_exemplars() {
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
        g.add_trace(&spans, &TraceDag::build(&spans), 1.0);
        let mut e = Exposition::new(ExpoFormat::OpenMetrics);
        render(&g, &names, &mut e);
        let text = e.finish();
        assert!(text.contains(
            "traces_service_graph_request_failed_total{client=\"frontend\",server=\"customer\",connection_type=\"\"} 1"
        ), "{text}");
        assert!(text.contains("connection_type=\"messaging_system\"} 1"), "{text}");
        assert!(text.contains(
            "traces_service_graph_request_server_seconds_bucket{client=\"frontend\",server=\"customer\",connection_type=\"\",le=\"0.01\"} 1 # {trace_id=\"00000000000000000000000000000007\"} 0.009"
        ), "{text}");
    }
}
