//! The labelled anomaly counters behind `poirot_anomalies_total`,
//! `poirot_message_loss_total` and `poirot_message_loss_resolved_total`.

use super::{Anomaly, AnomalyKind};
use crate::model::{Interner, Span, SpanKind, Sym};
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;

/// Anomalies by kind and service, and lost messages by producer service and
/// destination: the labelled anomaly counters. Every series starts at 0 when its
/// service (or producer and destination) is first seen, so `increase()` and alerts
/// see the first anomaly too. Capped like RED: past `max_series` label sets, new
/// ones count under `__overflow__`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnomalyCounters {
    pub by_service: BTreeMap<(AnomalyKind, Sym), u64>,
    pub message_loss: BTreeMap<(Sym, Sym), u64>,
    /// Reported losses a consumer resolved after all, by producer service and destination.
    pub message_loss_resolved: BTreeMap<(Sym, Sym), u64>,
    services: FxHashSet<Sym>,
    producers: FxHashSet<(Sym, Sym)>,
    max_series: usize,
    overflow: Sym,
}

impl AnomalyCounters {
    pub fn with_limit(max_series: usize, overflow: Sym) -> Self {
        AnomalyCounters { max_series, overflow, ..AnomalyCounters::default() }
    }

    /// Starts the series of a span's service (and of its producer and destination) at 0.
    pub(super) fn seen(&mut self, s: &Span) {
        let full = |n: usize, max: usize| max > 0 && n >= max;
        if !self.services.contains(&s.service)
            && !full(self.by_service.len() + AnomalyKind::ALL.len(), self.max_series)
        {
            self.services.insert(s.service);
            for kind in AnomalyKind::ALL {
                self.by_service.entry((kind, s.service)).or_insert(0);
            }
        }
        if s.kind == SpanKind::Producer {
            let pair = (s.service, s.destination);
            if !self.producers.contains(&pair) && !full(self.message_loss.len(), self.max_series) {
                self.producers.insert(pair);
                self.message_loss.entry(pair).or_insert(0);
                self.message_loss_resolved.entry(pair).or_insert(0);
            }
        }
    }

    /// A reported loss of `producer` to `destination` was resolved.
    pub(super) fn resolved(&mut self, producer: Sym, destination: Sym) {
        let key = if self.message_loss_resolved.contains_key(&(producer, destination))
            || self.max_series == 0
            || self.message_loss_resolved.len() < self.max_series
        {
            (producer, destination)
        } else {
            (self.overflow, self.overflow)
        };
        *self.message_loss_resolved.entry(key).or_default() += 1;
    }

    pub(super) fn count(&mut self, a: &Anomaly, names: &Interner) {
        let service = names.get(&a.service).unwrap_or(self.overflow);
        let full = |n: usize| self.max_series > 0 && n >= self.max_series;
        let key = (a.kind, service);
        let key = if full(self.by_service.len()) && !self.by_service.contains_key(&key) {
            (a.kind, self.overflow)
        } else {
            key
        };
        *self.by_service.entry(key).or_default() += 1;
        if a.kind == AnomalyKind::MessageLoss {
            let destination = a.details.destination.as_deref().and_then(|d| names.get(d)).unwrap_or(Sym(0));
            let key = (service, destination);
            let key = if full(self.message_loss.len()) && !self.message_loss.contains_key(&key) {
                (self.overflow, self.overflow)
            } else {
                key
            };
            *self.message_loss.entry(key).or_default() += 1;
        }
    }
}
