//! The anomaly detectors, each exactly as DESIGN.md defines its kind.

use super::anomaly::{Anomaly, AnomalyKind, Details, TraceCtx};
use super::dag::TraceDag;
use crate::model::{SpanKind, Sym};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::collections::BTreeMap;

/// message_loss: a producer span that no span of its trace references.
pub fn message_loss(t: &TraceCtx<'_>, dag: &TraceDag, out: &mut Vec<Anomaly>) {
    for (i, s) in t.spans.iter().enumerate() {
        let i = i as u32;
        if s.kind != SpanKind::Producer || dag.has_children(i) {
            continue;
        }
        let destination = t.names.resolve(s.destination);
        let dest_text =
            if destination.is_empty() { "an unnamed destination".to_owned() } else { destination.to_owned() };
        let summary = format!(
            "{} published a message to {} in {} (span {}) that no span of trace {} consumed.",
            t.name(i),
            dest_text,
            t.names.resolve(s.operation),
            s.span_id,
            s.trace_id
        );
        let details = Details { destination: Some(destination.to_owned()), ..Details::default() };
        out.push(t.anomaly(AnomalyKind::MessageLoss, i, summary, details, &[i]));
    }
}

/// orphan_reference: a span whose reference names a span that never arrived.
/// One anomaly per span, listing every missing span id.
pub fn orphan_references(t: &TraceCtx<'_>, dag: &TraceDag, out: &mut Vec<Anomaly>) {
    let mut by_span: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (i, r) in &dag.missing {
        by_span.entry(*i).or_default().push(r.span_id.to_string());
    }
    for (i, missing) in by_span {
        let s = &t.spans[i as usize];
        let summary = format!(
            "Span {} of {} ({}) references {} {} that never arrived in trace {}.",
            s.span_id,
            t.name(i),
            t.names.resolve(s.operation),
            if missing.len() == 1 { "span" } else { "spans" },
            missing.join(", "),
            s.trace_id
        );
        let details = Details { missing_span_ids: Some(missing), ..Details::default() };
        out.push(t.anomaly(AnomalyKind::OrphanReference, i, summary, details, &[i]));
    }
}

/// reference_cycle: references that form a cycle. One anomaly per cycle.
pub fn reference_cycles(t: &TraceCtx<'_>, cycles: &[Vec<u32>], out: &mut Vec<Anomaly>) {
    for c in cycles {
        let at = c[0];
        let path: Vec<String> = c
            .iter()
            .take(8)
            .map(|&i| format!("{}:{}", t.name(i), t.names.resolve(t.spans[i as usize].operation)))
            .collect();
        let summary = if c.len() == 1 {
            format!(
                "Span {} of {} references itself, so trace {} is not a DAG.",
                t.spans[at as usize].span_id,
                t.name(at),
                t.spans[at as usize].trace_id
            )
        } else {
            format!(
                "References of {} spans in trace {} form a cycle ({}{}), so the trace is not a DAG.",
                c.len(),
                t.spans[at as usize].trace_id,
                path.join(" → "),
                if c.len() > 8 { " → …" } else { "" }
            )
        };
        out.push(t.anomaly(AnomalyKind::ReferenceCycle, at, summary, Details::default(), c));
    }
}

/// One stretch of a causal path spent in one service.
struct Segment {
    service: Sym,
    span: u32,
}

struct Finding {
    reentries: u32,
    span: u32,
    chain: Vec<String>,
    involved: Vec<u32>,
}

/// Longest chain written into a recursive_chain document.
const MAX_CHAIN: usize = 64;

