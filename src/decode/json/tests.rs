//! The reader against serde_json and on its edges.

use super::lexical::string_run;
use super::*;

fn skips(text: &str) -> bool {
    match Reader::new(text.as_bytes(), "test") {
        Ok(mut r) => r.skip().and_then(|()| r.end()).is_ok(),
        Err(_) => false,
    }
}

#[test]
fn accepts_what_serde_json_accepts_and_refuses_the_rest() {
    let cases = [
        r#"{}"#,
        r#"[]"#,
        r#"{"a":[1,-0,0.5,1e3,-2E-7,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"]}"#,
        " \t\r\n{ \"a\" : { \"b\" : [ ] } } \n",
        r#"{"a":1,}"#,
        r#"{,"a":1}"#,
        r#"[1,]"#,
        r#"[,1]"#,
        r#"{"a" 1}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.5}"#,
        r#"{"a":1e}"#,
        r#"{"a":-}"#,
        r#"{"a":tru}"#,
        r#"{"a":nul}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":"\udc00"}"#,
        "{\"a\":\"tab\tinside\"}",
        r#"{"a":"unterminated}"#,
        r#"{"a":1} x"#,
        r#"{"a":1}}"#,
        r#"{"a":[1}"#,
        r#"{1:2}"#,
        r#"["a" "b"]"#,
    ];
    for c in cases {
        let theirs = serde_json::from_str::<serde_json::Value>(c).is_ok();
        assert_eq!(skips(c), theirs, "{c}");
    }
}

#[test]
fn refuses_nesting_deeper_than_the_limit_without_overflowing() {
    let deep = "[".repeat(100_000);
    assert!(!skips(&deep));
    for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(skips(&text), serde_json::from_str::<serde_json::Value>(&text).is_ok(), "{depth}");
    }
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(skips(&ok));
    let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert!(!skips(&over));
}

#[test]
fn strings_are_borrowed_unless_escaped() {
    let mut r = Reader::new(br#"{"plain":"abc","esc":"a\nb\u00e9"}"#, "test").expect("json");
    assert!(r.object("o").expect("object"));
    assert_eq!(r.key().expect("key").as_deref(), Some("plain"));
    assert!(matches!(r.str("plain").expect("str"), Cow::Borrowed("abc")));
    assert_eq!(r.key().expect("key").as_deref(), Some("esc"));
    assert_eq!(r.str("esc").expect("str"), "a\nbé");
    assert!(r.key().expect("end").is_none());
    r.end().expect("nothing after");
}

#[test]
fn names_what_is_wrong() {
    let e = Reader::new(b"\x00\x01garbage", "jaeger json").err().expect("not json");
    assert_eq!(e.reason, Reason::MalformedJson);
    assert!(e.detail.contains("not JSON"), "{}", e.detail);
    let e = Reader::new(b"  ", "jaeger json").err().expect("empty");
    assert!(e.detail.contains("empty"), "{}", e.detail);
    let e = Reader::new(b"{\"a\":\"\xff\"}", "jaeger json").err().expect("not utf-8");
    assert_eq!(e.reason, Reason::InvalidUtf8);
    let mut r = Reader::new(br#"{"a":5}"#, "otlp json").expect("json");
    r.object("request").expect("object");
    r.key().expect("key");
    let e = DecodeError::from(r.str("name").expect_err("a number"));
    assert_eq!(e.detail, "otlp json: name is a number, not a string");
}

#[test]
fn string_runs_stop_at_the_first_byte_that_needs_attention() {
    for len in 0..40 {
        for stop in [b'"', b'\\', b'\n', 0x00, 0x1f] {
            for fill in [b'a', 0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
                let mut text = vec![fill; len];
                text.push(stop);
                text.extend_from_slice(b"\"\\\x01tail");
                assert_eq!(string_run(&text), len, "{fill:#x} then {stop:#x} at {len}");
                assert_eq!(string_run(&text[..len]), len);
            }
        }
    }
}

#[test]
fn integers_as_numbers_or_strings() {
    let mut r =
        Reader::new(br#"[1700000000000000000,"18446744073709551615",null,1.5,"x"]"#, "t").expect("json");
    r.array("a").expect("array");
    let mut got = Vec::new();
    while r.item().expect("item") {
        got.push(r.u64("n").ok());
    }
    assert_eq!(got, [Some(1_700_000_000_000_000_000), Some(u64::MAX), Some(0), None, None]);
}
