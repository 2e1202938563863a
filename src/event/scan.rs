//! A validating, allocation-free JSON scanner: the hot path of [`crate::event::classify`].
//!
//! It walks a record once, checks that it is well-formed JSON, and hands the caller the keys of
//! the objects it asks about together with borrowed slices of their values. Nothing is built: a
//! string value is a slice of the input (still escaped), a container value is skipped after its
//! structure has been checked. Strings are searched eight bytes at a time (SWAR) for `"`, `\`
//! and control bytes in one pass; on Twilio's short strings this beats a `memchr2` call per
//! string and checks control bytes for free. `memchr` finds the backslashes when unescaping.
//!
//! # What "valid" means here
//! The scanner accepts exactly what `serde_json::from_slice::<serde_json::Value>` accepts, so a
//! broken record is a dead letter and never a silent skip:
//! - the caller checks UTF-8 once for the whole record ([`Scanner::new`] takes a `&str`);
//! - strings: no raw control characters (U+0000..U+001F), only the escapes `\" \\ \/ \b \f \n \r
//!   \t \uXXXX`, and `\u` surrogates must pair up (a lone surrogate is an error, as in serde_json);
//! - numbers: the JSON grammar (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), and a number
//!   that overflows `f64` is an error, as in serde_json. The overflow check uses Rust's correctly
//!   rounded parser, which may disagree with serde_json's within one ulp of `f64::MAX`;
//! - literals `true`, `false`, `null`; no trailing commas; only trailing whitespace after the value;
//! - at most 127 nested containers, the same limit as serde_json's recursion guard.
//!
//! Keys are passed to the caller decoded: a key written with escapes (`"\u0074ype"`) is the key
//! `type`, as it is for serde_json. Duplicate keys are all passed on in order; callers that store
//! them let the last one win, which is what `serde_json::Value` does.

use std::fmt;

pub(crate) use super::jstr::JStr;
use super::jstr::unescape;

/// Containers may nest this deep minus one, matching serde_json's recursion limit of 128.
const MAX_DEPTH: usize = 128;

/// Why a record is not JSON, and where (a byte offset into the scanned text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanError {
    pub(crate) what: &'static str,
    pub(crate) at: usize,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit of each byte) the bytes of `x` that are `"`, `\` or below 0x20. Bytes above
/// the first marked one may be marked spuriously (borrows), so only the lowest mark is exact.
#[inline(always)]
fn specials(x: u64) -> u64 {
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    let zero_q = quote.wrapping_sub(ONES) & !quote;
    let zero_b = backslash.wrapping_sub(ONES) & !backslash;
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    (zero_q | zero_b | control) & HIGHS
}

/// The index of the first `"`, `\` or control byte at or after `i`, eight bytes at a time.
#[inline]
fn find_special(bytes: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let marks = specials(u64::from_le_bytes(*chunk));
        if marks != 0 {
            return Some(i + (marks.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = bytes.get(i..)?;
    let off = tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some(i + off)
}

/// One scanned value: strings keep their text, everything else only its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Val<'a> {
    Str(JStr<'a>),
    Object,
    Array,
    Number,
    Bool,
    Null,
}

impl Val<'_> {
    /// A short name of the value's JSON type, for dead-letter reasons.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Val::Str(_) => "a string",
            Val::Object => "an object",
            Val::Array => "an array",
            Val::Number => "a number",
            Val::Bool => "a boolean",
            Val::Null => "null",
        }
    }
}

