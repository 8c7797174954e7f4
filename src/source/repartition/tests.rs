use super::*;

fn span(low: u64) -> Span {
    Span { trace_id: TraceId::new(0, low), ..Span::default() }
}

#[test]
fn a_key_naming_the_trace_of_every_span_is_keyed() {
    let spans = [span(0xab), span(0xab)];
    assert!(is_keyed(Some(b"000000000000000000000000000000ab"), &spans));
    assert!(is_keyed(Some(b"00000000000000ab"), &spans), "Jaeger writes 64-bit ids as 16 digits");
    assert!(is_keyed(Some(&TraceId::new(0, 0xab).to_bytes()), &spans), "16 raw bytes");
    assert!(!is_keyed(None, &spans));
    assert!(!is_keyed(Some(b"batch-7"), &spans));
    assert!(!is_keyed(Some(b"00000000000000ab"), &[span(0xab), span(0xcd)]), "two traces");
}

#[test]
fn modes() {
    let (one, two) = ([span(1)], [span(1), span(2)]);
    let key = Some(&b"0000000000000001"[..]);
    assert!(!Mode::Auto.rekeys(key, &one));
    assert!(Mode::Auto.rekeys(key, &two));
    assert!(Mode::Auto.rekeys(None, &one));
    assert!(Mode::Always.rekeys(key, &one));
    assert!(!Mode::Never.rekeys(None, &two));
    assert!(!Mode::Always.rekeys(None, &[]), "nothing decoded: nothing to re-key");
}

#[test]
fn a_trace_goes_to_the_partition_librdkafka_gives_its_key() {
    // Re-keyed spans are placed by poirot, link records with a key by librdkafka's
    // murmur2_random (and older poirot versions placed spans that way): both must agree.
    for low in (0..2_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
        let trace = TraceId::new(low.rotate_left(17), low);
        let key = trace.to_hex();
        for partitions in [1, 3, 6, 64] {
            // SAFETY: the partitioner reads only `key` (`keylen` bytes); with a key it
            // touches neither the topic nor the opaques.
            let theirs = unsafe {
                rdkafka::bindings::rd_kafka_msg_partitioner_murmur2_random(
                    std::ptr::null(),
                    key.as_ptr().cast(),
                    key.len(),
                    partitions,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(partition_of(trace, partitions), theirs, "{trace} over {partitions}");
        }
    }
}
