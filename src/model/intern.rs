//! Interning of service, operation and attribute strings: a span carries 4-byte
//! symbols instead of owned strings, which keeps buffered spans small and makes
//! grouping keys cheap to hash and compare.

use rustc_hash::FxHashMap;

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
}

impl Default for Interner {
    fn default() -> Self {
        let mut i = Interner { ids: FxHashMap::default(), strings: Vec::new(), limit: 0, overflowed: 0 };
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

    /// Lookups of new names answered with [`OVERFLOW`] because the table was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

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
}
