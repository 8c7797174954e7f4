//! One Kafka record in an OTLP `ExportTraceServiceRequest` in protobuf,
//! decoded as the pipeline decodes a record of a topic configured with this format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poirot::decode::Format;

fuzz_target!(|record: &[u8]| poirot_fuzz::decode_record(Some(Format::OtlpProto), record));
