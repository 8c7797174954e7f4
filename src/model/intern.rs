//! Interning of service, operation and attribute strings: a span carries 4-byte
//! symbols instead of owned strings, which keeps buffered spans small and makes
//! grouping keys cheap to hash and compare.
//!
//! Names from input enter through [`Interner::intern_name`], which cuts a name
//! longer than the name length limit (with [`text::TRUNCATION_MARKER`]) and counts the
//! cut by [`NameKind`]: every output that shows a name (metric labels, Neo4j
//! nodes, anomaly documents) then holds a bounded one.

use super::text;
use rustc_hash::FxHashMap;

/// What a name from input names; cut names are counted by kind.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum NameKind {
    /// A span's service (`process.serviceName`, resource `service.name`).
    Service,
    /// A span's operation (its name).
    Operation,
    /// A messaging destination (topic or queue).
    Destination,
    /// The other tags poirot keeps: a client span's peer (`peer.service`,
    /// `db.name`, `db.system`, `server.address`).
    Attribute,
}

impl NameKind {
    pub const ALL: [NameKind; 4] =
        [NameKind::Service, NameKind::Operation, NameKind::Destination, NameKind::Attribute];

    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Service => "service",
            NameKind::Operation => "operation",
            NameKind::Destination => "destination",
            NameKind::Attribute => "attribute",
        }
    }
}

/// The default longest name, in bytes, [`text::TRUNCATION_MARKER`] included. Real
/// service and operation names are short (an HTTP route, a gRPC method
/// `/pkg.Service/Method`, a topic: well under 128 bytes); 256 keeps all of those
/// whole while a name that is really a payload (an SQL statement, a URL with
/// its query, a whole document) costs at most 256 bytes in every label, node
/// and document it appears in.
pub const DEFAULT_MAX_NAME_BYTES: usize = 256;

/// An interned string. Only meaningful with the [`Interner`] that made it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Sym(pub u32);

/// The name that stands for everything past a limit: the series past a metric's
/// series limit, and names past the interner's name limit.
pub const OVERFLOW: &str = "__overflow__";

/// Append-only string table. Symbol 0 is always the empty string.
#[derive(Debug)]
pub struct Interner {
    ids: FxHashMap<Box<str>, Sym>,
    strings: Vec<Box<str>>,
    /// Most names held (0: no limit); past it new names become [`OVERFLOW`], so
    /// span data with ever new names cannot grow memory without bound.
    limit: usize,
    overflowed: u64,
    /// Longest name [`intern_name`](Self::intern_name) keeps, in bytes (0: no limit).
    max_name_bytes: usize,
    /// Names cut, by [`NameKind`].
    truncated: [u64; NameKind::ALL.len()],
    /// The order a span's peer is named in: decoders read it here, as they
    /// read the name limits.
    peer_attributes: Vec<super::PeerAttribute>,
    /// Attribute keys whose values become extra RED labels (`red.dimensions`).
    dimensions: std::sync::Arc<[Box<str>]>,
}

impl Default for Interner {
    fn default() -> Self {
        let mut i = Interner {
            ids: FxHashMap::default(),
            strings: Vec::new(),
            limit: 0,
            overflowed: 0,
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            truncated: [0; NameKind::ALL.len()],
            peer_attributes: super::DEFAULT_PEER_ATTRIBUTES.to_vec(),
            dimensions: std::sync::Arc::new([]),
        };
        i.intern("");
        i
    }
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    /// An interner that holds at most `limit` names (0: no limit; else at least the
    /// empty name and [`OVERFLOW`]).
    pub fn with_limit(limit: usize) -> Self {
        let mut i = Self::default();
        i.intern(OVERFLOW);
        i.limit = if limit == 0 { 0 } else { limit.max(2) };
        i
    }

    /// An interner of at most `limit` names (see [`with_limit`](Self::with_limit))
    /// whose input names are cut to `max_name_bytes` (0: no limit).
    pub fn with_limits(limit: usize, max_name_bytes: usize) -> Self {
        let mut i = Self::with_limit(limit);
        i.max_name_bytes = max_name_bytes;
        i
    }

    /// Sets the attributes a span's peer is named from, first present wins
    /// (none: spans name no peer, and no virtual node is drawn).
    pub fn set_peer_attributes(&mut self, order: Vec<super::PeerAttribute>) {
        self.peer_attributes = order;
    }

    pub fn peer_attributes(&self) -> &[super::PeerAttribute] {
        &self.peer_attributes
    }

    /// Sets the attribute keys (span, else resource) whose values label RED
    /// series; a span keeps them as one name ([`super::Span::dimensions`]).
    pub fn set_dimensions(&mut self, keys: &[String]) {
        self.dimensions = keys.iter().map(|k| Box::<str>::from(k.as_str())).collect();
    }

