//! A whole input file through the whole pipeline, as `poirot replay` runs it:
//! format and framing from the first bytes, every record decoded and pushed,
//! every trace closed at the end, the outputs rendered. Each input runs twice:
//! with replay's default limits, and with caps small enough for a short input
//! to reach (spans per trace, buffered spans, series, names, document sizes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use poirot_fuzz::Limits;

fuzz_target!(|input: &[u8]| {
    poirot_fuzz::replay(input, Limits::Default);
    poirot_fuzz::replay(input, Limits::Small);
});
