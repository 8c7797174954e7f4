//! A pull reader of JSON text for the JSON span decoders.
//!
//! The decoders walk a record once, key by key, and keep only what poirot reads:
//! no tree of values, no list of tags, strings borrowed from the record unless
//! they hold escapes. The reader checks the whole grammar (RFC 8259) of what it
//! reads and of what it skips, so a record it accepts is JSON.
//!
//! Two kinds of failure: [`Stop::Syntax`] (the text is not JSON; nothing after
//! it can be read) and [`Stop::Invalid`] (a value of the wrong type or content;
//! the caller may go back to a [`Reader::mark`], skip the enclosing value and
//! read on, as the OTLP decoder does for one bad span among good ones).

use super::{DecodeError, Reason};
use std::borrow::Cow;

/// Objects and arrays nested deeper than this are refused (serde_json's limit too),
/// so a hostile record cannot exhaust the stack.
const MAX_DEPTH: usize = 127;

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The text is not JSON.
    Syntax(DecodeError),
    /// JSON, but a value of another type or content than the format allows.
    Invalid(DecodeError),
}

impl From<DecodeError> for Stop {
    fn from(e: DecodeError) -> Self {
        Stop::Invalid(e)
    }
}

impl From<Stop> for DecodeError {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Syntax(e) | Stop::Invalid(e) => e,
        }
    }
}

/// A JSON value's type, told by its first byte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Bool => "a bool",
            Kind::Null => "null",
        }
    }
}

/// A protobuf JSON enum value: its name, or (accepted too) its number.
pub(crate) enum EnumValue<'a> {
    Name(Cow<'a, str>),
    Number(i64),
}

impl EnumValue<'_> {
    pub fn is(&self, name: &str, number: i64) -> bool {
        match self {
            EnumValue::Name(n) => n == name,
            EnumValue::Number(v) => *v == number,
        }
    }
}

/// A position to come back to (see [`Reader::reset`]).
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    pos: usize,
    depth: usize,
    fresh: bool,
}

