//! Decoders from the wire formats poirot reads into [`Span`]s.
//!
//! Every decoder appends the spans it could read to `spans` and one
//! [`DecodeError`] per record or span it could not read to `errors`; a bad span
//! never hides the good spans of the same record. Errors carry a [`Reason`] so
//! they can be counted by kind, and a detail a person can act on.
//!
//! | format | one record is | ids |
//! |---|---|---|
//! | `jaeger-proto` | one `jaeger.api_v2.Span` | 16 / 8 raw bytes |
//! | `jaeger-json` | one span in protobuf JSON (Jaeger's Kafka `json` encoding) | base64 |
//! | `jaeger-ui` | a Jaeger query / UI document `{"data":[trace...]}` | hex |
//! | `otlp-proto` | one `ExportTraceServiceRequest` | raw bytes |
//! | `otlp-json` | one `ExportTraceServiceRequest` in OTLP JSON | hex |

mod attrs;
mod detect;
pub mod jaeger_json;
pub mod jaeger_proto;
pub mod jaeger_ui;
mod json;
pub mod otlp;
pub(crate) mod pb;
mod time;

#[cfg(test)]
mod sampling_tests;

#[cfg(test)]
mod dimension_tests;

pub use attrs::Attrs;
pub use detect::detect;

use crate::model::{Interner, Span};
use std::fmt;

/// A wire format poirot reads.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    JaegerProto,
    JaegerJson,
    JaegerUi,
    OtlpProto,
    OtlpJson,
}

impl Format {
    pub const ALL: [Format; 5] =
        [Format::JaegerProto, Format::JaegerJson, Format::JaegerUi, Format::OtlpProto, Format::OtlpJson];

    pub fn name(self) -> &'static str {
        match self {
            Format::JaegerProto => "jaeger-proto",
            Format::JaegerJson => "jaeger-json",
            Format::JaegerUi => "jaeger-ui",
            Format::OtlpProto => "otlp-proto",
            Format::OtlpJson => "otlp-json",
        }
    }

    pub fn from_name(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Binary formats are framed length-delimited in files; JSON ones by line.
    pub fn is_binary(self) -> bool {
        matches!(self, Format::JaegerProto | Format::OtlpProto)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a record or span was rejected; the label bad input is counted under.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Reason {
    /// Bytes that are not a valid protobuf message of the expected type.
    MalformedProtobuf,
    /// Text that is not valid JSON of the expected shape.
    MalformedJson,
    /// A string field that is not UTF-8.
    InvalidUtf8,
    /// A trace id that is missing, zero or of the wrong length.
    InvalidTraceId,
    /// A span id that is missing, zero or of the wrong length.
    InvalidSpanId,
    /// A start time or duration outside any plausible range.
    InvalidTime,
    /// A record in none of the formats poirot reads.
    UnrecognizedFormat,
    /// A length prefix or line longer than the record size limit.
    RecordTooLarge,
    /// The same span (trace, span id, service, start) arrived again.
    DuplicateSpan,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedProtobuf => "malformed_protobuf",
            Reason::MalformedJson => "malformed_json",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::InvalidTraceId => "invalid_trace_id",
            Reason::InvalidSpanId => "invalid_span_id",
            Reason::InvalidTime => "invalid_time",
            Reason::UnrecognizedFormat => "unrecognized_format",
            Reason::RecordTooLarge => "record_too_large",
            Reason::DuplicateSpan => "duplicate_span",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record or span that could not be decoded.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct DecodeError {
    pub reason: Reason,
    pub detail: String,
}

/// Longest error detail kept, in bytes: details quote input (an id, a field),
/// and they are logged, listed on the page and printed by `replay`.
pub const MAX_DETAIL_BYTES: usize = 512;

impl DecodeError {
    /// An error; a detail longer than [`MAX_DETAIL_BYTES`] is cut with the marker.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        if detail.len() > MAX_DETAIL_BYTES {
            detail = crate::model::text::truncate(&detail, MAX_DETAIL_BYTES).0.into_owned();
        }
        DecodeError { reason, detail }
    }
}

/// Decodes one record of `format`.
pub fn decode(
    format: Format,
    record: &[u8],
    names: &mut Interner,
    spans: &mut Vec<Span>,
    errors: &mut Vec<DecodeError>,
) {
    match format {
        Format::JaegerProto => match jaeger_proto::decode(record, names) {
            Ok(s) => spans.push(s),
            Err(e) => errors.push(e),
        },
        Format::JaegerJson => match jaeger_json::decode(record, names) {
            Ok(s) => spans.push(s),
            Err(e) => errors.push(e),
        },
        Format::JaegerUi => jaeger_ui::decode(record, names, spans, errors),
        Format::OtlpProto => otlp::decode_proto(record, names, spans, errors),
        Format::OtlpJson => otlp::decode_json(record, names, spans, errors),
    }
}

/// Decodes one record, detecting its format first.
pub fn decode_auto(
    record: &[u8],
    names: &mut Interner,
    spans: &mut Vec<Span>,
    errors: &mut Vec<DecodeError>,
) {
    match detect(record) {
        Some(f) => decode(f, record, names, spans, errors),
        None => errors.push(unrecognized(record)),
    }
}

/// The error for a record in none of the formats.
pub fn unrecognized(record: &[u8]) -> DecodeError {
    DecodeError::new(
        Reason::UnrecognizedFormat,
        format!("record of {} bytes is in none of the known formats", record.len()),
    )
}
