//! Links applied through link records, remembered beyond any one trace's stay
//! in the closed-trace index, so that exactly once holds across processes:
//!
//! - a **copy** of a link record (its sender died after sending it and sent it
//!   again) is recognised wherever and whenever it is read, and counts nothing;
//! - a producer a link **consumed** is not pending again when its trace is read
//!   again (it was held for another producer, or read again from an older offset
//!   after its partition moved), so it is never reported lost.
//!
//! Each applied link is registered in the finished-trace registry (Neo4j) in
//! the same write as its edge, under pseudo trace ids ([`link_id`],
//! [`consumed_id`]) that the next owner of the partition loads with the finished
//! traces. Both are kept for [`KEEP_US`] of processing time.

use super::link::Link;
use crate::model::{SpanId, TraceId};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

/// How long applied links are remembered: longer than a trace is held for a
/// pending producer with the default deadlines (1 h) plus retention.
pub const KEEP_US: i64 = 2 * 3600 * 1_000_000;
/// Most applied links and consumed producers remembered; past it the oldest go.
const MAX_REMEMBERED: usize = 2_000_000;

const LINK_MARK: u64 = 0x9071_0c11_a9b1_1ed0;
const CONSUMED_MARK: u64 = 0x9071_0c11_c025_0ed0;

/// The registry id of an applied link.
pub fn link_id(link: &Link) -> TraceId {
    TraceId::new(LINK_MARK, link.fingerprint())
}

/// The registry id of a producer consumed through a link.
pub fn consumed_id(trace: TraceId, span: SpanId) -> TraceId {
    let mut h = rustc_hash::FxHasher::default();
    (trace, span).hash(&mut h);
    TraceId::new(CONSUMED_MARK, h.finish())
}

/// What a registry id names, if it is one of these.
enum Kind {
    Link,
    Consumed,
}

fn kind(id: &TraceId) -> Option<Kind> {
    match id.high {
        LINK_MARK => Some(Kind::Link),
        CONSUMED_MARK => Some(Kind::Consumed),
        _ => None,
    }
}

#[derive(Debug, Default)]
pub struct AppliedLinks {
    /// Registry id → when it was learned (µs, processing time).
    ids: FxHashMap<TraceId, i64>,
    order: VecDeque<(i64, TraceId)>,
    /// Remembered ids pushed out by [`MAX_REMEMBERED`] before their time.
    pub evicted: u64,
}

impl AppliedLinks {
    /// Takes `id` if it is an applied link or a consumed producer (from the
    /// registry, or just registered here); false for any other id.
    pub fn remember(&mut self, id: TraceId, now_us: i64) -> bool {
        if kind(&id).is_none() {
            return false;
        }
        if self.ids.insert(id, now_us).is_none() {
            self.order.push_back((now_us, id));
        }
        while self.ids.len() > MAX_REMEMBERED {
            let Some((_, old)) = self.order.pop_front() else { break };
            self.ids.remove(&old);
            self.evicted += 1;
        }
        true
    }

    /// Whether `link` was applied (and its edge written) before.
    pub fn applied(&self, link: &Link) -> bool {
        !self.ids.is_empty() && self.ids.contains_key(&link_id(link))
    }

    /// Whether producer `(trace, span)` was consumed through a link before.
    pub fn consumed(&self, trace: TraceId, span: SpanId) -> bool {
        !self.ids.is_empty() && self.ids.contains_key(&consumed_id(trace, span))
    }

    /// Forgets what was learned more than [`KEEP_US`] before `now_us`.
    pub fn expire(&mut self, now_us: i64) {
        while let Some(&(at, id)) = self.order.front() {
            if now_us - at < KEEP_US {
                break;
            }
            self.order.pop_front();
            if self.ids.get(&id) == Some(&at) {
                self.ids.remove(&id);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::edges::Caller;
    use crate::model::{RefKind, SpanRef, Sym};

    fn link(from: u64, to: u64) -> Link {
        Link {
            to: SpanRef { trace_id: TraceId::new(0, to), span_id: SpanId(to), kind: RefKind::FollowsFrom },
            from_trace: TraceId::new(0, from),
            from_span: SpanId(from),
            caller: Caller {
                service: Sym(1),
                operation: Sym(2),
                destination: Sym(0),
                start_us: 0,
                duration_us: 0,
                error: false,
            },
            replayed: false,
            via: None,
        }
    }

    #[test]
    fn remembers_registry_ids_until_they_expire() {
        let mut a = AppliedLinks::default();
        assert!(!a.remember(TraceId::new(0, 5), 0), "a real trace id is not one of these");
        assert!(a.remember(link_id(&link(1, 2)), 0));
        assert!(a.remember(consumed_id(TraceId::new(0, 2), SpanId(2)), 10));
        assert!(a.applied(&link(1, 2)));
        assert!(!a.applied(&link(3, 2)), "another consumer of the same producer");
        assert!(a.consumed(TraceId::new(0, 2), SpanId(2)));
        a.expire(KEEP_US);
        assert!(!a.applied(&link(1, 2)));
        assert!(a.consumed(TraceId::new(0, 2), SpanId(2)));
        a.expire(KEEP_US + 10);
        assert!(a.is_empty());
    }
}
