//! The span attributes the analyses need, gathered from tags of any format.

use crate::model::{Interner, NameKind, PeerAttribute, Span, SpanKind, Sym};
use smallvec::SmallVec;
use std::borrow::Cow;

/// Attribute keys poirot reads, in OpenTracing/Jaeger and OpenTelemetry spelling.
pub mod keys {
    pub const SPAN_KIND: &str = "span.kind";
    pub const ERROR: &str = "error";
    pub const OTEL_STATUS_CODE: &str = "otel.status_code";
    pub const PEER_SERVICE: &str = "peer.service";
    pub const DB_SYSTEM: &str = "db.system";
    pub const DB_SYSTEM_NAME: &str = "db.system.name";
    pub const DB_NAME: &str = "db.name";
    pub const DB_NAMESPACE: &str = "db.namespace";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const NET_PEER_NAME: &str = "net.peer.name";
    pub const SERVICE_NAME: &str = "service.name";
    /// A database call's statement (older and current OpenTelemetry spelling).
    pub const DB_STATEMENT: &str = "db.statement";
    pub const DB_QUERY_TEXT: &str = "db.query.text";
    /// Jaeger SDKs' sampling tags on a root span.
    pub const SAMPLER_TYPE: &str = "sampler.type";
    pub const SAMPLER_PARAM: &str = "sampler.param";
    /// The W3C trace state as Jaeger keeps it from OTLP.
    pub const TRACESTATE: &str = "w3c.tracestate";
    /// What poirot itself derived from a span, carried through its repartition
    /// topic: the peer, the joined dimensions, the statement hash, the adjusted count.
    pub const POIROT_PEER: &str = "poirot.peer";
    pub const POIROT_DIMENSIONS: &str = "poirot.dimensions";
    pub const POIROT_STATEMENT: &str = "poirot.statement_hash";
    pub const POIROT_ADJUSTED_COUNT: &str = "poirot.adjusted_count";
    /// On an OTLP link: the OpenTracing relation it stands for (`child_of`, `follows_from`).
    pub const REF_TYPE: &str = "opentracing.ref_type";
    /// The key poirot writes a messaging destination under.
    pub const DESTINATION: &str = "messaging.destination.name";
    /// Every key a messaging destination is read from.
    pub const DESTINATIONS: [&str; 3] =
        ["messaging.destination.name", "messaging.destination", "message_bus.destination"];
}

/// The tag `key` as the `&'static str` [`Attrs`] matches it by, when `Attrs`
/// reads it: wire decoders skip the rest without checking their UTF-8.
#[inline]
pub fn read_key(key: &[u8]) -> Option<&'static str> {
    Some(match key {
        b"span.kind" => keys::SPAN_KIND,
        b"error" => keys::ERROR,
        b"otel.status_code" => keys::OTEL_STATUS_CODE,
        b"peer.service" => keys::PEER_SERVICE,
        b"db.system" => keys::DB_SYSTEM,
        b"db.system.name" => keys::DB_SYSTEM_NAME,
        b"db.name" => keys::DB_NAME,
        b"db.namespace" => keys::DB_NAMESPACE,
        b"server.address" => keys::SERVER_ADDRESS,
        b"net.peer.name" => keys::NET_PEER_NAME,
        b"db.statement" => keys::DB_STATEMENT,
        b"db.query.text" => keys::DB_QUERY_TEXT,
        b"sampler.type" => keys::SAMPLER_TYPE,
        b"sampler.param" => keys::SAMPLER_PARAM,
        b"w3c.tracestate" => keys::TRACESTATE,
        b"poirot.peer" => keys::POIROT_PEER,
        b"poirot.dimensions" => keys::POIROT_DIMENSIONS,
        b"poirot.statement_hash" => keys::POIROT_STATEMENT,
        b"poirot.adjusted_count" => keys::POIROT_ADJUSTED_COUNT,
        b"messaging.destination.name" => keys::DESTINATIONS[0],
        b"messaging.destination" => keys::DESTINATIONS[1],
        b"message_bus.destination" => keys::DESTINATIONS[2],
        _ => return None,
    })
}

