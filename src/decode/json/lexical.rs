//! The reader's lexical layer: literals, numbers and strings (with their
//! escapes), each checked against RFC 8259 as it is read.

use super::{Reader, Stop};
use std::borrow::Cow;

impl<'a> Reader<'a> {
    pub(super) fn null(&mut self) -> Result<(), Stop> {
        if self.bytes()[self.pos..].starts_with(b"null") {
            self.pos += 4;
            Ok(())
        } else {
            Err(self.syntax("expected null"))
        }
    }

    /// `true` or `false`.
    pub(super) fn literal(&mut self) -> Result<bool, Stop> {
        let rest = &self.bytes()[self.pos..];
        if rest.starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            Err(self.syntax("expected true or false"))
        }
    }

    /// The text of a number, checked against JSON's number grammar.
    pub(super) fn number(&mut self) -> Result<&'a str, Stop> {
        let b = self.bytes();
        let start = self.pos;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - from
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => {
                self.pos = i;
                return Err(self.syntax("expected a digit"));
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                self.pos = i;
                return Err(self.syntax("expected a digit after '.'"));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                self.pos = i;
                return Err(self.syntax("expected a digit in the exponent"));
            }
        }
        self.pos = i;
        Ok(&self.text[start..i])
    }

    /// The string starting at `pos` (its opening quote), unescaped.
    #[inline]
    pub(super) fn string_body(&mut self) -> Result<Cow<'a, str>, Stop> {
        let b = self.bytes();
        let start = self.pos + 1;
        // Fast path: no escapes, borrowed from the record.
        let end = start + string_run(&b[start..]);
        if b.get(end).is_some_and(|c| *c < 0x20) {
            self.pos = end;
            return Err(self.syntax("control character in a string"));
        }
        let mut i = end;
        match b.get(i) {
            Some(b'"') => {
                self.pos = i + 1;
                return Ok(Cow::Borrowed(&self.text[start..i]));
            }
            Some(_) => {}
            None => {
                self.pos = i;
                return Err(self.syntax("unterminated string"));
            }
        }
        let mut out = String::with_capacity(i - start + 16);
        out.push_str(&self.text[start..i]);
        loop {
            let run = i;
            i += string_run(&b[i..]);
            out.push_str(&self.text[run..i]);
            match b.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos = i;
                    let c = self.escape()?;
                    out.push(c);
                    i = self.pos;
                }
                Some(_) => {
                    self.pos = i;
                    return Err(self.syntax("control character in a string"));
                }
                None => {
                    self.pos = i;
                    return Err(self.syntax("unterminated string"));
                }
            }
        }
    }

    /// The escape at `pos` (its backslash), leaving `pos` after it.
    fn escape(&mut self) -> Result<char, Stop> {
        let b = self.bytes();
        let c = match b.get(self.pos + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 2;
                let hi = self.hex4()?;
                if !(0xD800..0xDC00).contains(&hi) {
                    return char::from_u32(hi).ok_or_else(|| self.syntax("a lone low surrogate"));
                }
                if b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.syntax("a high surrogate without its low half"));
                }
                self.pos += 2;
                let lo = self.hex4()?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return Err(self.syntax("a high surrogate without its low half"));
                }
                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return char::from_u32(c).ok_or_else(|| self.syntax("an invalid escape"));
            }
            _ => return Err(self.syntax("an invalid escape")),
        };
        self.pos += 2;
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, Stop> {
        let digits =
            self.bytes().get(self.pos..self.pos + 4).ok_or_else(|| self.syntax("a short \\u escape"))?;
        let mut v = 0;
        for d in digits {
            let h = char::from(*d).to_digit(16).ok_or_else(|| self.syntax("a \\u escape that is not hex"))?;
            v = v * 16 + h;
        }
        self.pos += 4;
        Ok(v)
    }
}

/// How many bytes at the start of `b` need no attention inside a string: up to
/// the first `"`, `\\` or control character. Eight bytes at a time (SWAR): a
/// byte is flagged when it equals one of the two or is below 0x20, and the
/// lowest flagged byte of a word is always a true one.
#[inline]
pub(super) fn string_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        let hits =
            below(x ^ (ONES * u64::from(b'"')), 1) | below(x ^ (ONES * u64::from(b'\\')), 1) | below(x, 0x20);
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(|c| *c != b'"' && *c != b'\\' && *c >= 0x20) {
        i += 1;
    }
    i
}