    /// The dimension keys (a shared handle: decoders hold it while they intern).
    pub fn dimensions(&self) -> std::sync::Arc<[Box<str>]> {
        std::sync::Arc::clone(&self.dimensions)
    }

    pub fn dimension_count(&self) -> usize {
        self.dimensions.len()
    }

    /// The longest name kept, in bytes (0: no limit).
    pub fn max_name_bytes(&self) -> usize {
        self.max_name_bytes
    }

    /// Names of `kind` cut to the length limit so far (one per span field cut).
    pub fn truncated(&self, kind: NameKind) -> u64 {
        self.truncated[kind as usize]
    }

    /// `s` as it would be kept: cut to the name length limit, marker included.
    pub fn capped<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        if self.max_name_bytes == 0 {
            return std::borrow::Cow::Borrowed(s);
        }
        text::truncate(s, self.max_name_bytes).0
    }

    /// Interns a name read from input: one longer than the name length limit is
    /// cut at a char boundary and ends with [`text::TRUNCATION_MARKER`], and the cut is
    /// counted under `kind`. A name cut once is not cut again (it fits).
    pub fn intern_name(&mut self, kind: NameKind, s: &str) -> Sym {
        if self.max_name_bytes == 0 || s.len() <= self.max_name_bytes {
            return self.intern(s);
        }
        self.truncated[kind as usize] += 1;
        let (cut, _) = text::truncate(s, self.max_name_bytes);
        self.intern(&cut)
    }

    /// Lookups of new names answered with [`OVERFLOW`] because the table was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Interns `s` as it is: for poirot's own names. Names from input go
    /// through [`intern_name`](Self::intern_name).
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&sym) = self.ids.get(s) {
            return sym;
        }
        if self.limit > 0 && self.strings.len() >= self.limit {
            self.overflowed += 1;
            return self.ids.get(OVERFLOW).copied().unwrap_or_default();
        }
        let sym = Sym(self.strings.len() as u32);
        self.strings.push(s.into());
        self.ids.insert(s.into(), sym);
        sym
    }

    /// The symbol of `s` if it was interned before.
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }

    pub fn resolve(&self, sym: Sym) -> &str {
        self.strings.get(sym.0 as usize).map(|s| &**s).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::text::TRUNCATION_MARKER;

    #[test]
    fn interns_once() {
        let mut i = Interner::new();
        let a = i.intern("frontend");
        let b = i.intern("driver");
        assert_eq!(i.intern("frontend"), a);
        assert_ne!(a, b);
        assert_eq!(i.resolve(b), "driver");
        assert_eq!(i.resolve(Sym::default()), "");
    }

    #[test]
    fn names_past_the_limit_become_overflow() {
        let mut i = Interner::with_limit(4);
        let a = i.intern("a");
        let b = i.intern("b");
        let c = i.intern("c");
        assert_eq!(i.resolve(c), OVERFLOW);
        assert_eq!(i.intern("a"), a, "known names keep their symbol");
        assert_ne!(a, b);
        assert_eq!(i.intern("d"), c);
        assert_eq!((i.len(), i.overflowed()), (4, 2));
    }

    #[test]
    fn long_names_are_cut_once_and_counted_by_kind() {
        let mut i = Interner::with_limits(0, 32);
        let long = "€".repeat(100); // 300 bytes, 3 per character
        let a = i.intern_name(NameKind::Operation, &long);
        let cut = i.resolve(a).to_owned();
        assert!(cut.len() <= 32, "{} bytes", cut.len());
        assert!(cut.ends_with(TRUNCATION_MARKER), "{cut}");
        assert_eq!(
            cut.strip_suffix(TRUNCATION_MARKER),
            Some("€€€€€€"),
            "18 bytes of the name, whole characters"
        );
        // The same long name again is the same symbol; the cut name itself fits.
        assert_eq!(i.intern_name(NameKind::Operation, &long), a);
        assert_eq!(i.intern_name(NameKind::Operation, &cut), a);
        assert_eq!(i.intern_name(NameKind::Service, "short"), i.intern("short"));
        i.intern_name(NameKind::Service, &"s".repeat(33));
        let counts: Vec<u64> = NameKind::ALL.iter().map(|&k| i.truncated(k)).collect();
        assert_eq!(counts, [1, 2, 0, 0]);
        assert_eq!(i.capped(&long), cut);
    }

    #[test]
    fn no_name_limit_keeps_names_whole() {
        let mut i = Interner::with_limits(0, 0);
        let long = "x".repeat(10_000);
        let s = i.intern_name(NameKind::Service, &long);
        assert_eq!(i.resolve(s), long);
        assert_eq!(i.truncated(NameKind::Service), 0);
    }
}
