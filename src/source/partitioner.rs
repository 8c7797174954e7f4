//! Where a producer put a keyed record: the partitioners of the common Kafka
//! clients, and a learner that finds which one (and which key form) wrote the
//! input topic, from the keyed records it reads.
//!
//! poirot needs it for links between traces: a link record must reach the
//! process that owns the trace it names. A trace re-keyed by poirot lives in
//! the repartition partition its key hashes to; a trace keyed by the tracer's
//! exporter lives in the input partition *that* client's partitioner chose, and
//! the consumer group gives the same partition number of both topics to one
//! member (range assignment over co-partitioned topics). So a link goes to the
//! repartition partition numbered as the input partitioner would number its trace.

use crate::model::TraceId;

/// A client's hash of a record key, as it picks a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyHash {
    /// Java clients, franz-go, librdkafka's `murmur2` and `murmur2_random`.
    Murmur2,
    /// librdkafka's default `consistent_random`: CRC-32 of the key.
    Crc32,
    /// sarama's default hash partitioner: FNV-1a, 32 bits.
    Fnv1a,
}

/// How a trace id is written as a record key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyForm {
    /// 32 hex digits (OpenTelemetry exporters, poirot's own records).
    Hex32,
    /// Jaeger's `TraceID.String()`: 16 hex digits when the high half is zero, else 32.
    Jaeger,
    /// The 16 raw bytes.
    Raw16,
}

/// Keyed records after which the learned partitioner is no longer checked.
const SETTLED_AFTER: u64 = 1_000;

const HASHES: [KeyHash; 3] = [KeyHash::Murmur2, KeyHash::Crc32, KeyHash::Fnv1a];
const FORMS: [KeyForm; 3] = [KeyForm::Hex32, KeyForm::Jaeger, KeyForm::Raw16];

impl KeyHash {
    /// The partition of `key` among `partitions` (> 0).
    pub fn partition(self, key: &[u8], partitions: i32) -> i32 {
        let n = partitions.max(1);
        match self {
            KeyHash::Murmur2 => ((murmur2(key) & 0x7fff_ffff) % n as u32) as i32,
            KeyHash::Crc32 => (crc32fast::hash(key) % n as u32) as i32,
            KeyHash::Fnv1a => ((fnv1a(key) as i32) % n).abs(),
        }
    }
}

impl KeyForm {
    pub fn key(self, trace: TraceId) -> Vec<u8> {
        match self {
            KeyForm::Hex32 => trace.to_string().into_bytes(),
            KeyForm::Jaeger if trace.high == 0 => format!("{:016x}", trace.low).into_bytes(),
            KeyForm::Jaeger => trace.to_string().into_bytes(),
            KeyForm::Raw16 => trace.to_bytes().to_vec(),
        }
    }
}

/// Kafka's murmur2 (seed 0x9747b28c), as its Java client hashes keys.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// FNV-1a, 32 bits.
pub fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// Learns the input topic's partitioner from keyed records: every (hash, key
/// form) pair that contradicts one is ruled out.
#[derive(Clone, Debug)]
pub struct InputPartitioner {
    /// Bit `h * 3 + f`: (HASHES[h], FORMS[f]) is still possible.
    possible: u16,
    observed: u64,
    warned: bool,
}

impl Default for InputPartitioner {
    fn default() -> Self {
        InputPartitioner { possible: (1 << (HASHES.len() * FORMS.len())) - 1, observed: 0, warned: false }
    }
}

