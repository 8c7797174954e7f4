//! One Kafka record in Jaeger protobuf (`jaeger.api_v2.Span`), one span per record,
//! decoded as the pipeline decodes a record of a topic configured with this format,
//! and the same bytes as a batch record of the repartition topic (`jaeger.api_v2.Batch`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use poirot::decode::Format;

fuzz_target!(|record: &[u8]| {
    poirot_fuzz::decode_record(Some(Format::JaegerProto), record);
    poirot_fuzz::decode_shuffled_batch(record);
});