/// recursive_chain: a causal path that re-enters a service it had left at least
/// `min_reentries` times. Paths follow each span's first resolvable reference
/// (its primary parent); consecutive spans of one service form one segment, so
/// nesting within a service is not a re-entry. One anomaly per trace and cycle
/// of services, with the most re-entries seen.
pub fn recursive_chains(
    t: &TraceCtx<'_>,
    dag: &TraceDag,
    in_cycle: &[bool],
    min_reentries: u32,
    out: &mut Vec<Anomaly>,
) {
    let n = t.spans.len();
    // Children lists along primary parents, as one flat array (CSR).
    let mut primary = vec![u32::MAX; n];
    for i in 0..n {
        if in_cycle[i] {
            continue;
        }
        let first_parent = dag
            .graph
            .neighbors_directed(TraceDag::node(i as u32), petgraph::Direction::Incoming)
            .map(|p| p.index())
            .filter(|&p| !in_cycle[p])
            // neighbors are listed newest edge first; the first reference is the last.
            .last();
        if let Some(p) = first_parent {
            primary[i] = p as u32;
        }
    }
    let mut start = vec![0u32; n + 1];
    for &p in &primary {
        if p != u32::MAX {
            start[p as usize + 1] += 1;
        }
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut children = vec![0u32; start[n] as usize];
    for (c, &p) in primary.iter().enumerate() {
        if p != u32::MAX {
            children[fill[p as usize] as usize] = c as u32;
            fill[p as usize] += 1;
        }
    }

    let mut findings: BTreeMap<Vec<String>, Finding> = BTreeMap::new();
    let mut path: Vec<Segment> = Vec::new();
    let mut seen_at: FxHashMap<Sym, SmallVec<[u32; 4]>> = FxHashMap::default();
    // (span, path length to restore before visiting it)
    let mut stack: Vec<(u32, u32)> = Vec::new();
    for root in (0..n as u32).filter(|&i| primary[i as usize] == u32::MAX && !in_cycle[i as usize]) {
        stack.push((root, 0));
        while let Some((i, depth)) = stack.pop() {
            while path.len() > depth as usize {
                if let Some(seg) = path.pop() {
                    if let Some(v) = seen_at.get_mut(&seg.service) {
                        v.pop();
                    }
                }
            }
            let service = t.spans[i as usize].service;
            if path.last().is_none_or(|s| s.service != service) {
                let earlier = seen_at.entry(service).or_default();
                let reentries = earlier.len() as u32;
                let previous = earlier.last().copied();
                earlier.push(path.len() as u32);
                path.push(Segment { service, span: i });
                if let (Some(prev), true) = (previous, reentries >= min_reentries) {
                    note_finding(t, &path, prev as usize, reentries, i, &mut findings);
                }
            }
            let (a, b) = (start[i as usize] as usize, start[i as usize + 1] as usize);
            for &c in children[a..b].iter().rev() {
                stack.push((c, path.len() as u32));
            }
        }
        path.clear();
        seen_at.clear();
    }

    for (cycle, f) in findings {
        let s = &t.spans[f.span as usize];
        let summary = format!(
            "Trace {} re-enters {} {} times along {} (loop {}).",
            s.trace_id,
            t.name(f.span),
            f.reentries,
            f.chain.join(" → "),
            cycle.join(" → ")
        );
        let details = Details {
            chain: Some(f.chain),
            cycle: Some(cycle),
            reentries: Some(f.reentries),
            ..Details::default()
        };
        out.push(t.anomaly(AnomalyKind::RecursiveChain, f.span, summary, details, &f.involved));
    }
}

fn note_finding(
    t: &TraceCtx<'_>,
    path: &[Segment],
    prev: usize,
    reentries: u32,
    span: u32,
    findings: &mut BTreeMap<Vec<String>, Finding>,
) {
    // The loop is the services from the previous visit up to (not including) now,
    // rotated to start at its alphabetically first service.
    let names: Vec<&str> = path[prev..path.len() - 1].iter().map(|s| t.names.resolve(s.service)).collect();
    let Some(first) = (0..names.len()).min_by_key(|&i| (names[i], i)) else { return };
    let cycle: Vec<String> = names[first..].iter().chain(&names[..first]).map(|s| (*s).to_owned()).collect();
    // Most re-entries wins; ties go to the smallest span id, so results do not
    // depend on the order spans arrived in.
    let better = findings.get(&cycle).is_none_or(|f| {
        (reentries, std::cmp::Reverse(t.spans[span as usize].span_id))
            > (f.reentries, std::cmp::Reverse(t.spans[f.span as usize].span_id))
    });
    if better {
        let from = path.len().saturating_sub(MAX_CHAIN);
        let chain = path[from..].iter().map(|s| t.names.resolve(s.service).to_owned()).collect();
        let involved = path[from..].iter().map(|s| s.span).collect();
        findings.insert(cycle, Finding { reentries, span, chain, involved });
    }
}

/// oversized_trace: more spans than the limit.
pub fn oversized(t: &TraceCtx<'_>, total: u64, limit: usize, out: &mut Vec<Anomaly>) {
    let Some(first) = t.spans.first() else { return };
    let summary = format!(
        "Trace {} has {} spans, over the limit of {}: its spans count for RED, but it was not analysed further.",
        first.trace_id, total, limit
    );
    let details = Details { span_count: Some(total), span_limit: Some(limit as u64), ..Details::default() };
    out.push(t.anomaly(AnomalyKind::OversizedTrace, 0, summary, details, &[0]));
}
