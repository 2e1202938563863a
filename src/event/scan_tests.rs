//! Unit tests of the scanner: it must accept exactly what `serde_json::Value` accepts.

use std::borrow::Cow;

use super::*;

/// Scans `text` as one JSON value followed by whitespace only.
fn scan(text: &str) -> Result<(), ScanError> {
    let mut s = Scanner::new(text);
    s.value(0)?;
    s.finish()
}

fn serde_ok(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok()
}

#[track_caller]
fn agrees(text: &str) {
    assert_eq!(
        scan(text).is_ok(),
        serde_ok(text),
        "scanner vs serde_json on {text:?}: {:?}",
        scan(text)
    );
}

#[test]
fn accepts_and_rejects_like_serde_json() {
    let cases = [
        // valid
        r#"{}"#,
        r#" { "a" : [ 1 , -2.5e+3 , true , false , null , "x" , { } , [ ] ] } "#,
        "\t{\"a\":\"b\"}\r\n",
        r#""plain""#,
        r#"0"#,
        r#"-0"#,
        r#"1E5"#,
        r#"0.001"#,
        r#"123456789012345678901234567890"#,
        r#"1e308"#,
        r#"0e99999"#,
        r#""\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00""#,
        r#"{"a":1,"a":2}"#,
        "\"caf\u{e9} \u{1F600}\"",
        // invalid
        "",
        " ",
        "{",
        "}",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":1,}"#,
        r#"[1,]"#,
        r#"[1 2]"#,
        r#"{"a":1 "b":2}"#,
        r#"{a:1}"#,
        r#"{'a':1}"#,
        r#"{"a":1}}"#,
        r#"{"a":1} x"#,
        r#"{"a":1}{}"#,
        r#"01"#,
        r#"-"#,
        r#"-a"#,
        r#"1."#,
        r#"1.e5"#,
        r#"1e"#,
        r#"1e+"#,
        r#"+1"#,
        r#".5"#,
        r#"1e400"#,
        r#"-1e400"#,
        r#"NaN"#,
        r#"tru"#,
        r#"truth"#,
        r#"nul"#,
        r#"True"#,
        r#""abc"#,
        r#""abc\"#,
        r#""\x""#,
        r#""\u12""#,
        r#""\u12G4""#,
        r#""\uDE00""#,
        r#""\uD83D""#,
        r#""\uD83Dx""#,
        r#""\uD83D\n""#,
        r#""\uD83D\u0041""#,
        "\"a\nb\"",
        "\"a\tb\"",
        "\"\u{1}\"",
        "[\"a\",\n\"b\u{1f}\"]",
    ];
    for text in cases {
        agrees(text);
    }
}

#[test]
fn nesting_limit_matches_serde_json() {
    for depth in [126, 127, 128, 129, 200] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        agrees(&arrays);
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        agrees(&objects);
    }
    // Deep unbalanced input is an error, not a stack overflow.
    assert!(scan(&"[".repeat(100_000)).is_err());
}

#[test]
fn strings_keep_their_text_and_decode_escapes() {
    let mut s = Scanner::new(r#""a\"b\u00e9\\" "plain""#);
    let Ok(Val::Str(escaped)) = s.value(0) else {
        panic!("expected a string")
    };
    assert_eq!(escaped.decode().as_deref(), Some("a\"bé\\"));
    let Ok(Val::Str(plain)) = s.value(0) else {
        panic!("expected a string")
    };
    assert!(matches!(plain.decode(), Some(Cow::Borrowed("plain"))));
    assert_eq!(s.finish(), Ok(()));
}

#[test]
fn objects_pass_decoded_keys_in_order_with_duplicates() {
    let text = r#"{"\u0074ype":1,"data":{"type":"nested"},"type":"x","k\"q":[{"type":2}]}"#;
    let mut s = Scanner::new(text);
    let mut keys = Vec::new();
    let r = s.object(0, |s, k, d| {
        keys.push(k.to_owned());
        s.value(d).map(drop)
    });
    assert_eq!(r, Ok(()));
    // The nested "type" keys are not seen at the top level.
    assert_eq!(keys, ["type", "data", "type", "k\"q"]);
}

#[test]
fn errors_say_where() {
    assert_eq!(
        scan(r#"{"a":tru}"#),
        Err(ScanError {
            what: "invalid literal",
            at: 5
        })
    );
    assert_eq!(
        scan(r#"{"a":1"#).map_err(|e| e.what),
        Err("unexpected end inside an object")
    );
    assert_eq!(scan("\"a\u{1}\"").map_err(|e| e.at), Err(2));
}

#[test]
fn every_prefix_of_a_record_is_rejected() {
    let record = r#"{"specversion":"1.0","id":"EZ1","type":"t","source":"s","data":"{\"a\":[1,2.5e3,true,null,\"\\u00e9\"]}"}"#;
    assert_eq!(scan(record), Ok(()));
    for end in 0..record.len() {
        if let Some(prefix) = record.get(..end) {
            assert!(scan(prefix).is_err(), "prefix {end} accepted: {prefix:?}");
        }
    }
}

#[test]
fn decode_matches_serde_json() {
    let cases = [
        r#""""#,
        r#""no escapes""#,
        r#""\"quoted\" and \\ and \/""#,
        r#""\b\f\n\r\t""#,
        r#""\u0000 \u001f \u00e9 \u20AC \uFFFF""#,
        r#""emoji \ud83d\ude00 and \uD83E\uDD14 end""#,
        r#""{\"messageSid\": \"SM1\", \"body\": \"say \\\"hi\\\"\"}""#,
        "\"caf\u{e9} \\u00e9 \u{1F600}\"",
    ];
    for text in cases {
        let mut s = Scanner::new(text);
        let Ok(Val::Str(j)) = s.value(0) else {
            panic!("not a string: {text}")
        };
        let expected: String = serde_json::from_str(text).expect("valid test case");
        assert_eq!(j.decode().as_deref(), Some(expected.as_str()), "{text}");
    }
}

/// The eight-bytes-at-a-time search must find the first special byte wherever it sits, and
/// must not stop at bytes that merely look special after a borrow (e.g. 0x21 after 0x00).
#[test]
fn string_search_finds_every_special_byte_at_every_offset() {
    for pad in 0..20 {
        for b in 0u8..0x80 {
            let mut text = vec![b'"'];
            text.extend(std::iter::repeat_n(b'a', pad));
            text.push(b);
            text.extend_from_slice(b"xyz\"");
            let Ok(text) = std::str::from_utf8(&text) else {
                continue;
            };
            agrees(text);
        }
        // Non-ASCII bytes (high bit set) are never special.
        let text = format!("\"{}\u{e9}\u{1F600}\u{7f}!\"", "a".repeat(pad));
        assert_eq!(scan(&text), Ok(()));
    }
}
