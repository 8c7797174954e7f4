//! Cutting text to a byte length without breaking a UTF-8 character, with a
//! marker a person recognises: names, summaries and error details that came
//! from input must not be able to grow poirot's outputs without bound.

use std::borrow::Cow;

/// Appended where text was cut: an ellipsis and a word, so a cut name in a
/// Grafana legend, a Neo4j node or a Kibana column reads as cut, not as a
/// name that really ends in "…". 14 bytes.
pub const TRUNCATION_MARKER: &str = "…[truncated]";

/// The largest char boundary of `s` at or below `at`.
pub fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    // A UTF-8 character is at most 4 bytes: at most 3 steps back.
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// `s` cut to at most `max` bytes, [`TRUNCATION_MARKER`] included, at a char
/// boundary; returned unchanged (borrowed) when it fits. With `max` shorter than
/// the marker, the text is cut without it. The second value is how many bytes
/// of `s` were kept.
pub fn truncate(s: &str, max: usize) -> (Cow<'_, str>, usize) {
    if s.len() <= max {
        return (Cow::Borrowed(s), s.len());
    }
    if max < TRUNCATION_MARKER.len() {
        let keep = floor_char_boundary(s, max);
        return (Cow::Borrowed(&s[..keep]), keep);
    }
    let keep = floor_char_boundary(s, max - TRUNCATION_MARKER.len());
    let mut out = String::with_capacity(keep + TRUNCATION_MARKER.len());
    out.push_str(&s[..keep]);
    out.push_str(TRUNCATION_MARKER);
    (Cow::Owned(out), keep)
}

/// `1234567` as `1,234,567`, for summaries people read.
pub fn thousands(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 64-bit FNV-1a: a fixed, documented hash, so ids stay the same across builds
/// and versions (the standard library's hashers make no such promise).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_separated() {
        let cases = [(0, "0"), (999, "999"), (1000, "1,000"), (20_028, "20,028"), (1_234_567, "1,234,567")];
        for (v, want) in cases {
            assert_eq!(super::thousands(v), want);
        }
    }

    use super::*;

    #[test]
    fn text_that_fits_is_left_alone() {
        assert!(matches!(truncate("frontend", 8), (Cow::Borrowed("frontend"), 8)));
        assert_eq!(truncate("", 0).0, "");
    }

    #[test]
    fn cut_text_ends_with_the_marker_and_fits() {
        let s = "a".repeat(1000);
        let (cut, kept) = truncate(&s, 64);
        assert_eq!(cut.len(), 64);
        assert_eq!(kept, 64 - TRUNCATION_MARKER.len());
        assert!(cut.ends_with(TRUNCATION_MARKER));
        assert!(cut.starts_with(&s[..kept]));
    }

    #[test]
    fn multi_byte_characters_are_never_split() {
        // 'é' is 2 bytes, '€' 3, '𝄞' 4: every cut position inside one moves back to its start.
        for ch in ["é", "€", "𝄞"] {
            let s = ch.repeat(100);
            for max in TRUNCATION_MARKER.len()..s.len() {
                let (cut, kept) = truncate(&s, max);
                assert!(cut.len() <= max, "{ch} {max}: {} bytes", cut.len());
                assert_eq!(kept % ch.len(), 0, "{ch} {max}: cut inside a character");
                assert!(max - TRUNCATION_MARKER.len() - kept < ch.len(), "{ch} {max}: cut too early");
                assert_eq!(cut.strip_suffix(TRUNCATION_MARKER), Some(&s[..kept]));
            }
        }
    }

    #[test]
    fn a_limit_below_the_marker_cuts_without_it() {
        let (cut, kept) = truncate("€€€€", 5);
        assert_eq!((cut.as_ref(), kept), ("€", 3));
    }

    #[test]
    fn cutting_twice_changes_nothing() {
        let s = "ü".repeat(300);
        let (once, _) = truncate(&s, 256);
        let (twice, kept) = truncate(&once, 256);
        assert_eq!(once, twice);
        assert_eq!(kept, once.len());
    }

    #[test]
    fn floor_boundary() {
        let s = "a€b";
        assert_eq!((0..=6).map(|i| floor_char_boundary(s, i)).collect::<Vec<_>>(), [0, 1, 1, 1, 4, 5, 5]);
    }
}
