//! Jaeger's dependency documents: what its Elasticsearch/OpenSearch storage reads
//! for `/api/dependencies` and the UI's "System Architecture" view.
//!
//! Jaeger's reader (storage v2 `depstore`) searches the daily indices
//! `[<index_prefix>-]jaeger-dependencies-<date>` that a request's lookback
//! spans, with a range query on `timestamp`, and adds up the `callCount` of
//! every `dependencies` entry with the same `parent` and `child`. So one document
//! per bucket of event time and input partition (see
//! [`crate::runtime::pipeline::DependencyBucket`]) adds up to poirot's service
//! edges. Its `_id` names the consumer group, the partition and the bucket and it
//! is written with `create`: written again after a re-read, the first copy stays.

use crate::config::JaegerDependenciesSection;
use crate::runtime::pipeline::DependencyBucket;
use serde_json::{json, Value};

/// Where and under which ids the documents go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JaegerDependencies {
    /// The index name up to the date, as Jaeger builds it.
    index_base: String,
    date_separator: String,
    /// The consumer group, so that two deployments never share an id.
    group: String,
}

impl JaegerDependencies {
    pub fn new(section: &JaegerDependenciesSection, group: &str) -> Self {
        JaegerDependencies {
            index_base: index_base(&section.index_prefix),
            date_separator: section.date_separator.clone(),
            group: group.to_owned(),
        }
    }

    /// The daily index a bucket goes to: the UTC day of its start.
    pub fn index(&self, b: &DependencyBucket) -> String {
        let day = chrono::DateTime::from_timestamp_micros(b.start_us).unwrap_or_default();
        let sep = &self.date_separator;
        format!("{}{}", self.index_base, day.format(&format!("%Y{sep}%m{sep}%d")))
    }

    pub fn id(&self, b: &DependencyBucket) -> String {
        format!("poirot:{}:{}:{}", self.group, b.partition, b.start_us / 1000)
    }

    pub fn document(b: &DependencyBucket) -> Value {
        let links: Vec<Value> = b
            .calls
            .iter()
            .map(|(parent, child, calls)| json!({"parent": parent, "child": child, "callCount": calls}))
            .collect();
        json!({
            "timestamp": crate::model::time::format_rfc3339_us(b.start_us),
            "dependencies": links,
        })
    }
}

/// Jaeger's rule for a prefix: `prefix-` before the base name, unless it already
/// ends with the separator; nothing for an empty prefix.
fn index_base(prefix: &str) -> String {
    const BASE: &str = "jaeger-dependencies-";
    match prefix {
        "" => BASE.to_owned(),
        p if p.ends_with('-') => format!("{p}{BASE}"),
        p => format!("{p}-{BASE}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn section(prefix: &str, sep: &str) -> JaegerDependenciesSection {
        JaegerDependenciesSection {
            enabled: true,
            index_prefix: prefix.into(),
            bucket: Duration::from_secs(60),
            date_separator: sep.into(),
        }
    }

    #[test]
    fn index_names_follow_jaegers_prefix_and_date_rules() {
        // 2026-12-01T23:59:00Z and a minute later, across midnight.
        let bucket = |start_us| DependencyBucket { partition: 3, start_us, calls: vec![] };
        let late = bucket(1_796_169_540_000_000);
        let next = bucket(1_796_169_600_000_000);
        let j = JaegerDependencies::new(&section("", "-"), "g");
        assert_eq!(j.index(&late), "jaeger-dependencies-2026-12-01");
        assert_eq!(j.index(&next), "jaeger-dependencies-2026-12-02");
        assert_eq!(
            JaegerDependencies::new(&section("prod", "."), "g").index(&late),
            "prod-jaeger-dependencies-2026.12.01"
        );
        assert_eq!(
            JaegerDependencies::new(&section("prod-", "-"), "g").index(&late),
            "prod-jaeger-dependencies-2026-12-01"
        );
        assert_eq!(j.id(&late), "poirot:g:3:1796169540000");
    }

    #[test]
    fn the_document_is_what_jaegers_reader_unmarshals() {
        let b = DependencyBucket {
            partition: 0,
            start_us: 1_796_169_540_000_000,
            calls: vec![("frontend".into(), "driver".into(), 7), ("frontend".into(), "route".into(), 70)],
        };
        let d = JaegerDependencies::document(&b);
        assert_eq!(d["timestamp"], "2026-12-01T23:59:00.000000Z");
        assert_eq!(d["dependencies"][1], json!({"parent": "frontend", "child": "route", "callCount": 70}));
    }
}
