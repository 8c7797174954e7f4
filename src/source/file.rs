//! Records from files and stdin, framed as fits each format:
//!
//! | format | framing |
//! |---|---|
//! | `jaeger-proto`, `otlp-proto` | length-delimited: a varint byte count before each message |
//! | `jaeger-json`, `otlp-json` | one message per line (NDJSON); a pretty-printed single message also works |
//! | `jaeger-ui` | the whole input is one document |
//!
//! With format `auto`, the first bytes decide.

use crate::decode::{self, DecodeError, Format, Reason};
use std::io::{BufRead, Read};

/// Largest record accepted; a longer frame or line is an error.
pub const MAX_RECORD: usize = 64 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    LengthDelimited,
    Lines,
    Whole,
}

pub fn framing_for(format: Format) -> Framing {
    match format {
        Format::JaegerProto | Format::OtlpProto => Framing::LengthDelimited,
        Format::JaegerJson | Format::OtlpJson => Framing::Lines,
        Format::JaegerUi => Framing::Whole,
    }
}

/// Detects the format of a whole input from its first bytes.
pub fn detect_input(head: &[u8]) -> Option<Format> {
    if head.first() == Some(&b'{') {
        return decode::detect(head);
    }
    detect_framed_binary(head).or_else(|| {
        let first = head.iter().position(|b| !b.is_ascii_whitespace())?;
        (head[first] == b'{').then(|| decode::detect(&head[first..])).flatten()
    })
}

/// The format of the first length-delimited frame, if it is a protobuf one.
fn detect_framed_binary(head: &[u8]) -> Option<Format> {
    let mut len: u64 = 0;
    for (i, b) in head.iter().take(10).enumerate() {
        len |= u64::from(b & 0x7f) << (7 * i);
        if *b < 0x80 {
            let start = i + 1;
            let end = start.checked_add(usize::try_from(len).ok()?)?.min(head.len());
            return decode::detect(&head[start..end]).filter(|f| f.is_binary());
        }
    }
    None
}

/// Reads framed records; stops at the first framing error it cannot resync from.
pub struct RecordReader<R: BufRead> {
    input: R,
    framing: Framing,
    done: bool,
}

impl<R: BufRead> RecordReader<R> {
    pub fn new(input: R, framing: Framing) -> Self {
        RecordReader { input, framing, done: false }
    }