/// Attributes found while walking a span's tags.
#[derive(Default, Debug)]
pub struct Attrs<'a> {
    pub kind: Option<SpanKind>,
    pub error: bool,
    pub destination: Option<Cow<'a, str>>,
    /// The peer attributes found, by [`PeerAttribute`] (in its `ALL` order).
    pub peers: [Option<Cow<'a, str>>; PeerAttribute::ALL.len()],
    pub statement: Option<Cow<'a, str>>,
    pub sampler_type: Option<Cow<'a, str>>,
    pub sampler_param: Option<f64>,
    /// The adjusted count a `tracestate` stated (OTLP's field or Jaeger's tag).
    pub tracestate_count: Option<f64>,
    /// The configured dimension keys ([`Interner::dimensions`]), and the values
    /// found: (key index, from the resource, value).
    dimension_keys: &'a [Box<str>],
    dimensions: SmallVec<[(u8, bool, Cow<'a, str>); 2]>,
    /// Carried by poirot's own repartition records ([`keys::POIROT_PEER`] ...).
    carried: Carried<'a>,
}

/// What a span poirot wrote to its repartition topic carries as it was derived.
#[derive(Default, Debug)]
struct Carried<'a> {
    peer: Option<Cow<'a, str>>,
    dimensions: Option<Cow<'a, str>>,
    statement: Option<u32>,
    adjusted_count: Option<f64>,
}

impl<'a> Attrs<'a> {
    /// Attributes that also gather the values of `dimension_keys`.
    pub fn with_dimensions(dimension_keys: &'a [Box<str>]) -> Self {
        Attrs { dimension_keys, ..Attrs::default() }
    }

    pub fn has_dimensions(&self) -> bool {
        !self.dimension_keys.is_empty()
    }

    /// Whether `key` is a dimension: wire decoders read only the keys
    /// [`read_key`] knows and these.
    #[inline]
    pub fn wants(&self, key: &[u8]) -> bool {
        !self.dimension_keys.is_empty() && self.dimension_keys.iter().any(|d| d.as_bytes() == key)
    }

    /// Notes a dimension's value, from the span's attributes or, with
    /// `resource`, its process or resource (the span's win).
    #[inline]
    pub fn dimension(&mut self, key: &str, value: impl Into<Cow<'a, str>>, resource: bool) {
        if let Some(i) = self.dimension_keys.iter().position(|d| **d == *key) {
            self.dimensions.push((i as u8, resource, value.into()));
        }
    }

    /// Notes a resource (Jaeger process) attribute: only dimensions are read there.
    #[inline]
    pub fn resource(&mut self, key: &str, value: impl Into<Cow<'a, str>>) {
        self.dimension(key, value, true);
    }

    /// Notes a string-valued tag (its value borrowed from the record, or
    /// owned when the record escaped it).
    #[inline]
    pub fn string(&mut self, key: &str, value: impl Into<Cow<'a, str>>) {
        let value = value.into();
        if self.has_dimensions() {
            // A dimension may also be a key poirot reads for itself.
            self.dimension(key, value.clone(), false);
        }
        match key {
            keys::SPAN_KIND => self.kind = Some(SpanKind::from_tag(&value)),
            keys::ERROR => self.error |= value == "true",
            keys::OTEL_STATUS_CODE => self.error |= value == "ERROR",
            keys::PEER_SERVICE
            | keys::DB_SYSTEM
            | keys::DB_SYSTEM_NAME
            | keys::DB_NAME
            | keys::DB_NAMESPACE
            | keys::SERVER_ADDRESS
            | keys::NET_PEER_NAME => {
                if let Some(a) = PeerAttribute::from_key(key) {
                    self.peers[a as usize] = Some(value);
                }
            }
            keys::DB_STATEMENT | keys::DB_QUERY_TEXT => self.statement = Some(value),
            keys::SAMPLER_TYPE => self.sampler_type = Some(value),
            // Some SDKs write numbers as strings.
            keys::SAMPLER_PARAM => self.sampler_param = value.trim().parse().ok(),
            keys::TRACESTATE => self.tracestate(&value),
            keys::POIROT_PEER => self.carried.peer = Some(value),
            keys::POIROT_DIMENSIONS => self.carried.dimensions = Some(value),
            keys::POIROT_STATEMENT => {
                self.carried.statement = value.trim().parse().ok().filter(|&h: &u32| h != 0)
            }
            keys::POIROT_ADJUSTED_COUNT => {
                self.carried.adjusted_count =
                    value.trim().parse().ok().filter(|&n: &f64| crate::model::sampling::is_adjusted_count(n))
            }
            k if keys::DESTINATIONS.contains(&k) => {
                self.destination.get_or_insert(value);
            }
            _ => {}
        }
    }

    /// Notes a bool-valued tag (a `const` sampler's `sampler.param` is one).
    #[inline]
    pub fn boolean(&mut self, key: &str, value: bool) {
        match key {
            keys::ERROR => self.error |= value,
            keys::SAMPLER_PARAM => self.sampler_param = Some(f64::from(u8::from(value))),
            _ => {}
        }
        self.dimension(key, if value { "true" } else { "false" }, false);
    }

    /// Notes a number-valued tag (integer or float).
    #[inline]
    pub fn number(&mut self, key: &str, value: f64) {
        match key {
            keys::SAMPLER_PARAM => self.sampler_param = Some(value),
            keys::POIROT_STATEMENT if value >= 1.0 && value <= f64::from(u32::MAX) => {
                self.carried.statement = Some(value as u32)
            }
            keys::POIROT_ADJUSTED_COUNT if crate::model::sampling::is_adjusted_count(value) => {
                self.carried.adjusted_count = Some(value)
            }
            _ => {}
        }
        if !self.dimension_keys.is_empty() {
            self.dimension(key, value.to_string(), false);
        }
    }

    /// Notes a W3C trace state.
    pub fn tracestate(&mut self, tracestate: &str) {
        if let Some(n) = crate::model::sampling::from_tracestate(tracestate) {
            self.tracestate_count = Some(n);
        }
    }

    /// What a span keeps of its statement: a hash, never 0, for telling repeated
    /// statements apart. Statements are not interned: unparameterised SQL has a
    /// value in every one, which would fill the name table.
    pub fn statement_hash(statement: &str) -> u32 {
        let h = crate::model::text::fnv1a64(statement.as_bytes());
        ((h >> 32) as u32 ^ h as u32).max(1)
    }

    /// Fills the attribute fields of `span` (names cut to the name length limit).
    pub fn apply(&self, span: &mut Span, names: &mut Interner) {
        if let Some(k) = self.kind {
            span.kind = k;
        }
        span.error |= self.error;
        span.destination =
            self.destination.as_deref().map_or(Sym(0), |d| names.intern_name(NameKind::Destination, d));
        // Only a client calls a peer. On other spans `server.address` and the
        // like name the span's own side, often from input (a Host header): not
        // a name worth a slot in the table.
        if span.kind == SpanKind::Client {
            let peer =
                self.carried.peer.as_deref().or_else(|| {
                    names.peer_attributes().iter().find_map(|&a| self.peers[a as usize].as_deref())
                });
            span.peer = peer.map_or(Sym(0), |p| names.intern_name(NameKind::Attribute, p));
        }
        span.statement = self
            .carried
            .statement
            .unwrap_or_else(|| self.statement.as_deref().map_or(0, Self::statement_hash));
        let sampler = match (&self.sampler_type, self.sampler_param) {
            (Some(kind), Some(param)) => crate::model::sampling::from_sampler(kind, param),
            _ => None,
        };
        let count = self.carried.adjusted_count.or(self.tracestate_count).or(sampler);
        // Counts are finite and at least 1 by construction; f32 keeps them so.
        span.adjusted_count = count.map_or(0.0, |n| (n as f32).min(f32::MAX));
        // Carried values were cut when first read; one longer than that is not poirot's.
        let (max, count) = (names.max_name_bytes(), names.dimension_count());
        let fits = |d: &&str| count > 0 && (max == 0 || d.len() <= (max + 1).saturating_mul(count));
        let carried = self.carried.dimensions.as_deref().filter(fits);
        if let Some(d) = carried {
            span.dimensions = names.intern(d);
        } else if !self.dimensions.is_empty() {
            span.dimensions = self.dimensions_sym(names);
        }
    }
}

impl Attrs<'_> {
    /// The dimension values in key order, each the span's or else the
    /// resource's, each cut to the name limit, joined.
    fn dimensions_sym(&self, names: &mut Interner) -> Sym {
        let mut joined = String::new();
        for i in 0..self.dimension_keys.len() {
            let of = |resource: bool| {
                self.dimensions.iter().rev().find(|(k, r, _)| usize::from(*k) == i && *r == resource)
            };
            if i > 0 {
                joined.push(crate::model::DIMENSION_SEPARATOR);
            }
            if let Some((_, _, v)) = of(false).or_else(|| of(true)) {
                joined.push_str(&names.capped(&v.replace(crate::model::DIMENSION_SEPARATOR, " ")));
            }
        }
        // A span with none of them is the series with all of them empty.
        if joined.chars().all(|c| c == crate::model::DIMENSION_SEPARATOR) {
            return Sym(0);
        }
        // Each value is cut already; the joined name is poirot's own.
        names.intern(&joined)
    }
}