/// A cursor over one JSON text.
pub(crate) struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    /// Starts at the beginning of `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn err(&self, what: &'static str) -> ScanError {
        ScanError { what, at: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Skips leading whitespace and returns the first byte of the next value, if any.
    pub(crate) fn peek_value(&mut self) -> Option<u8> {
        self.skip_ws();
        self.peek()
    }

    /// Requires that only whitespace is left.
    pub(crate) fn finish(&mut self) -> Result<(), ScanError> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.err("trailing characters")),
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, ScanError> {
        let depth = depth + 1;
        if depth >= MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        Ok(depth)
    }

    /// Scans an object at the cursor (after optional whitespace), calling `field` once per key
    /// with the cursor on the value; `field` must consume exactly one value (e.g. with
    /// [`Scanner::value`]). `depth` is the number of containers around the object.
    pub(crate) fn object<F>(&mut self, depth: usize, mut field: F) -> Result<(), ScanError>
    where
        F: FnMut(&mut Self, &str, usize) -> Result<(), ScanError>,
    {
        self.skip_ws();
        if self.peek() != Some(b'{') {
            return Err(self.err("expected an object"));
        }
        let depth = self.enter(depth)?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err("unexpected end inside an object")),
                Some(_) => return Err(self.err("expected a key")),
            }
            let key = self.string()?;
            let unescaped;
            let key = if key.escaped {
                unescaped = unescape(key.raw).ok_or_else(|| self.err("undecodable key"))?;
                unescaped.as_str()
            } else {
                key.raw
            };
            self.skip_ws();
            match self.peek() {
                Some(b':') => self.pos += 1,
                None => return Err(self.err("unexpected end inside an object")),
                Some(_) => return Err(self.err("expected `:`")),
            }
            self.skip_ws();
            field(self, key, depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err(self.err("unexpected end inside an object")),
                Some(_) => return Err(self.err("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), ScanError> {
        let depth = self.enter(depth)?;
        self.pos += 1; // '['
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err(self.err("unexpected end inside an array")),
                Some(_) => return Err(self.err("expected `,` or `]`")),
            }
        }
    }

    /// Scans and validates one value at the cursor (after optional whitespace).
    pub(crate) fn value(&mut self, depth: usize) -> Result<Val<'a>, ScanError> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => self.string().map(Val::Str),
            Some(b'{') => self
                .object(depth, |s, _, d| s.value(d).map(drop))
                .map(|()| Val::Object),
            Some(b'[') => self.array(depth).map(|()| Val::Array),
            Some(b't') => self.literal(b"true").map(|()| Val::Bool),
            Some(b'f') => self.literal(b"false").map(|()| Val::Bool),
            Some(b'n') => self.literal(b"null").map(|()| Val::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(|()| Val::Number),
            None => Err(self.err("unexpected end, expected a value")),
            Some(_) => Err(self.err("expected a value")),
        }
    }

    fn literal(&mut self, lit: &'static [u8]) -> Result<(), ScanError> {
        match self.bytes.get(self.pos..self.pos + lit.len()) {
            Some(found) if found == lit => {
                self.pos += lit.len();
                Ok(())
            }
            _ => Err(self.err("invalid literal")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), ScanError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.err("invalid number (leading zero)"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number (no digit after `.`)"));
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number (no digit in exponent)"));
            }
            float = true;
        }
        // serde_json rejects numbers beyond f64; only long or fractional ones can get there.
        if float || self.pos - start > 20 {
            let finite = self
                .text
                .get(start..self.pos)
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(f64::is_finite);
            if !finite {
                return Err(ScanError {
                    what: "number out of range",
                    at: start,
                });
            }
        }
        Ok(())
    }

    /// Scans a string at the cursor (which is on the opening quote).
    fn string(&mut self) -> Result<JStr<'a>, ScanError> {
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            let Some(at) = find_special(self.bytes, i) else {
                self.pos = self.bytes.len();
                return Err(self.err("unterminated string"));
            };
            match self.bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    let raw = self
                        .text
                        .get(start..at)
                        .ok_or_else(|| self.err("string not on a character boundary"))?;
                    return Ok(JStr { raw, escaped });
                }
                Some(b'\\') => {
                    escaped = true;
                    i = self.escape(at + 1)?;
                }
                _ => {
                    self.pos = at;
                    return Err(self.err("control character in string"));
                }
            }
        }
    }

    /// Validates the escape whose first byte after the backslash is at `i`; returns the index
    /// after it. Mirrors serde_json: `\u` surrogates must come as a high-low pair.
    fn escape(&mut self, i: usize) -> Result<usize, ScanError> {
        self.pos = i;
        match self.bytes.get(i) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 1),
            Some(b'u') => {
                let high = self.hex4_at(i + 1)?;
                if (0xDC00..=0xDFFF).contains(&high) {
                    return Err(self.err("lone surrogate in \\u escape"));
                }
                if !(0xD800..=0xDBFF).contains(&high) {
                    return Ok(i + 5);
                }
                if self.bytes.get(i + 5..i + 7) != Some(b"\\u".as_slice()) {
                    self.pos = i + 5;
                    return Err(self.err("lone surrogate in \\u escape"));
                }
                let low = self.hex4_at(i + 7)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.err("lone surrogate in \\u escape"));
                }
                Ok(i + 11)
            }
            None => Err(self.err("unterminated string")),
            Some(_) => Err(self.err("invalid escape")),
        }
    }

    fn hex4_at(&mut self, i: usize) -> Result<u16, ScanError> {
        let mut n = 0u16;
        for k in i..i + 4 {
            self.pos = k;
            let d = match self.bytes.get(k) {
                Some(&b @ b'0'..=b'9') => b - b'0',
                Some(&b @ b'a'..=b'f') => b - b'a' + 10,
                Some(&b @ b'A'..=b'F') => b - b'A' + 10,
                None => return Err(self.err("unterminated string")),
                Some(_) => return Err(self.err("invalid \\u escape")),
            };
            n = (n << 4) | u16::from(d);
        }
        Ok(n)
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
