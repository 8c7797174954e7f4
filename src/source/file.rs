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
