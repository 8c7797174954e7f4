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

mod lexical;

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

    /// A number given as a number or as a string (protobuf JSON writes 64-bit
    /// integers and `NaN` as strings); `None` for `null` or a string that is no number.
    pub fn f64(&mut self, what: &str) -> Result<Option<f64>, Stop> {
        match self.peek()? {
            Kind::Number => Ok(self.number()?.parse().ok()),
            Kind::String => Ok(self.string_body()?.trim().parse().ok()),
            Kind::Null => self.null().map(|()| None),
            k => Err(self.invalid(what, "a number", k)),
        }
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
}

#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

#[cfg(test)]
mod tests;
