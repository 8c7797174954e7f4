//! Format detection for one record (a Kafka message, or a framed record of a file).

use super::pb::{Reader, LEN};
use super::Format;

/// Guesses the format of one record from its first bytes; `None` when it is in
/// none of the formats poirot reads.
pub fn detect(record: &[u8]) -> Option<Format> {
    if record.first() == Some(&b'{') {
        return detect_json(record);
    }
    // Protobuf may start with bytes that look like whitespace and `{` (field 1,
    // length 123), so it is tried before JSON with leading whitespace.
    detect_proto(record).or_else(|| {
        let first = record.iter().position(|b| !b.is_ascii_whitespace())?;
        (record[first] == b'{').then(|| detect_json(&record[first..])).flatten()
    })
}

/// The keys that tell the JSON formats apart; the first one in a record decides.
const JSON_KEYS: [(&[u8], Format); 6] = [
    (b"\"resourceSpans\"", Format::OtlpJson),
    (b"\"resource_spans\"", Format::OtlpJson),
    (b"\"data\"", Format::JaegerUi),
    (b"\"traceId\"", Format::JaegerJson),
    (b"\"trace_id\"", Format::JaegerJson),
    (b"\"spanId\"", Format::JaegerJson),
];

fn detect_json(text: &[u8]) -> Option<Format> {
    // The first key decides; a cheap scan instead of a full parse: one pass over
    // the quotes of the first 4 KiB (every key starts with one).
    let head = &text[..text.len().min(4096)];
    (0..head.len()).filter(|&i| head[i] == b'"').find_map(|i| {
        let rest = &head[i..];
        JSON_KEYS.iter().find(|(key, _)| rest.starts_with(key)).map(|&(_, f)| f)
    })
}

/// A Jaeger span starts with its 16-byte trace id (field 1) or another scalar
/// field; an OTLP request is a sequence of field-1 messages (ResourceSpans).
fn detect_proto(record: &[u8]) -> Option<Format> {
    let mut r = Reader::new(record);
    let (field, wt) = r.key().ok()?;
    if field == 0 {
        return None;
    }
    if field == 1 && wt == LEN {
        let body = r.bytes().ok()?;
        if body.len() == 16 {
            // 16 bytes could in principle be a tiny ResourceSpans; a Jaeger span's
            // next field is its 8-byte span id.
            let (f2, w2) = r.key().ok().unwrap_or((0, 0));
            if f2 == 2 && w2 == LEN {
                return Some(Format::JaegerProto);
            }
        }
        return valid_otlp(record).then_some(Format::OtlpProto);
    }
    // Jaeger's other top-level fields are all < 13; anything that walks cleanly is Jaeger.
    (walks_cleanly(record) && field <= 12).then_some(Format::JaegerProto)
}

fn walks_cleanly(record: &[u8]) -> bool {
    let mut r = Reader::new(record);
    while !r.at_end() {
        match r.key() {
            Ok((f, wt)) if f > 0 && r.skip(wt).is_ok() => {}
            _ => return false,
        }
    }
    true
}

fn valid_otlp(record: &[u8]) -> bool {
    let mut r = Reader::new(record);
    while !r.at_end() {
        match r.key() {
            Ok((1, LEN)) if r.bytes().is_ok() => {}
            Ok((f, wt)) if f > 1 && r.skip(wt).is_ok() => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        assert_eq!(detect(br#" {"data":[]}"#), Some(Format::JaegerUi));
        assert_eq!(detect(br#"{"resourceSpans":[]}"#), Some(Format::OtlpJson));
        assert_eq!(detect(br#"{"traceId":"AA==","spanId":"AA=="}"#), Some(Format::JaegerJson));
        assert_eq!(detect(br#"{"hello":1}"#), None);
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"\xff\xff\xff"), None);
    }

    #[test]
    fn the_first_key_decides() {
        assert_eq!(detect(br#"{"spanId":"AA==","data":[],"resourceSpans":[]}"#), Some(Format::JaegerJson));
        // A key cut by the end of the 4 KiB head does not count.
        let pad = |n: usize| format!("{{\"pad\":\"{}\",\"data\":[]}}", "x".repeat(n));
        assert_eq!(detect(pad(4096 - 16).as_bytes()), Some(Format::JaegerUi));
        assert_eq!(detect(pad(4096 - 15).as_bytes()), None);
    }
}
