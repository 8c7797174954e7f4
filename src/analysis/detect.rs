//! The anomaly detectors, each exactly as DESIGN.md defines its kind.

use super::anomaly::{Anomaly, AnomalyKind, Details, LossStatus, TraceCtx, Truncated};
use super::dag::TraceDag;
use crate::model::{Span, SpanKind, Sym};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::collections::BTreeMap;

/// message_loss: the producer spans of a closed trace that no span consumed
/// (`consumed[i]`: a span of this trace or a link from another references it).
/// They become losses should their deadline pass without a consumer.
pub fn unconsumed_producers<'a>(spans: &'a [Span], consumed: &'a [bool]) -> impl Iterator<Item = u32> + 'a {
    spans.iter().enumerate().filter_map(move |(i, s)| {
        (s.kind == SpanKind::Producer && !consumed.get(i).copied().unwrap_or(false)).then_some(i as u32)
    })
}

/// The causal path of span `i`: its first parent (the lowest-numbered, so the
/// earliest), that one's, up to the root, at most `max` spans; root first.
pub fn causal_path(spans: &[Span], dag: &TraceDag, i: u32, max: usize) -> Vec<Span> {
    let mut path = vec![i];
    let mut at = i;
    while path.len() < max.max(1) {
        let parent = dag
            .graph
            .neighbors_directed(TraceDag::node(at), petgraph::Direction::Incoming)
            .map(|n| n.index() as u32)
            .filter(|p| !path.contains(p))
            .min();
        match parent {
            Some(p) => {
                path.push(p);
                at = p;
            }
            None => break,
        }
    }
    path.iter().rev().filter_map(|&j| spans.get(j as usize).cloned()).collect()
}

/// The message_loss document of producer span `i`.
pub fn loss_document(t: &TraceCtx<'_>, i: u32) -> Anomaly {
    let s = &t.spans[i as usize];
    let destination = t.names.resolve(s.destination);
    let dest_text =
        if destination.is_empty() { "an unnamed destination".to_owned() } else { destination.to_owned() };
    let summary = format!(
        "{} published a message to {} in {} (span {}) that no span of trace {} or of another trace consumed.",
        t.name(i),
        dest_text,
        t.names.resolve(s.operation),
        s.span_id,
        s.trace_id
    );
    let details = Details {
        destination: Some(destination.to_owned()),
        status: Some(LossStatus::Lost),
        ..Details::default()
    };
    t.anomaly(AnomalyKind::MessageLoss, i, summary, details, &[i], Truncated::default())
}

