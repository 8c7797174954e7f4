//! Interning of service, operation and attribute strings: a span carries 4-byte
//! symbols instead of owned strings, which keeps buffered spans small and makes
//! grouping keys cheap to hash and compare.

use rustc_hash::FxHashMap;

/// An interned string. Only meaningful with the [`Interner`] that made it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Sym(pub u32);

/// Append-only string table. Symbol 0 is always the empty string.
#[derive(Debug)]
pub struct Interner {
    ids: FxHashMap<Box<str>, Sym>,
    strings: Vec<Box<str>>,
}

impl Default for Interner {
    fn default() -> Self {
        let mut i = Interner { ids: FxHashMap::default(), strings: Vec::new() };
        i.intern("");
        i
    }
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&sym) = self.ids.get(s) {
            return sym;
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
}
