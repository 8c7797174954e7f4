//! Trace and span identifiers: fixed-width integers, written as lowercase hex.

use std::fmt;

/// A 128-bit trace id. Written as 32 lowercase hex digits everywhere poirot writes one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId {
    pub high: u64,
    pub low: u64,
}

/// A 64-bit span id. Written as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub u64);

impl TraceId {
    pub const fn new(high: u64, low: u64) -> Self {
        TraceId { high, low }
    }

    pub fn is_zero(self) -> bool {
        self.high == 0 && self.low == 0
    }

    /// From the 16 big-endian bytes of the wire formats; `None` for another length.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; 16] = b.try_into().ok()?;
        let v = u128::from_be_bytes(*b);
        Some(TraceId::new((v >> 64) as u64, v as u64))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        (((self.high as u128) << 64) | self.low as u128).to_be_bytes()
    }

    /// Parses 1 to 32 hex digits (Jaeger UI drops leading zeros of the high half).
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() > 32 {
            return None;
        }
        let v = hex_value(s.as_bytes())?;
        Some(TraceId::new((v >> 64) as u64, v as u64))
    }

    /// The 32 lowercase hex digits, without allocating (Kafka keys on the hot path).
    pub fn to_hex(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let v = ((self.high as u128) << 64) | self.low as u128;
        for (i, o) in out.iter_mut().enumerate() {
            *o = HEX_DIGITS[((v >> (124 - 4 * i)) & 0xf) as usize];
        }
        out
    }
}

impl SpanId {
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; 8] = b.try_into().ok()?;
        Some(SpanId(u64::from_be_bytes(*b)))
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() > 16 {
            return None;
        }
        hex_value(s.as_bytes()).map(|v| SpanId(v as u64))
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The value of 1 to 32 hex digits (either case); `None` for anything else.
#[inline]
fn hex_value(s: &[u8]) -> Option<u128> {
    if s.is_empty() {
        return None;
    }
    let mut v: u128 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u128::from(d);
    }
    Some(v)
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.high, self.low)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_fixed_width_lowercase() {
        let t = TraceId::new(0, 0xAB);
        assert_eq!(t.to_string(), "000000000000000000000000000000ab");
        assert_eq!(SpanId(0xC).to_string(), "000000000000000c");
    }

    #[test]
    fn parses_short_and_full_hex() {
        assert_eq!(TraceId::from_hex("ab"), Some(TraceId::new(0, 0xab)));
        let full = "0123456789abcdef0011223344556677";
        assert_eq!(TraceId::from_hex(full).map(|t| t.to_string()).as_deref(), Some(full));
        assert_eq!(TraceId::from_hex("+ab"), None);
        assert_eq!(TraceId::from_hex("xyz"), None);
        assert_eq!(TraceId::from_hex(""), None);
        assert_eq!(TraceId::from_hex(&"f".repeat(33)), None);
        assert_eq!(TraceId::from_hex("AB"), Some(TraceId::new(0, 0xab)));
        let t = TraceId::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        assert_eq!(&t.to_hex(), t.to_string().as_bytes());
        assert_eq!(SpanId::from_hex("fedcba9876543210"), Some(SpanId(0xfedc_ba98_7654_3210)));
        assert_eq!(SpanId::from_hex("-1"), None);
        assert_eq!(SpanId::from_hex("00000000000000000"), None);
    }

    #[test]
    fn bytes_round_trip() {
        let t = TraceId::new(0x0102030405060708, 0x090a0b0c0d0e0f10);
        assert_eq!(TraceId::from_bytes(&t.to_bytes()), Some(t));
        assert_eq!(TraceId::from_bytes(&[1, 2, 3]), None);
        assert_eq!(SpanId::from_bytes(&SpanId(77).to_bytes()), Some(SpanId(77)));
    }
}