/// Reads one JSON text from its first byte to its last.
pub(crate) struct Reader<'a> {
    text: &'a str,
    pos: usize,
    /// Objects and arrays open at `pos`.
    depth: usize,
    /// Just after `{` or `[`: the next member needs no comma.
    fresh: bool,
    /// Names the format in error details, e.g. "otlp json".
    format: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader of `record`, which must look like JSON (start with `{` or `[`
    /// after white space) and be UTF-8; a record of random bytes is reported as
    /// not JSON rather than as bad UTF-8.
    pub fn new(record: &'a [u8], format: &'static str) -> Result<Self, DecodeError> {
        let first = record.iter().position(|b| !is_space(*b));
        match first.map(|i| record[i]) {
            Some(b'{' | b'[') => {}
            None => {
                return Err(DecodeError::new(Reason::MalformedJson, format!("{format}: the record is empty")))
            }
            Some(b) => {
                return Err(DecodeError::new(
                    Reason::MalformedJson,
                    format!("{format}: not JSON (starts with byte {b:#04x}, not '{{')"),
                ))
            }
        }
        let text = std::str::from_utf8(record).map_err(|e| {
            DecodeError::new(
                Reason::InvalidUtf8,
                format!("{format}: bytes that are not UTF-8 at byte {}", e.valid_up_to()),
            )
        })?;
        Ok(Reader { text, pos: 0, depth: 0, fresh: false, format })
    }

    pub fn mark(&self) -> Mark {
        Mark { pos: self.pos, depth: self.depth, fresh: self.fresh }
    }

    pub fn reset(&mut self, m: Mark) {
        self.pos = m.pos;
        self.depth = m.depth;
        self.fresh = m.fresh;
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn syntax(&self, what: &str) -> Stop {
        let near =
            self.bytes().get(self.pos).map_or("the end".to_owned(), |b| format!("{:?}", char::from(*b)));
        Stop::Syntax(DecodeError::new(
            Reason::MalformedJson,
            format!("{}: {what} at byte {} (found {near})", self.format, self.pos),
        ))
    }

    /// A value of `what` has the wrong type.
    pub fn invalid(&self, what: &str, expected: &str, found: Kind) -> Stop {
        Stop::Invalid(DecodeError::new(
            Reason::MalformedJson,
            format!("{}: {what} is {}, not {expected}", self.format, found.name()),
        ))
    }

    #[inline]
    fn skip_space(&mut self) {
        while let Some(b) = self.bytes().get(self.pos) {
            if !is_space(*b) {
                break;
            }
            self.pos += 1;
        }
    }

    /// The type of the next value, without reading it.
    #[inline]
    pub fn peek(&mut self) -> Result<Kind, Stop> {
        self.skip_space();
        Ok(match self.bytes().get(self.pos) {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            _ => return Err(self.syntax("expected a value")),
        })
    }

    fn open(&mut self) -> Result<(), Stop> {
        if self.depth >= MAX_DEPTH {
            return Err(self.syntax("nested too deep"));
        }
        self.depth += 1;
        self.pos += 1;
        self.fresh = true;
        Ok(())
    }

    fn close(&mut self) {
        self.depth -= 1;
        self.pos += 1;
        self.fresh = false;
    }

    /// Starts reading an object; `false` for `null` (a field left at its default).
    pub fn object(&mut self, what: &str) -> Result<bool, Stop> {
        match self.peek()? {
            Kind::Object => self.open().map(|()| true),
            Kind::Null => self.null().map(|()| false),
            k => Err(self.invalid(what, "an object", k)),
        }
    }

    /// Starts reading an array; `false` for `null`.
    pub fn array(&mut self, what: &str) -> Result<bool, Stop> {
        match self.peek()? {
            Kind::Array => self.open().map(|()| true),
            Kind::Null => self.null().map(|()| false),
            k => Err(self.invalid(what, "an array", k)),
        }
    }

    /// The next key of the object being read (its `:` read too), or `None`
    /// once its `}` is read.
    pub fn key(&mut self) -> Result<Option<Cow<'a, str>>, Stop> {
        self.skip_space();
        let b = self.bytes().get(self.pos).copied();
        if self.fresh {
            self.fresh = false;
            if b == Some(b'}') {
                self.close();
                return Ok(None);
            }
        } else {
            match b {
                Some(b'}') => {
                    self.close();
                    return Ok(None);
                }
                Some(b',') => {
                    self.pos += 1;
                    self.skip_space();
                }
                _ => return Err(self.syntax("expected ',' or '}'")),
            }
        }
        if self.bytes().get(self.pos) != Some(&b'"') {
            return Err(self.syntax("expected a key"));
        }
        let key = self.string_body()?;
        self.skip_space();
        if self.bytes().get(self.pos) != Some(&b':') {
            return Err(self.syntax("expected ':'"));
        }
        self.pos += 1;
        Ok(Some(key))
    }

    /// Whether the array being read has another item (then read it), or `false`
    /// once its `]` is read.
    pub fn item(&mut self) -> Result<bool, Stop> {
        self.skip_space();
        let b = self.bytes().get(self.pos).copied();
        if self.fresh {
            self.fresh = false;
            if b == Some(b']') {
                self.close();
                return Ok(false);
            }
            return Ok(true);
        }
        match b {
            Some(b']') => {
                self.close();
                Ok(false)
            }
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.syntax("expected ',' or ']'")),
        }
    }

    /// A string value, or `None` for `null`.
    pub fn opt_str(&mut self, what: &str) -> Result<Option<Cow<'a, str>>, Stop> {
        match self.peek()? {
            Kind::String => self.string_body().map(Some),
            Kind::Null => self.null().map(|()| None),
            k => Err(self.invalid(what, "a string", k)),
        }
    }

    /// A string value; `null` reads as the empty string (the protobuf default).
    pub fn str(&mut self, what: &str) -> Result<Cow<'a, str>, Stop> {
        Ok(self.opt_str(what)?.unwrap_or(Cow::Borrowed("")))
    }

    /// A bool value; `null` reads as `false`.
    pub fn bool(&mut self, what: &str) -> Result<bool, Stop> {
        match self.peek()? {
            Kind::Bool => self.literal(),
            Kind::Null => self.null().map(|()| false),
            k => Err(self.invalid(what, "a bool", k)),
        }
    }

    /// An unsigned integer given as a number or as a string of digits (protobuf
    /// JSON writes 64-bit integers as strings); `null` reads as 0.
    pub fn u64(&mut self, what: &str) -> Result<u64, Stop> {
        let text = match self.peek()? {
            Kind::Number => Cow::Borrowed(self.number()?),
            Kind::String => self.string_body()?,
            Kind::Null => return self.null().map(|()| 0),
            k => return Err(self.invalid(what, "an unsigned integer", k)),
        };
        text.parse().map_err(|_| {
            Stop::Invalid(DecodeError::new(
                Reason::MalformedJson,
                format!("{}: {what} {text:?} is not an unsigned integer", self.format),
            ))
        })
    }

    /// An enum value, by name or by number; `None` for `null`.
    pub fn enum_value(&mut self, what: &str) -> Result<Option<EnumValue<'a>>, Stop> {
        match self.peek()? {
            Kind::String => self.string_body().map(|s| Some(EnumValue::Name(s))),
            Kind::Number => {
                let text = self.number()?;
                text.parse().map(|n| Some(EnumValue::Number(n))).map_err(|_| {
                    Stop::Invalid(DecodeError::new(
                        Reason::MalformedJson,
                        format!("{}: {what} {text} is not an enum number", self.format),
                    ))
                })
            }
            Kind::Null => self.null().map(|()| None),
            k => Err(self.invalid(what, "an enum name or number", k)),
        }
    }

    /// Reads past the next value, whatever it is, checking its grammar.
    pub fn skip(&mut self) -> Result<(), Stop> {
        match self.peek()? {
            Kind::Object => {
                self.open()?;
                while self.key()?.is_some() {
                    self.skip()?;
                }
            }
            Kind::Array => {
                self.open()?;
                while self.item()? {
                    self.skip()?;
                }
            }
            Kind::String => {
                self.string_body()?;
            }
            Kind::Number => {
                self.number()?;
            }
            Kind::Bool => {
                self.literal()?;
            }
            Kind::Null => self.null()?,
        }
        Ok(())
    }

    /// Checks that nothing but white space follows the value read.
    pub fn end(&mut self) -> Result<(), Stop> {
        self.skip_space();
        if self.pos < self.bytes().len() {
            return Err(self.syntax("expected the end of the record"));
        }
        Ok(())
    }

    fn null(&mut self) -> Result<(), Stop> {
        if self.bytes()[self.pos..].starts_with(b"null") {
            self.pos += 4;
            Ok(())
        } else {
            Err(self.syntax("expected null"))
        }
    }

    /// `true` or `false`.
    fn literal(&mut self) -> Result<bool, Stop> {
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
    fn number(&mut self) -> Result<&'a str, Stop> {
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
    fn string_body(&mut self) -> Result<Cow<'a, str>, Stop> {
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
fn string_run(b: &[u8]) -> usize {
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

#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skips(text: &str) -> bool {
        match Reader::new(text.as_bytes(), "test") {
            Ok(mut r) => r.skip().and_then(|()| r.end()).is_ok(),
            Err(_) => false,
        }
    }

    #[test]
    fn accepts_what_serde_json_accepts_and_refuses_the_rest() {
        let cases = [
            r#"{}"#,
            r#"[]"#,
            r#"{"a":[1,-0,0.5,1e3,-2E-7,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"]}"#,
            " \t\r\n{ \"a\" : { \"b\" : [ ] } } \n",
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"[1,]"#,
            r#"[,1]"#,
            r#"{"a" 1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            "{\"a\":\"tab\tinside\"}",
            r#"{"a":"unterminated}"#,
            r#"{"a":1} x"#,
            r#"{"a":1}}"#,
            r#"{"a":[1}"#,
            r#"{1:2}"#,
            r#"["a" "b"]"#,
        ];
        for c in cases {
            let theirs = serde_json::from_str::<serde_json::Value>(c).is_ok();
            assert_eq!(skips(c), theirs, "{c}");
        }
    }

    #[test]
    fn refuses_nesting_deeper_than_the_limit_without_overflowing() {
        let deep = "[".repeat(100_000);
        assert!(!skips(&deep));
        for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(skips(&text), serde_json::from_str::<serde_json::Value>(&text).is_ok(), "{depth}");
        }
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(skips(&ok));
        let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(!skips(&over));
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let mut r = Reader::new(br#"{"plain":"abc","esc":"a\nb\u00e9"}"#, "test").expect("json");
        assert!(r.object("o").expect("object"));
        assert_eq!(r.key().expect("key").as_deref(), Some("plain"));
        assert!(matches!(r.str("plain").expect("str"), Cow::Borrowed("abc")));
        assert_eq!(r.key().expect("key").as_deref(), Some("esc"));
        assert_eq!(r.str("esc").expect("str"), "a\nbé");
        assert!(r.key().expect("end").is_none());
        r.end().expect("nothing after");
    }

    #[test]
    fn names_what_is_wrong() {
        let e = Reader::new(b"\x00\x01garbage", "jaeger json").err().expect("not json");
        assert_eq!(e.reason, Reason::MalformedJson);
        assert!(e.detail.contains("not JSON"), "{}", e.detail);
        let e = Reader::new(b"  ", "jaeger json").err().expect("empty");
        assert!(e.detail.contains("empty"), "{}", e.detail);
        let e = Reader::new(b"{\"a\":\"\xff\"}", "jaeger json").err().expect("not utf-8");
        assert_eq!(e.reason, Reason::InvalidUtf8);
        let mut r = Reader::new(br#"{"a":5}"#, "otlp json").expect("json");
        r.object("request").expect("object");
        r.key().expect("key");
        let e = DecodeError::from(r.str("name").expect_err("a number"));
        assert_eq!(e.detail, "otlp json: name is a number, not a string");
    }

    #[test]
    fn string_runs_stop_at_the_first_byte_that_needs_attention() {
        for len in 0..40 {
            for stop in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                for fill in [b'a', 0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
                    let mut text = vec![fill; len];
                    text.push(stop);
                    text.extend_from_slice(b"\"\\\x01tail");
                    assert_eq!(string_run(&text), len, "{fill:#x} then {stop:#x} at {len}");
                    assert_eq!(string_run(&text[..len]), len);
                }
            }
        }
    }

    #[test]
    fn integers_as_numbers_or_strings() {
        let mut r =
            Reader::new(br#"[1700000000000000000,"18446744073709551615",null,1.5,"x"]"#, "t").expect("json");
        r.array("a").expect("array");
        let mut got = Vec::new();
        while r.item().expect("item") {
            got.push(r.u64("n").ok());
        }
        assert_eq!(got, [Some(1_700_000_000_000_000_000), Some(u64::MAX), Some(0), None, None]);
    }
}