impl InputPartitioner {
    /// A record keyed `key`, whose spans all belong to `trace`, was read from
    /// `partition` of a topic with `partitions` partitions.
    pub fn observe(&mut self, key: &[u8], trace: TraceId, partition: i32, partitions: i32) {
        // Past a thousand agreeing records, the answer is settled: records cost nothing more.
        if self.possible == 0 || self.observed >= SETTLED_AFTER {
            return;
        }
        self.observed += 1;
        for (f, form) in FORMS.iter().enumerate() {
            let written = form.key(trace);
            for (h, hash) in HASHES.iter().enumerate() {
                let bit = 1 << (h * FORMS.len() + f);
                if self.possible & bit != 0
                    && (written != key || hash.partition(key, partitions) != partition)
                {
                    self.possible &= !bit;
                }
            }
        }
        if self.possible == 0 && !self.warned {
            self.warned = true;
            tracing::warn!(
                "the input topic is keyed by trace id with a partitioner poirot does not know (not murmur2, CRC-32 \
                 or FNV-1a over the trace id): links between traces are routed as if re-keyed, and those to traces \
                 of another process stay unresolved; set kafka.repartition = \"always\" to route them exactly"
            );
        }
    }

    /// The first (hash, form) consistent with every keyed record read, once one was.
    pub fn learned(&self) -> Option<(KeyHash, KeyForm)> {
        if self.observed == 0 || self.possible == 0 {
            return None;
        }
        let bit = self.possible.trailing_zeros() as usize;
        Some((HASHES[bit / FORMS.len()], FORMS[bit % FORMS.len()]))
    }

    /// The input partition of `trace`, when the partitioner is known.
    pub fn partition(&self, trace: TraceId, partitions: i32) -> Option<i32> {
        let (hash, form) = self.learned()?;
        Some(hash.partition(&form.key(trace), partitions))
    }

    /// Every input partition `trace` may be in, as far as the keyed records read
    /// so far tell (after a few, one); empty before the first or when none fits.
    pub fn candidates(&self, trace: TraceId, partitions: i32) -> Vec<i32> {
        let mut out = Vec::new();
        if self.observed == 0 {
            return out;
        }
        for bit in 0..HASHES.len() * FORMS.len() {
            if self.possible & (1 << bit) != 0 {
                let (hash, form) = (HASHES[bit / FORMS.len()], FORMS[bit % FORMS.len()]);
                let p = hash.partition(&form.key(trace), partitions);
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_java_client() {
        // Kafka's own test vectors (as signed 32-bit integers).
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key) as i32, want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn crc32_and_fnv1a_known_values() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
    }

    fn trace(i: u64) -> TraceId {
        TraceId::new(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i.wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1)
    }

    #[test]
    fn learns_each_client_and_key_form() {
        for hash in HASHES {
            for form in FORMS {
                let mut p = InputPartitioner::default();
                assert_eq!(p.partition(trace(1), 6), None, "nothing learned before a keyed record");
                for i in 0..40 {
                    let t = if i % 2 == 0 { trace(i) } else { TraceId::new(0, trace(i).low) };
                    let key = form.key(t);
                    p.observe(&key, t, hash.partition(&key, 6), 6);
                }
                assert_eq!(p.learned(), Some((hash, form)), "{hash:?} over {form:?}");
                let t = trace(99);
                assert_eq!(p.partition(t, 6), Some(hash.partition(&form.key(t), 6)));
            }
        }
    }

    #[test]
    fn until_the_partitioner_is_certain_every_partition_it_may_be_is_named() {
        let mut p = InputPartitioner::default();
        let t = trace(7);
        let key = KeyForm::Hex32.key(t);
        p.observe(&key, t, KeyHash::Crc32.partition(&key, 6), 6);
        let after_one = p.candidates(trace(8), 6);
        let right = KeyHash::Crc32.partition(&KeyForm::Hex32.key(trace(8)), 6);
        assert!(after_one.contains(&right), "{after_one:?}");
        for i in 9..60 {
            let t = trace(i);
            let key = KeyForm::Hex32.key(t);
            p.observe(&key, t, KeyHash::Crc32.partition(&key, 6), 6);
        }
        assert_eq!(p.candidates(trace(8), 6), [right]);
    }

    #[test]
    fn an_unknown_partitioner_is_not_guessed() {
        let mut p = InputPartitioner::default();
        for i in 0..40 {
            let t = trace(i);
            p.observe(&KeyForm::Hex32.key(t), t, (i % 6) as i32, 6); // round robin
        }
        assert_eq!(p.learned(), None);
        assert!(p.candidates(trace(3), 6).is_empty());
    }
}
