//! `application/x-www-form-urlencoded` bodies, as Twilio's Messaging webhook sends them.
//!
//! Written here rather than taken from `form_urlencoded` because that crate is lenient by
//! design (a stray `%` or bytes that are not UTF-8 decode silently), and a webhook needs both
//! answers: every parameter as sent, repeated names kept, to check the signature over; and
//! whether the body was well formed at all, to refuse one that is not (400) instead of storing a
//! guess.

/// A parsed form: every `name=value` pair in order (repeated names kept), decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// The pairs, `+` and `%XX` decoded; invalid sequences kept literally, invalid UTF-8 replaced.
    pub params: Vec<(String, String)>,
    /// Why the body is not a well-formed form, if it is not: the first problem found.
    pub malformed: Option<String>,
}

impl Form {
    /// The last value given for `name` (as with JSON's duplicate keys, the last one wins).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a form body: pairs separated by `&`, name and value by the first `=` (a pair without
/// one has an empty value), empty pairs skipped, `+` is a space, `%XX` a byte. Never fails: a
/// malformed body still yields its pairs, and says what is wrong in [`Form::malformed`].
pub fn parse(body: &[u8]) -> Form {
    let mut form = Form::default();
    let mut offset = 0;
    for pair in body.split(|&b| b == b'&') {
        let start = offset;
        offset += pair.len() + 1;
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let value_at = start + name.len() + 1;
        let name = decode(name, start, &mut form.malformed);
        let value = decode(value, value_at, &mut form.malformed);
        form.params.push((name, value));
    }
    form
}

/// Decodes one name or value; notes the first problem in `malformed`.
fn decode(raw: &[u8], at: usize, malformed: &mut Option<String>) -> String {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (Some(h), Some(l)) => {
                    bytes.push((h << 4) | l);
                    i += 2;
                }
                _ => {
                    malformed.get_or_insert_with(|| {
                        format!("invalid percent-encoding near byte {}", at + i)
                    });
                    bytes.push(b'%');
                }
            },
            b => bytes.push(b),
        }
        i += 1;
    }
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            malformed.get_or_insert_with(|| "a name or value is not UTF-8".to_owned());
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    }
}

fn hex(b: Option<&u8>) -> Option<u8> {
    (*b? as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(f: &Form) -> Vec<(&str, &str)> {
        f.params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn decodes_plus_percent_and_repeats() {
        let f = parse(b"From=%2B15551230001&Body=Stop+it%21&Digits=1&Digits=2&Empty=&Flag");
        assert_eq!(f.malformed, None);
        assert_eq!(
            pairs(&f),
            [
                ("From", "+15551230001"),
                ("Body", "Stop it!"),
                ("Digits", "1"),
                ("Digits", "2"),
                ("Empty", ""),
                ("Flag", ""),
            ]
        );
        assert_eq!(f.get("Digits"), Some("2"));
        assert_eq!(f.get("Nope"), None);
    }

    #[test]
    fn unicode_and_equals_in_values() {
        let f = parse("Body=caf%C3%A9+%3D+%E2%9C%8B&A=b=c&&".as_bytes());
        assert_eq!(f.malformed, None);
        assert_eq!(pairs(&f), [("Body", "café = ✋"), ("A", "b=c")]);
        assert_eq!(parse(b"").params, vec![]);
    }

    #[test]
    fn malformed_bodies_say_why_and_keep_their_pairs() {
        let f = parse(b"Body=100%&To=%zz");
        assert_eq!(pairs(&f), [("Body", "100%"), ("To", "%zz")]);
        assert!(f.malformed.unwrap().contains("percent-encoding"));
        let f = parse(b"Body=%FF%FE");
        assert!(f.malformed.unwrap().contains("UTF-8"));
        assert_eq!(f.params[0].1, "\u{FFFD}\u{FFFD}");
        let f = parse(&[b'B', b'=', 0xff]);
        assert!(f.malformed.is_some());
    }
}