    fn next_frame(&mut self) -> Option<Result<Vec<u8>, DecodeError>> {
        match self.framing {
            Framing::Whole => {
                self.done = true;
                let mut buf = Vec::new();
                match self.input.by_ref().take(MAX_RECORD as u64 + 1).read_to_end(&mut buf) {
                    Ok(_) if buf.len() > MAX_RECORD => Some(Err(too_large(buf.len()))),
                    Ok(_) if buf.iter().all(u8::is_ascii_whitespace) => None,
                    Ok(_) => Some(Ok(buf)),
                    Err(e) => Some(Err(io_error(e))),
                }
            }
            Framing::Lines => loop {
                let mut line = Vec::new();
                match self.input.by_ref().take(MAX_RECORD as u64 + 1).read_until(b'\n', &mut line) {
                    Ok(0) => return None,
                    Ok(_) if line.len() > MAX_RECORD => {
                        self.done = true;
                        return Some(Err(too_large(line.len())));
                    }
                    Ok(_) => {
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        if line.trim_ascii() == b"{" {
                            // A pretty-printed message: the rest is one record.
                            let mut rest = Vec::new();
                            if let Err(e) = self.input.read_to_end(&mut rest) {
                                return Some(Err(io_error(e)));
                            }
                            line.extend(rest);
                            self.done = true;
                        }
                        return Some(Ok(line));
                    }
                    Err(e) => return Some(Err(io_error(e))),
                }
            },
            Framing::LengthDelimited => {
                let mut len: u64 = 0;
                for i in 0..10 {
                    let mut b = [0u8; 1];
                    match self.input.read(&mut b) {
                        Ok(0) if i == 0 => return None,
                        Ok(0) => return Some(Err(truncated("length prefix"))),
                        Ok(_) => {}
                        Err(e) => return Some(Err(io_error(e))),
                    }
                    len |= u64::from(b[0] & 0x7f) << (7 * i);
                    if b[0] < 0x80 {
                        break;
                    }
                    if i == 9 {
                        return Some(Err(truncated("length prefix longer than 10 bytes")));
                    }
                }
                if len > MAX_RECORD as u64 {
                    self.done = true;
                    return Some(Err(too_large(len as usize)));
                }
                let mut buf = vec![0u8; len as usize];
                match self.input.read_exact(&mut buf) {
                    Ok(()) => Some(Ok(buf)),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        Some(Err(truncated(&format!("frame of {len} bytes"))))
                    }
                    Err(e) => Some(Err(io_error(e))),
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for RecordReader<R> {
    type Item = Result<Vec<u8>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_frame();
        if matches!(r, Some(Err(_))) && self.framing != Framing::Lines {
            self.done = true; // a broken frame leaves nothing to resync on
        }
        r
    }
}

fn too_large(n: usize) -> DecodeError {
    DecodeError::new(
        Reason::RecordTooLarge,
        format!("record of {n} bytes is over the {MAX_RECORD}-byte limit"),
    )
}

fn truncated(what: &str) -> DecodeError {
    DecodeError::new(Reason::MalformedProtobuf, format!("input ends inside a {what}"))
}

fn io_error(e: std::io::Error) -> DecodeError {
    let reason =
        if e.kind() == std::io::ErrorKind::InvalidData { Reason::InvalidUtf8 } else { Reason::MalformedJson };
    DecodeError::new(reason, format!("read error: {e}"))
}

/// Reads up to `n` bytes without losing them: returns them and a reader that yields them again.
fn peek(mut r: Box<dyn Read>, n: usize) -> std::io::Result<(Vec<u8>, Box<dyn BufRead>)> {
    let mut head = Vec::with_capacity(n);
    r.by_ref().take(n as u64).read_to_end(&mut head)?;
    let again = std::io::Cursor::new(head.clone()).chain(r);
    Ok((head, Box::new(std::io::BufReader::with_capacity(1 << 16, again))))
}

/// Records per batch handed to the runtime.
const BATCH: usize = 512;

/// An input being read: its name, its records and their format.
type Reading = (String, RecordReader<Box<dyn BufRead>>, Format);

/// `poirot replay`'s source: inputs read one after another as one stream (one
/// partition, no offsets), then the end.
pub struct FileSource {
    inputs: std::collections::VecDeque<(String, Box<dyn Read>)>,
    /// The input being read, its records and their format.
    current: Option<Reading>,
    /// The format given on the command line (`None`: each input's first bytes decide).
    format: Option<Format>,
    /// An event held back so that it comes after the records read before it.
    held: Option<super::Event>,
    ended: bool,
    /// Told the size of each record read (a progress bar).
    on_record: Box<dyn FnMut(u64)>,
}

impl FileSource {
    pub fn new(
        inputs: Vec<(String, Box<dyn Read>)>,
        format: Option<Format>,
        on_record: impl FnMut(u64) + 'static,
    ) -> Self {
        FileSource {
            inputs: inputs.into(),
            current: None,
            format,
            held: None,
            ended: false,
            on_record: Box::new(on_record),
        }
    }

    /// Opens the next input; `Some` event when its format cannot be told.
    fn open_next(&mut self) -> Result<Option<super::Event>, super::SourceError> {
        let Some((name, reader)) = self.inputs.pop_front() else {
            self.ended = true;
            return Ok(Some(super::Event::End));
        };
        let (head, reader) = peek(reader, 64 << 10)
            .map_err(|e| super::SourceError::Read(format!("cannot read input {name}: {e}")))?;
        if head.is_empty() {
            return Ok(Some(super::Event::Unreadable(DecodeError::new(
                Reason::UnrecognizedFormat,
                format!("{name}: the input is empty"),
            ))));
        }
        match self.format.or_else(|| detect_input(&head)) {
            Some(f) => {
                self.current = Some((name, RecordReader::new(reader, framing_for(f)), f));
                Ok(None)
            }
            None => Ok(Some(super::Event::Unreadable(DecodeError::new(
                Reason::UnrecognizedFormat,
                format!(
                    "{name}: the first bytes ({}) match none of the formats ({}); pass --format",
                    preview(&head),
                    Format::ALL.map(Format::name).join(", ")
                ),
            )))),
        }
    }
}

impl super::Source for FileSource {
    fn next(&mut self, _wait: std::time::Duration) -> Result<Option<super::Event>, super::SourceError> {
        if let Some(e) = self.held.take() {
            return Ok(Some(e));
        }
        if self.ended {
            return Ok(None);
        }
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            let Some((name, records, format)) = self.current.as_mut() else {
                match self.open_next()? {
                    Some(e) if batch.is_empty() => return Ok(Some(e)),
                    Some(e) => {
                        self.held = Some(e);
                        break;
                    }
                    None => continue,
                }
            };
            match records.next() {
                Some(Ok(bytes)) => {
                    (self.on_record)(bytes.len() as u64);
                    batch.push(super::Record {
                        payload: bytes.into(),
                        format: Some(*format),
                        ..Default::default()
                    });
                }
                Some(Err(e)) => {
                    let e =
                        super::Event::Unreadable(DecodeError::new(e.reason, format!("{name}: {}", e.detail)));
                    if batch.is_empty() {
                        return Ok(Some(e));
                    }
                    self.held = Some(e);
                    break;
                }
                None => self.current = None,
            }
        }
        Ok(Some(super::Event::Batch(batch)))
    }
}

/// Writes one length-delimited frame.
pub fn write_delimited(out: &mut Vec<u8>, record: &[u8]) {
    let mut n = record.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(record);
}

/// The first bytes of an input as a person can read them: text as text, anything
/// else as hex.
fn preview(head: &[u8]) -> String {
    let head = &head[..head.len().min(16)];
    match std::str::from_utf8(head) {
        Ok(t) if t.chars().all(|c| !c.is_control() || c == '\n') => format!("{t:?}"),
        _ => head.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_delimited_frames_and_truncation() {
        let mut buf = Vec::new();
        write_delimited(&mut buf, b"abc");
        write_delimited(&mut buf, &[7u8; 300]);
        buf.extend_from_slice(&[0x05, 1, 2]); // a frame cut short
        let frames: Vec<_> = RecordReader::new(&buf[..], Framing::LengthDelimited).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].as_deref().ok(), Some(&b"abc"[..]));
        assert_eq!(frames[1].as_ref().map(Vec::len).ok(), Some(300));
        assert_eq!(frames[2].as_ref().map_err(|e| e.reason), Err(Reason::MalformedProtobuf));
    }

    #[test]
    fn lines_skip_blanks_and_keep_going_after_bad_lines() {
        let input = b"{\"a\":1}\n\n\xff\xfe\n{\"b\":2}\n";
        let frames: Vec<_> = RecordReader::new(&input[..], Framing::Lines).collect();
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn pretty_printed_json_is_one_record() {
        let input = b"{\n  \"resourceSpans\": []\n}\n";
        let frames: Vec<_> = RecordReader::new(&input[..], Framing::Lines).collect();
        assert_eq!(frames.len(), 1);
    }
}
