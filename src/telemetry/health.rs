//! Readiness: whether poirot is doing its job right now, as `/readyz` and
//! `poirot healthcheck` report it. Liveness (`/healthz`) is separate: a process
//! that serves is alive even while a sink is down.
//!
//! Each part that talks to a server is a [`Component`] with a [`State`]. The
//! Kafka source and the sinks set their own state on a cloned [`Health`]
//! handle; poirot is ready when every registered component is [`State::Ok`]. A
//! sink that writes successfully while it is behind (catching up after an
//! outage) is `Ok`; one whose writes fail is `Failing`. A handle with no
//! registered component is ready (`poirot demo` registers none).

use crate::model::time::format_rfc3339_us;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest failure reason kept (bytes); longer ones are cut at a character boundary.
pub const MAX_REASON: usize = 1000;

/// A part of poirot that depends on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// The consumer of the span topic (brokers reachable, credentials accepted).
    Kafka,
    /// The producer of the repartition topic.
    Repartition,
    /// The producer of the dead-letter topic.
    DeadLetters,
    /// The anomaly sink.
    Elasticsearch,
    /// The dependency sink.
    Neo4j,
    /// The files of `poirot run --out`.
    Files,
}

impl Component {
    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Component::Kafka => "kafka",
            Component::Repartition => "repartition",
            Component::DeadLetters => "dead_letters",
            Component::Elasticsearch => "elasticsearch",
            Component::Neo4j => "neo4j",
            Component::Files => "files",
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a component is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Working (a sink that is catching up but writing is working).
    Ok,
    /// Not connected yet.
    Starting,
    /// Cannot do its work, since `since`.
    Failing { reason: String, since: SystemTime },
}

impl State {
    /// Failing from now on (see [`Health::set`] for how `since` is kept).
    pub fn failing(reason: impl Into<String>) -> State {
        State::Failing { reason: reason.into(), since: SystemTime::now() }
    }

    fn name(&self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Starting => "starting",
            State::Failing { .. } => "failing",
        }
    }
}

/// The readiness of one process; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<Component, State>>>,
}