/// orphan_reference: a span whose reference names a span that never arrived.
/// One anomaly per span, listing the missing span ids up to the list limit
/// (the document counts the rest).
pub fn orphan_references(t: &TraceCtx<'_>, dag: &TraceDag, out: &mut Vec<Anomaly>) {
    let max = t.limits.max_list_entries;
    // Per span: how many references are missing, and the first of them.
    let mut by_span: BTreeMap<u32, (usize, Vec<String>)> = BTreeMap::new();
    for (i, r) in &dag.missing {
        let (count, listed) = by_span.entry(*i).or_default();
        *count += 1;
        if max == 0 || listed.len() < max {
            listed.push(r.span_id.to_string());
        }
    }
    for (i, (count, missing)) in by_span {
        let s = &t.spans[i as usize];
        let head = format!(
            "Span {} of {} ({}) references {} ",
            s.span_id,
            t.name(i),
            t.names.resolve(s.operation),
            if count == 1 { "span" } else { "spans" },
        );
        let tail = format!(" that never arrived in trace {}.", s.trace_id);
        // As many ids as the summary has room for, then how many more there are.
        let room = t.limits.max_summary_bytes.saturating_sub(head.len() + tail.len());
        let mut ids = String::new();
        let mut shown = 0;
        for id in &missing {
            let more = format!(" and {} more", count - shown - 1);
            let sep = if shown == 0 { "" } else { ", " };
            let needed = ids.len() + sep.len() + id.len() + if shown + 1 < count { more.len() } else { 0 };
            if shown > 0 && needed > room {
                break;
            }
            ids.push_str(sep);
            ids.push_str(id);
            shown += 1;
        }
        if shown < count {
            ids.push_str(&format!(" and {} more", count - shown));
        }
        let summary = format!("{head}{ids}{tail}");
        let cut = Truncated { missing_span_ids: (count - missing.len()) as u64, ..Truncated::default() };
        let details = Details { missing_span_ids: Some(missing), ..Details::default() };
        out.push(t.anomaly(AnomalyKind::OrphanReference, i, summary, details, &[i], cut));
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
        out.push(t.anomaly(
            AnomalyKind::ReferenceCycle,
            at,
            summary,
            Details::default(),
            c,
            Truncated::default(),
        ));
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
    /// The end of the causal path, at most the list limit of services.
    chain: Vec<String>,
    /// Services of the path before `chain`, left out.
    chain_cut: usize,
    involved: Vec<u32>,
}

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

    let max = t.limits.max_list_entries;
    for (mut cycle, f) in findings {
        let s = &t.spans[f.span as usize];
        let cycle_cut = if max == 0 { 0 } else { cycle.len().saturating_sub(max) };
        cycle.truncate(cycle.len() - cycle_cut);
        let summary = format!(
            "Trace {} re-enters {} {} times along {}{} (loop {}{}).",
            s.trace_id,
            t.name(f.span),
            f.reentries,
            if f.chain_cut > 0 { "… → " } else { "" },
            f.chain.join(" → "),
            cycle.join(" → "),
            if cycle_cut > 0 { " → …" } else { "" }
        );
        let details = Details {
            chain: Some(f.chain),
            cycle: Some(cycle),
            reentries: Some(f.reentries),
            ..Details::default()
        };
        let cut = Truncated { chain: f.chain_cut as u64, cycle: cycle_cut as u64, ..Truncated::default() };
        out.push(t.anomaly(AnomalyKind::RecursiveChain, f.span, summary, details, &f.involved, cut));
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
        let max = t.limits.max_list_entries;
        let from = if max == 0 { 0 } else { path.len().saturating_sub(max) };
        let chain = path[from..].iter().map(|s| t.names.resolve(s.service).to_owned()).collect();
        let involved = path[from..].iter().map(|s| s.span).collect();
        findings.insert(cycle, Finding { reentries, span, chain, chain_cut: from, involved });
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
    out.push(t.anomaly(AnomalyKind::OversizedTrace, 0, summary, details, &[0], Truncated::default()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::anomaly::{json_len, DocLimits};
    use crate::model::text::TRUNCATION_MARKER;
    use crate::model::{Interner, NameKind, RefKind, Span, SpanId, SpanRef, TraceId};

    const TRACE: TraceId = TraceId { high: 0, low: 0x5eed };

    fn span(names: &mut Interner, id: u64, service: &str, parents: &[u64]) -> Span {
        Span {
            trace_id: TRACE,
            span_id: SpanId(id),
            start_us: id as i64,
            duration_us: 1,
            refs: parents
                .iter()
                .map(|&p| SpanRef { trace_id: TRACE, span_id: SpanId(p), kind: RefKind::FollowsFrom })
                .collect(),
            service: names.intern_name(NameKind::Service, service),
            operation: names.intern_name(NameKind::Operation, &format!("{service}-op")),
            ..Span::default()
        }
    }

    fn ctx<'a>(spans: &'a [Span], names: &'a Interner, limits: DocLimits) -> TraceCtx<'a> {
        TraceCtx { spans, names, detected_at_us: 0, limits }
    }

    fn json(a: &Anomaly) -> serde_json::Value {
        serde_json::to_value(a).expect("serializes")
    }

    #[test]
    fn a_span_with_100k_missing_references_is_one_small_document_that_counts_the_rest() {
        let mut names = Interner::new();
        let n = 100_000u64;
        let parents: Vec<u64> = (1_000..1_000 + n).collect();
        let spans = vec![span(&mut names, 1, "consumer", &parents)];
        let dag = TraceDag::build(&spans);
        let mut out = Vec::new();
        orphan_references(&ctx(&spans, &names, DocLimits::default()), &dag, &mut out);
        assert_eq!(out.len(), 1);
        let a = &out[0];
        let size = json_len(a);
        assert!(size <= 64 << 10, "{size} bytes");
        assert_eq!(a.details.missing_span_ids.as_ref().map(Vec::len), Some(64));
        assert_eq!(a.truncated.missing_span_ids, n - 64);
        assert_eq!(a.truncated.references, n - 64, "the snapshot span shows 64 of its references");
        assert_eq!(a.evidence.trace[0].references.len(), 64);
        assert!(a.summary.len() <= 1024, "{} bytes", a.summary.len());
        let listed = a.summary.matches(", 00").count() as u64 + 1;
        assert!(listed > 10, "{}", a.summary);
        let more =
            format!(" and {} more that never arrived in trace 00000000000000000000000000005eed.", n - listed);
        assert!(a.summary.ends_with(&more), "{}", a.summary);
        assert_eq!(a.truncated.summary_bytes, 0, "built to fit, not cut");
        assert_eq!(json(a)["truncated"], serde_json::json!({"missing_span_ids": 99936, "references": 99936}));
        // Deterministic: the same trace gives the same bytes.
        let mut again = Vec::new();
        orphan_references(&ctx(&spans, &names, DocLimits::default()), &dag, &mut again);
        assert_eq!(serde_json::to_string(&again[0]).ok(), serde_json::to_string(a).ok());
    }

    #[test]
    fn a_document_with_nothing_cut_has_no_truncated_field() {
        let mut names = Interner::new();
        let spans = vec![span(&mut names, 1, "a", &[9])];
        let dag = TraceDag::build(&spans);
        let mut out = Vec::new();
        orphan_references(&ctx(&spans, &names, DocLimits::default()), &dag, &mut out);
        let v = json(&out[0]);
        assert!(v.get("truncated").is_none(), "{v}");
        assert_eq!(v["summary"], "Span 0000000000000001 of a (a-op) references span 0000000000000009 that never arrived in trace 00000000000000000000000000005eed.");
    }

    #[test]
    fn a_long_reference_cycle_with_long_names_fits_the_budget() {
        let mut names = Interner::new();
        let n = 10_000u64;
        // Span i references span i-1, span 1 references span n: one cycle through all.
        let spans: Vec<Span> = (1..=n)
            .map(|i| {
                let service = format!("{i:04}{}", "s".repeat(1_000));
                span(&mut names, i, &service, &[if i == 1 { n } else { i - 1 }])
            })
            .collect();
        assert!(names.resolve(spans[0].service).ends_with(TRUNCATION_MARKER));
        let dag = TraceDag::build(&spans);
        let cycles = dag.cycles();
        let mut out = Vec::new();
        reference_cycles(&ctx(&spans, &names, DocLimits::default()), &cycles, &mut out);
        assert_eq!(out.len(), 1);
        let a = &out[0];
        let size = json_len(a);
        assert!(size <= 64 << 10, "{size} bytes");
        assert_eq!(a.evidence.span_ids.len(), 200);
        assert_eq!(a.truncated.evidence_spans, n - 200);
        // Names at the 256-byte limit: the budget, not the span count, ends the snapshot.
        let shown = a.evidence.trace.len() as u64;
        assert!(shown > 10 && shown < 200, "{shown} snapshot spans");
        assert_eq!(a.evidence.omitted_spans, n - shown);
    }

    #[test]
    fn a_loop_through_many_services_lists_the_first_entries_and_counts_the_rest() {
        let mut names = Interner::new();
        // A → S0 → … → S99 → A → S0 → … → S99 → A: two re-entries of A, a 101-service loop.
        let mut order = vec!["A".to_owned()];
        for _ in 0..2 {
            order.extend((0..100).map(|i| format!("S{i:02}")));
            order.push("A".to_owned());
        }
        let spans: Vec<Span> = order
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let id = i as u64 + 1;
                let parents: Vec<u64> = (i > 0).then_some(id - 1).into_iter().collect();
                span(&mut names, id, s, &parents)
            })
            .collect();
        let dag = TraceDag::build(&spans);
        let mut out = Vec::new();
        let in_cycle = vec![false; spans.len()];
        recursive_chains(&ctx(&spans, &names, DocLimits::default()), &dag, &in_cycle, 2, &mut out);
        let a =
            out.iter().find(|a| a.details.cycle.as_ref().is_some_and(|c| c[0] == "A")).expect("the A loop");
        assert_eq!(a.details.cycle.as_ref().map(Vec::len), Some(64));
        assert_eq!(a.truncated.cycle, 101 - 64);
        assert_eq!(a.details.chain.as_ref().map(Vec::len), Some(64));
        assert_eq!(a.truncated.chain, order.len() as u64 - 64);
        assert!(a.summary.contains("along … → "), "{}", a.summary);
    }

    #[test]
    fn a_budget_too_small_for_the_lists_cuts_them_too_and_still_fits() {
        let mut names = Interner::new();
        let parents: Vec<u64> = (1_000..1_064).collect();
        let spans = vec![span(&mut names, 1, &"\u{1}".repeat(300), &parents)];
        let dag = TraceDag::build(&spans);
        let limits = DocLimits { max_document_bytes: 5_000, ..DocLimits::default() };
        let mut out = Vec::new();
        orphan_references(&ctx(&spans, &names, limits), &dag, &mut out);
        let a = &out[0];
        assert!(json_len(a) <= 5_000, "{} bytes", json_len(a));
        let listed = a.details.missing_span_ids.as_ref().map_or(0, Vec::len) as u64;
        assert_eq!(listed + a.truncated.missing_span_ids, 64, "every missing id listed or counted");
        assert!(a.truncated.missing_span_ids > 0);
        assert!(a.evidence.trace.is_empty() && a.evidence.omitted_spans == 1);
    }
}
