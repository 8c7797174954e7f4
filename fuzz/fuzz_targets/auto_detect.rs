//! One Kafka record in any format: detected from its first bytes and decoded, as
//! the pipeline does with `format = "auto"` (the default).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|record: &[u8]| poirot_fuzz::decode_record(None, record));
