//! Trace shapes through the whole pipeline: every 8 bytes are one span (see
//! `poirot_fuzz::span_program`), encoded as Jaeger protobuf and pushed as a
//! Kafka record on one of four partitions; the end of the input closes every
//! trace. Where `pipeline` mutates the bytes of files, this reaches the
//! assembler, the DAG and the detectors with hostile structure: cycles,
//! self-references, missing parents, duplicates, cross-trace links, late spans.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| poirot_fuzz::spans(input));