impl Health {
    /// A handle with no component: ready until one is registered.
    pub fn new() -> Health {
        Health::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Component, State>> {
        // The map is valid after any panic (every change is one insert).
        self.components.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `component` as [`State::Starting`] unless it is known already.
    pub fn register(&self, component: Component) {
        self.lock().entry(component).or_insert(State::Starting);
    }

    /// Sets the state of `component` (registering it). A component that was
    /// failing already keeps its first `since`; the reason is the latest one.
    pub fn set(&self, component: Component, state: State) {
        let state = match state {
            State::Failing { mut reason, since } => {
                truncate(&mut reason, MAX_REASON);
                State::Failing { reason, since }
            }
            other => other,
        };
        let mut map = self.lock();
        let state = match (map.get(&component), state) {
            (Some(State::Failing { since, .. }), State::Failing { reason, .. }) => {
                State::Failing { reason, since: *since }
            }
            (_, state) => state,
        };
        map.insert(component, state);
    }

    /// `set(component, State::Ok)`.
    pub fn ok(&self, component: Component) {
        self.set(component, State::Ok);
    }

    /// `set(component, State::failing(reason))`.
    pub fn failing(&self, component: Component, reason: impl Into<String>) {
        self.set(component, State::failing(reason));
    }

    /// Removes `component` (a sink that was turned off).
    pub fn unregister(&self, component: Component) {
        self.lock().remove(&component);
    }

    /// The state of `component`, if registered.
    pub fn state(&self, component: Component) -> Option<State> {
        self.lock().get(&component).cloned()
    }

    /// True when every registered component is [`State::Ok`].
    pub fn ready(&self) -> bool {
        self.lock().values().all(|s| *s == State::Ok)
    }

    /// What `/readyz` answers.
    pub fn report(&self) -> Report {
        let now = SystemTime::now();
        let map = self.lock();
        let components = map
            .iter()
            .map(|(c, s)| {
                let mut r = ComponentReport { state: s.name().into(), ..ComponentReport::default() };
                if let State::Failing { reason, since } = s {
                    let us = since.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
                    r.reason = Some(reason.clone());
                    r.since = Some(format_rfc3339_us(us));
                    r.for_seconds = Some(now.duration_since(*since).map(|d| d.as_secs()).unwrap_or(0));
                }
                (c.name().to_owned(), r)
            })
            .collect();
        Report { ready: map.values().all(|s| *s == State::Ok), components }
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary, marking the cut.
fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("...");
}

/// The readiness report (`/readyz`'s JSON body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub ready: bool,
    /// By component name.
    pub components: BTreeMap<String, ComponentReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentReport {
    /// `ok`, `starting` or `failing`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started failing (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_seconds: Option<u64>,
}

impl Report {
    /// One line naming what is not ok and why, e.g. `elasticsearch failing for 12 s
    /// (since ...): connection refused; neo4j starting`; empty when ready.
    pub fn problems(&self) -> String {
        self.components
            .iter()
            .filter(|(_, r)| r.state != "ok")
            .map(|(name, r)| match (&r.reason, &r.since) {
                (Some(reason), Some(since)) => format!(
                    "{name} {} for {} s (since {since}): {reason}",
                    r.state,
                    r.for_seconds.unwrap_or(0)
                ),
                (Some(reason), None) => format!("{name} {}: {reason}", r.state),
                _ => format!("{name} {}", r.state),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ready_only_when_every_registered_component_is_ok() {
        let h = Health::new();
        assert!(h.ready(), "nothing registered: ready (the demo)");
        h.register(Component::Kafka);
        h.register(Component::Elasticsearch);
        assert!(!h.ready());
        assert_eq!(h.state(Component::Kafka), Some(State::Starting));
        h.ok(Component::Kafka);
        assert!(!h.ready(), "elasticsearch still starting");
        h.ok(Component::Elasticsearch);
        assert!(h.ready());
        h.failing(Component::Elasticsearch, "bulk write: 401 Unauthorized");
        assert!(!h.ready());
        h.ok(Component::Elasticsearch);
        assert!(h.ready());
        assert_eq!(h.state(Component::Neo4j), None);
    }

    #[test]
    fn register_does_not_reset_a_known_component() {
        let h = Health::new();
        h.ok(Component::Neo4j);
        h.register(Component::Neo4j);
        assert_eq!(h.state(Component::Neo4j), Some(State::Ok));
        h.unregister(Component::Neo4j);
        assert_eq!(h.state(Component::Neo4j), None);
    }

    #[test]
    fn clones_share_the_state_across_threads() {
        let h = Health::new();
        h.register(Component::Kafka);
        let other = h.clone();
        std::thread::spawn(move || other.ok(Component::Kafka)).join().expect("thread");
        assert!(h.ready());
    }

    #[test]
    fn failing_keeps_its_first_since_and_the_latest_reason() {
        let h = Health::new();
        let first = SystemTime::now() - Duration::from_secs(30);
        h.set(Component::Kafka, State::Failing { reason: "cannot reach Kafka".into(), since: first });
        h.failing(Component::Kafka, "authentication failed");
        assert_eq!(
            h.state(Component::Kafka),
            Some(State::Failing { reason: "authentication failed".into(), since: first })
        );
        h.ok(Component::Kafka);
        h.failing(Component::Kafka, "again");
        match h.state(Component::Kafka) {
            Some(State::Failing { since, .. }) => assert!(since > first, "a new failure starts anew"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_report_names_what_fails_and_why() {
        let h = Health::new();
        h.ok(Component::Kafka);
        h.register(Component::Neo4j);
        let since = SystemTime::now() - Duration::from_secs(12);
        h.set(Component::Elasticsearch, State::Failing { reason: "connection refused".into(), since });
        let r = h.report();
        assert!(!r.ready);
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["ready"], false);
        assert_eq!(json["components"]["kafka"], serde_json::json!({"state": "ok"}));
        assert_eq!(json["components"]["neo4j"]["state"], "starting");
        let es = &json["components"]["elasticsearch"];
        assert_eq!(es["state"], "failing");
        assert_eq!(es["reason"], "connection refused");
        assert!(es["for_seconds"].as_u64().is_some_and(|s| (12..20).contains(&s)), "{es}");
        assert!(es["since"].as_str().is_some_and(|s| s.ends_with('Z')), "{es}");
        let back: Report = serde_json::from_value(json).expect("parses back");
        assert_eq!(back, r);
        let line = r.problems();
        assert!(line.starts_with("elasticsearch failing for 1"), "{line}");
        assert!(line.contains(": connection refused; neo4j starting"), "{line}");
        assert!(!line.contains("kafka"), "{line}");
        h.ok(Component::Neo4j);
        h.ok(Component::Elasticsearch);
        let r = h.report();
        assert!(r.ready);
        assert_eq!(r.problems(), "");
    }

    #[test]
    fn long_reasons_are_cut() {
        let h = Health::new();
        h.failing(Component::Files, "é".repeat(5000));
        match h.state(Component::Files) {
            Some(State::Failing { reason, .. }) => {
                assert!(reason.len() <= MAX_REASON && reason.ends_with("..."), "{}", reason.len())
            }
            other => panic!("{other:?}"),
        }
    }
}
