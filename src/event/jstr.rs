//! A JSON string as the scanner hands it out: a slice of the record between the quotes, still
//! escaped, decoded only when a caller asks for its value (most are compared, not decoded).

use std::borrow::Cow;

/// A JSON string as it appears in the input: the text between the quotes, still escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JStr<'a> {
    /// The text between the quotes, as in the record.
    pub(super) raw: &'a str,
    /// Whether it holds a backslash (then [`JStr::decode`] must copy).
    pub(super) escaped: bool,
}

impl<'a> JStr<'a> {
    /// The string's value: borrowed when it has no escapes, unescaped into a `String` otherwise.
    /// `None` only on a scanner bug (escapes are validated while scanning); callers turn it into
    /// a dead letter rather than panic.
    pub(crate) fn decode(self) -> Option<Cow<'a, str>> {
        if self.escaped {
            unescape(self.raw).map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(self.raw))
        }
    }
}

/// Resolves the escapes of a validated string body, copying the runs between backslashes.
pub(super) fn unescape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'\\', bytes.get(i..)?) {
        out.push_str(raw.get(i..i + off)?);
        let e = i + off + 1;
        i = e + 1;
        let c = match bytes.get(e)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = u32::from(hex4(bytes, e + 1)?);
                i = e + 5;
                if (0xD800..0xDC00).contains(&high) {
                    let low = u32::from(hex4(bytes, e + 7)?);
                    i = e + 11;
                    char::from_u32(0x10000 + ((high - 0xD800) << 10) + low.checked_sub(0xDC00)?)?
                } else {
                    char::from_u32(high)?
                }
            }
            _ => return None,
        };
        out.push(c);
    }
    out.push_str(raw.get(i..)?);
    Some(out)
}

/// The four hex digits at `i`, if they are hex digits.
fn hex4(bytes: &[u8], i: usize) -> Option<u16> {
    let digits = bytes.get(i..i + 4)?;
    digits.iter().try_fold(0u16, |n, &b| {
        let d = (b as char).to_digit(16)?;
        Some((n << 4) | d as u16)
    })
}
