//! repeated_calls (N+1): a span that makes the same call again and again, each
//! call waiting for the one before, where one batched or parallel call would do.
//!
//! The calls of a span are its `child_of` children that are calls: client or
//! server spans, or spans of another service (internal work, and messages the
//! span publishes, are not). Two calls are the same when they reach the same
//! callee (for a client span whose server side is traced, the server span's
//! service and operation; otherwise the child's own) with the same peer
//! ([`Span::peer`]) and the same statement (`db.statement`, when present).
//! The calls of one group are sequential when, in start order, none begins
//! before every earlier one has ended (1 µs of rounding allowed): a fan-out, a
//! worker pool or a single overlap anywhere means the caller already runs them
//! side by side, and it is not reported.

use super::anomaly::{Anomaly, AnomalyKind, Details, TraceCtx, Truncated};
use super::dag::TraceDag;
use crate::model::text::thousands;
use crate::model::{RefKind, Span, SpanKind, Sym};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

/// Timestamps rounded from nanoseconds to microseconds can make a call seem to
/// start up to a microsecond before the previous one ended.
const ROUNDING_US: i64 = 1;

/// What makes two calls the same call.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct CallKey {
    service: Sym,
    operation: Sym,
    peer: Sym,
    statement: u32,
}

/// One call: its group, its caller, its span and when it ran.
#[derive(Clone, Copy, Debug)]
struct Call {
    caller: u32,
    key: CallKey,
    start_us: i64,
    end_us: i64,
    span: u32,
}

/// The span that answers client span `i`: a `child_of` child of another
/// service with kind server.
fn server_side(spans: &[Span], dag: &TraceDag, i: u32) -> Option<u32> {
    let service = spans[i as usize].service;
    dag.graph
        .edges_directed(TraceDag::node(i), Direction::Outgoing)
        .filter(|e| *e.weight() == RefKind::ChildOf)
        .map(|e| e.target().index() as u32)
        .filter(|&c| c != i)
        .find(|&c| spans[c as usize].kind == SpanKind::Server && spans[c as usize].service != service)
}

/// The repeated calls of one closed trace, one anomaly per caller and call.
pub fn repeated_calls(t: &TraceCtx<'_>, dag: &TraceDag, min_calls: u32, out: &mut Vec<Anomaly>) {
    let min_calls = min_calls.max(2) as usize;
    // Most traces have no span with that many children: count before grouping.
    let is_call = |caller: usize, span: usize| {
        let s = &t.spans[span];
        matches!(s.kind, SpanKind::Client | SpanKind::Server) || s.service != t.spans[caller].service
    };
    let mut children = vec![0u32; t.spans.len()];
    for e in dag.graph.raw_edges() {
        let (caller, span) = (e.source().index(), e.target().index());
        if e.weight == RefKind::ChildOf && caller != span && is_call(caller, span) {
            children[caller] += 1;
        }
    }
    if children.iter().all(|&n| (n as usize) < min_calls) {
        return;
    }
    let mut calls: Vec<Call> = Vec::new();
    for e in dag.graph.raw_edges() {
        let (caller, span) = (e.source().index() as u32, e.target().index() as u32);
        if e.weight != RefKind::ChildOf
            || caller == span
            || (children[caller as usize] as usize) < min_calls
            || !is_call(caller as usize, span as usize)
        {
            continue;
        }
        let s = &t.spans[span as usize];
        let callee = match s.kind {
            SpanKind::Client => server_side(t.spans, dag, span).map_or(s, |c| &t.spans[c as usize]),
            _ => s,
        };
        let key = CallKey {
            service: callee.service,
            operation: callee.operation,
            peer: s.peer,
            statement: s.statement,
        };
        calls.push(Call { caller, key, start_us: s.start_us, end_us: s.event_time_us(), span });
    }
    calls.sort_unstable_by_key(|c| (c.caller, c.key, c.start_us, c.end_us, c.span));
    for group in calls.chunk_by(|a, b| a.caller == b.caller && a.key == b.key) {
        if group.len() >= min_calls && sequential(group) {
            out.push(document(t, group));
        }
    }
}

/// Whether no call of `group` (in start order) began before an earlier one ended.
fn sequential(group: &[Call]) -> bool {
    let mut ended = i64::MIN;
    for c in group {
        if c.start_us.saturating_add(ROUNDING_US) < ended {
            return false;
        }
        ended = ended.max(c.end_us);
    }
    true
}

fn document(t: &TraceCtx<'_>, group: &[Call]) -> Anomaly {
    let caller = group[0].caller;
    let key = group[0].key;
    let durations = group.iter().map(|c| (c.end_us - c.start_us).max(0) as u64);
    let total_us: u64 = durations.clone().sum();
    let one_us = durations.max().unwrap_or(0);
    let (service, operation) = (t.names.resolve(key.service), t.names.resolve(key.operation));
    let s = &t.spans[caller as usize];
    let summary = format!(
        "{}:{} (span {} of trace {}) called {}:{}{} {} times one after another: {} in the calls, where one \
         batched or parallel call would take about {}.",
        t.name(caller),
        t.names.resolve(s.operation),
        s.span_id,
        s.trace_id,
        service,
        operation,
        if key.statement != 0 { " with the same statement" } else { "" },
        thousands(group.len() as u64),
        seconds(total_us),
        seconds(one_us),
    );
    let details = Details {
        callee_service: Some(service.to_owned()),
        callee_operation: Some(operation.to_owned()),
        calls: Some(group.len() as u64),
        first_call_span_id: Some(t.spans[group[0].span as usize].span_id.to_string()),
        calls_duration_us: Some(total_us),
        batched_duration_us: Some(one_us),
        ..Details::default()
    };
    let involved: Vec<u32> = std::iter::once(caller).chain(group.iter().map(|c| c.span)).collect();
    t.anomaly(AnomalyKind::RepeatedCalls, caller, summary, details, &involved, Truncated::default())
}

/// A duration for a sentence: `850 µs`, `12.3 ms`, `1.25 s`.
fn seconds(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests;