/// The service name poirot uses when a span names none.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Interns a service name, substituting [`UNKNOWN_SERVICE`] for an empty one.
pub fn service_sym(names: &mut Interner, s: &str) -> Sym {
    names.intern_name(NameKind::Service, if s.is_empty() { UNKNOWN_SERVICE } else { s })
}

/// Interns an operation name.
pub fn operation_sym(names: &mut Interner, s: &str) -> Sym {
    names.intern_name(NameKind::Operation, s)
}

/// Tags written for a span's attributes, in Jaeger vocabulary, as (key, value) strings
/// except `error`, which is a bool.
///
/// What poirot derived and the input's own tags cannot restore whatever the
/// reader's settings (the peer, the dimensions, the statement hash, the adjusted
/// count) is written as `poirot.*` tags: a span poirot writes (its repartition
/// topic, `simulate`) reads back as the same span.
pub fn jaeger_tags<'n>(span: &Span, names: &'n Interner) -> Vec<(&'static str, Cow<'n, str>)> {
    let mut tags = Vec::new();
    if let Some(k) = span.kind.tag_value() {
        tags.push((keys::SPAN_KIND, Cow::Borrowed(k)));
    }
    let mut opt = |key: &'static str, s: Sym| {
        if s != Sym(0) {
            tags.push((key, Cow::Borrowed(names.resolve(s))));
        }
    };
    opt(keys::DESTINATION, span.destination);
    opt(keys::PEER_SERVICE, span.peer);
    opt(keys::POIROT_PEER, span.peer);
    opt(keys::POIROT_DIMENSIONS, span.dimensions);
    if span.statement != 0 {
        tags.push((keys::POIROT_STATEMENT, Cow::Owned(span.statement.to_string())));
    }
    if span.adjusted_count > 0.0 {
        tags.push((keys::POIROT_ADJUSTED_COUNT, Cow::Owned(f64::from(span.adjusted_count).to_string())));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_key_knows_every_key_attrs_reads_and_nothing_else() {
        let read = [
            keys::SPAN_KIND,
            keys::ERROR,
            keys::OTEL_STATUS_CODE,
            keys::PEER_SERVICE,
            keys::DB_SYSTEM,
            keys::DB_SYSTEM_NAME,
            keys::DB_NAME,
            keys::DB_NAMESPACE,
            keys::SERVER_ADDRESS,
            keys::NET_PEER_NAME,
            keys::DB_STATEMENT,
            keys::DB_QUERY_TEXT,
            keys::SAMPLER_TYPE,
            keys::SAMPLER_PARAM,
            keys::TRACESTATE,
        ];
        for k in read.into_iter().chain(keys::DESTINATIONS) {
            assert_eq!(read_key(k.as_bytes()), Some(k));
        }
        for k in ["service.name", "http.method", "", "span.kin", "errors"] {
            assert_eq!(read_key(k.as_bytes()), None, "{k}");
        }
    }
}
