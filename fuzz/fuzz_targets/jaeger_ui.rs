//! One Jaeger UI / query API document (`{"data":[...]}`, a "Download JSON" file),
//! decoded as the pipeline decodes a record of this format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poirot::decode::Format;

fuzz_target!(|record: &[u8]| poirot_fuzz::decode_record(Some(Format::JaegerUi), record));
