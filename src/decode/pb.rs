//! Generated protobuf types (from `proto/`) and a minimal zero-copy wire reader
//! for the hot Jaeger path.

// `Batch` is read only by tests: the repartition stage writes it by hand.
#[allow(clippy::all, missing_docs, dead_code)]
pub mod jaeger {
    include!(concat!(env!("OUT_DIR"), "/jaeger.api_v2.rs"));
}

#[allow(clippy::all, missing_docs)]
pub mod otlp {
    include!(concat!(env!("OUT_DIR"), "/opentelemetry.proto.trace.v1.rs"));
}

/// Protobuf wire types.
pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// Why the wire reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    Truncated,
    BadVarint,
    BadWireType(u8),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("message is truncated"),
            WireError::BadVarint => f.write_str("varint longer than 10 bytes"),
            WireError::BadWireType(t) => write!(f, "unsupported wire type {t}"),
        }
    }
}

/// Reads protobuf fields from a byte slice without copying.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline(always)]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        // Keys and most lengths fit in one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, WireError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(WireError::Truncated)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(WireError::BadVarint)
    }

    /// The next field number and wire type.
    #[inline(always)]
    pub fn key(&mut self) -> Result<(u32, u8), WireError> {
        let k = self.varint()?;
        Ok(((k >> 3) as u32, (k & 7) as u8))
    }

    #[inline]
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()? as usize;
        let end = self.pos.checked_add(len).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    #[inline]
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let s = self.buf.get(self.pos..self.pos + 8).ok_or(WireError::Truncated)?;
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    /// Skips a field of wire type `wt`.
    pub fn skip(&mut self, wt: u8) -> Result<(), WireError> {
        match wt {
            VARINT => self.varint().map(|_| ()),
            FIXED64 => self.fixed64().map(|_| ()),
            LEN => self.bytes().map(|_| ()),
            FIXED32 => {
                if self.pos + 4 > self.buf.len() {
                    return Err(WireError::Truncated);
                }
                self.pos += 4;
                Ok(())
            }
            t => Err(WireError::BadWireType(t)),
        }
    }
}

/// Appends protobuf fields to a byte vector: the hand-written encoder of the
/// repartition stage, which writes every re-keyed span and cannot afford a
/// generated message per span.
pub struct Writer<'a> {
    pub out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    #[inline]
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    #[inline]
    pub fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    /// A varint field (negative `int32`/`int64` values take ten bytes, as protobuf says).
    #[inline]
    pub fn varint_field(&mut self, field: u32, v: u64) {
        self.key(field, VARINT);
        self.varint(v);
    }

    #[inline]
    pub fn bytes_field(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.out.extend_from_slice(b);
    }

    /// A nested message written by `body`. Its length is not known before it is
    /// written: one byte is reserved for it, and the body moves up in the rare
    /// case that the length needs more.
    #[inline]
    pub fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer<'_>)) {
        self.key(field, LEN);
        let at = self.out.len();
        self.out.push(0);
        body(&mut Writer { out: self.out });
        let len = self.out.len() - at - 1;
        if len < 0x80 {
            self.out[at] = len as u8;
            return;
        }
        let mut prefix = [0u8; 10];
        let mut n = 0;
        let mut v = len as u64;
        while v >= 0x80 {
            prefix[n] = v as u8 | 0x80;
            v >>= 7;
            n += 1;
        }
        prefix[n] = v as u8;
        n += 1;
        self.out.splice(at..at + 1, prefix[..n].iter().copied());
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    #[test]
    fn nested_messages_of_any_length_read_back() {
        for len in [0usize, 1, 127, 128, 300, 16_384, 70_000] {
            let body = vec![7u8; len];
            let mut out = Vec::new();
            let mut w = Writer { out: &mut out };
            w.varint_field(1, 150);
            w.message(2, |w| w.out.extend_from_slice(&body));
            w.bytes_field(3, b"after");
            let mut r = Reader::new(&out);
            assert_eq!(r.key(), Ok((1, VARINT)));
            assert_eq!(r.varint(), Ok(150));
            assert_eq!(r.key(), Ok((2, LEN)));
            assert_eq!(r.bytes(), Ok(&body[..]), "body of {len} bytes");
            assert_eq!(r.key(), Ok((3, LEN)));
            assert_eq!(r.bytes(), Ok(&b"after"[..]));
            assert!(r.at_end());
        }
    }

    #[test]
    fn varints_match_the_reader_at_every_width() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX, (-1i64) as u64] {
            let mut out = Vec::new();
            Writer { out: &mut out }.varint(v);
            assert_eq!(Reader::new(&out).varint(), Ok(v));
        }
    }
}
