//! Byte-level and JSON-aware mutations of corpus records, and the pool of interesting inputs
//! they are drawn from. Longer than most files: a third of it is the tables of tokens and
//! values the mutations draw from, and the mutations read best next to each other.

use super::*;

/// Inputs kept for further mutation: at most this many, each at most this long.
pub(crate) const POOL_CAP: usize = 512;
pub(crate) const POOL_MAX_INPUT: usize = 16 << 10;

/// Tokens with a meaning in JSON, inserted anywhere.
pub(crate) const TOKENS: [&str; 22] = [
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\\u0000",
    "\\ud800",
    "\\udc00",
    "\\ud800\\udc00",
    "\\u",
    "1e999",
    "-",
    "null",
    "true",
    "false",
    "0",
    "\"\":",
    "{}",
    "[]",
];

/// Whole values (JSON text), valid and not, put in place of a member's value.
pub(crate) const VALUES: [&str; 48] = [
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1",
    "-1",
    "1.5",
    "1e999",
    "-1e999",
    "1E400",
    "1e-999",
    "0e99999999999",
    "1.7976931348623157e308",
    "1.7976931348623158e308",
    "1.7976931348623159e308",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "[]",
    "{}",
    "[null]",
    "{\"a\":1}",
    "\"\"",
    "\"STOP\"",
    "\"stop\"",
    "[\"STOP\"]",
    "{\"optOutType\":\"STOP\"}",
    "\"{}\"",
    "\"[]\"",
    "\"{\\\"test_id\\\":\\\"t\\\"}\"",
    "-",
    "tru",
    "nul",
    "01",
    "1.",
    ".5",
    "+1",
    "NaN",
    "Infinity",
    "'x'",
    "[,]",
    "{,}",
    "[1,]",
    "{\"a\":1,}",
    "\"unterminated",
    "}",
    "]",
];

/// Bytes worth writing over others.
pub(crate) const INTERESTING_BYTES: &[u8] =
    b"\x00\x01\x08\x09\x0a\x0b\x0d\x1f\x20\x22\x2c\x2d\x2e\x30\x31\x39\x3a\x45\x5b\x5c\x5d\x65\x66\x6e\x74\x75\x7b\x7d\x7f\x80\xa0\xbf\xc0\xc2\xc3\xed\xef\xf4\xf8\xff";

/// Byte sequences that are not UTF-8.
pub(crate) const INVALID_UTF8: [&[u8]; 11] = [
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\xbf",
    b"\xc3",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
];

/// Whitespace, JSON and not.
pub(crate) const WHITESPACE: [&str; 9] = [
    " ", "\t", "\n", "\r", "\x0b", "\x0c", "\u{a0}", "\u{feff}", "\u{2028}",
];

/// String contents (already JSON-escaped where needed) for any string.
pub(crate) const ANY_STRINGS: [&str; 30] = [
    "",
    " ",
    "x",
    "é",
    "😀",
    "\u{10ffff}",
    "Z\u{364}\u{357}a\u{308}\u{316}l\u{36e}g\u{30c}o",
    "\u{202e}gnirts",
    "\u{feff}",
    "\u{2028}\u{2029}",
    "\u{fffd}",
    "中文字符",
    "\\u0000",
    "\\ud83d\\ude00",
    "\\ud800",
    "\\udc00",
    "\\ud800\\u0041",
    "\\uD800\\uDBFF",
    "\\uDBFF\\uDFFF",
    "\\\"",
    "\\\\",
    "\\/",
    "\\b\\f\\n\\r\\t",
    "\\x",
    "\\u12",
    "\\u12G4",
    "\\U0041",
    "\x01",
    "\x7f",
    "\t",
];

/// Opt keywords, revocation phrases and near misses, for `optOutType` and `body`.
pub(crate) const OPT_WORDS: [&str; 58] = [
    "Stop texting me",
    "please unsubscribe me",
    "STOP!!",
    "stoooop \\ud83d\\uded1",
    "remove me from this list",
    "opt out",
    "Opt-Out please",
    "I revoke my consent",
    "no more texts",
    "do not text me",
    "don't stop",
    "do not text me back",
    "I'll stop by",
    "bus stop",
    "S T O P",
    "s\\u0074op texting me",
    "t\\u0061ke me off your list",
    "unsubcribe pls",
    "stop\\nwho is this",
    "\\uff33\\uff34\\uff2f\\uff30!",
    "st\\u00f6p",
    "non-stop",
    "STOP",
    "START",
    "HELP",
    "stop",
    "Start",
    "hElP",
    "STOPALL",
    "unsubscribe",
    "Cancel",
    "end",
    "QUIT",
    "revoke",
    "optout",
    "yes",
    "UNSTOP",
    "info",
    "opt out",
    "stop please",
    "  stop ",
    "\\tSTOP\\n",
    "\u{a0}stop\u{a0}",
    "\u{2003}help",
    "\u{17f}top",
    "\u{fb06}art",
    "\u{fb05}op",
    "\u{ff33}\u{ff34}\u{ff2f}\u{ff30}",
    "STOP\\u0000",
    "\\u0053TOP",
    "s\\u0074op",
    "STO",
    "STOPP",
    "ST\u{d6}P",
    "\u{131}nfo",
    "\u{130}NFO",
    "\u{212a}",
    "",
];

pub(crate) const TIMESTAMPS: [&str; 26] = [
    "2026-03-01T12:00:04.512Z",
    "2026-03-01T12:00:04Z",
    "2026-03-01T12:00:04.512+01:00",
    "2026-03-01T12:00:04.512+0100",
    "2026-03-01T12:00:04.512-0000",
    "2026-03-01t12:00:04.512z",
    "2026-03-01 12:00:04Z",
    "2026-03-01T12:00:04",
    "2026-02-30T12:00:04Z",
    "2016-12-31T23:59:60Z",
    "2026-03-01T24:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "0000-01-01T00:00:00Z",
    "+10000-01-01T00:00:00Z",
    "0001-01-01T00:30:00+01:00",
    "9999-12-31T23:30:00-01:00",
    "10000-01-01T00:00:00+0000",
    "+2026-03-01T12:00:04Z",
    "2026-03-01T12:00:04.512+25:00",
    "2026-03-01T12:00:04,512Z",
    "2026-03-01T12:00:04.5120000000000000000001Z",
    "2026-03-01T12:00:04.512+01",
    "2026-03-01T12:00:04.512+01:00:00",
    "1772366404",
    "2026-03-01T12:00:04\\u002e512Z",
    "",
];

pub(crate) const SCHEMAS: [&str; 18] = [
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/5",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/4",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/6",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/4.json",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/5.json",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/0",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/04",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/99999999999",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/4.JSON",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/4 ",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/+4",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/\u{664}",
    "https://events-schemas.twilio.com/Messaging.InboundMessageV1/4/",
    "https:\\/\\/events-schemas.twilio.com\\/Messaging.InboundMessageV1\\/4",
    "4",
    "/",
    "",
];

pub(crate) const SPECVERSIONS: [&str; 7] = ["1.0", "0.3", "1.0 ", "1", "1.00", "", "\\u0031.0"];

pub(crate) const TYPES: [&str; 10] = [
    INBOUND_MESSAGE_TYPE,
    TEST_EVENT_TYPE,
    REASSIGNED_NUMBER_TYPE,
    "com.twilio.messaging.reassigned-number.detected ",
    "com.twilio.messaging.message.delivered",
    "COM.TWILIO.MESSAGING.INBOUND-MESSAGE.RECEIVED",
    "com.twilio.messaging.inbound-message.receive\\u0064",
    "com.twilio.eventstreams.test-event ",
    "",
    " ",
];

/// `consent_operation` values: the documented one, near misses, and others.
pub(crate) const CONSENT_OPERATIONS: [&str; 6] = [
    "opt-out-created",
    "OPT-OUT-CREATED",
    "opt-out-created ",
    "opt-in-created",
    "opt-out-removed",
    "",
];

pub(crate) const IDS: [&str; 7] = [
    "AC0f3c2b1a0f3c2b1a0f3c2b1a0f3c2b1a",
    "+15551230001",
    "whatsapp:+15551230001",
    "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c",
    "",
    " ",
    "\\u0000",
];

/// Nesting depths around serde_json's limit (127 containers), and beyond.
pub(crate) const DEPTHS: [usize; 10] = [1, 2, 60, 124, 125, 126, 127, 128, 129, 200];

/// The end (exclusive) of the string literal whose opening quote is at `s`.
pub(crate) fn string_end(b: &[u8], s: usize) -> Option<usize> {
    let mut i = s + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The spans of all string literals, found by a lenient lexer (it stops at an unterminated one).
pub(crate) fn string_spans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            let Some(end) = string_end(b, i) else { break };
            out.push((i, end));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the value starting at `v`, by bracket counting.
pub(crate) fn value_end(b: &[u8], v: usize) -> Option<usize> {
    match b.get(v)? {
        b'"' => string_end(b, v),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = v;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let end = b[v..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .map_or(b.len(), |p| v + p);
            (end > v).then_some(end)
        }
    }
}

/// One `"key": value` pair found in the text (at any depth).
pub(crate) struct Member {
    pub(crate) key: (usize, usize),
    pub(crate) name: Option<String>,
    pub(crate) value: (usize, usize),
}

pub(crate) fn members(b: &[u8]) -> Vec<Member> {
    string_spans(b)
        .into_iter()
        .filter_map(|(s, e)| {
            let colon = skip_ws(b, e);
            if b.get(colon) != Some(&b':') {
                return None;
            }
            let v = skip_ws(b, colon + 1);
            let ve = value_end(b, v)?;
            Some(Member {
                key: (s, e),
                name: serde_json::from_slice::<String>(&b[s..e]).ok(),
                value: (v, ve),
            })
        })
        .collect()
}

/// JSON-encodes `s` as a string literal, writing each character as a `\u` escape with
/// probability 1/`one_in` (0: never), in random hex case.
pub(crate) fn encode_string(rng: &mut fastrand::Rng, s: &str, one_in: u32) -> Vec<u8> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if one_in > 0 && rng.u32(..one_in) == 0 {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                if rng.bool() {
                    let _ = write!(out, "\\u{u:04x}");
                } else {
                    let _ = write!(out, "\\u{u:04X}");
                }
            }
            continue;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if rng.u8(..4) == 0 => out.push_str("\\/"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out.into_bytes()
}

pub(crate) fn splice(buf: &mut Vec<u8>, range: (usize, usize), with: &[u8]) {
    buf.splice(range.0..range.1, with.iter().copied());
}

/// Positions between tokens: after `{ [ , :` and before `} ]`.
pub(crate) fn boundaries(b: &[u8]) -> Vec<usize> {
    b.iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            b'{' | b'[' | b',' | b':' => Some(i + 1),
            b'}' | b']' => Some(i),
            _ => None,
        })
        .collect()
}

pub(crate) struct Fuzzer {
    pub(crate) rng: fastrand::Rng,
    pub(crate) corpus: Vec<Vec<u8>>,
    /// Recent mutants that are still JSON, mutated further (so mutations stack up).
    pub(crate) pool: Vec<Vec<u8>>,
    /// Mutated inputs are cut to this length (long-string mutations can grow them).
    pub(crate) max_input: usize,
}

impl Fuzzer {
    pub(crate) fn new(seed: u64, corpus: Vec<Vec<u8>>, max_input: usize) -> Self {
        Fuzzer {
            rng: fastrand::Rng::with_seed(seed),
            corpus,
            pool: Vec::new(),
            max_input,
        }
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.usize(..items.len())]
    }

    /// The next input: a corpus record or a kept mutant, mutated one to eight times.
    pub(crate) fn next_input(&mut self) -> Vec<u8> {
        let mut buf = if !self.pool.is_empty() && self.rng.u8(..4) == 0 {
            self.pool[self.rng.usize(..self.pool.len())].clone()
        } else {
            self.corpus[self.rng.usize(..self.corpus.len())].clone()
        };
        let n = match self.rng.u8(..16) {
            0..=5 => 1,
            6..=9 => 2,
            10..=12 => 3,
            _ => self.rng.usize(4..=8),
        };
        for _ in 0..n {
            self.mutate(&mut buf, true);
            buf.truncate(self.max_input);
        }
        buf
    }

    /// Keeps some mutants that are still JSON for further mutation.
    pub(crate) fn offer(&mut self, input: Vec<u8>, category: usize) {
        if category == NOT_JSON || input.len() > POOL_MAX_INPUT || self.rng.u8(..8) != 0 {
            return;
        }
        if self.pool.len() < POOL_CAP {
            self.pool.push(input);
        } else {
            let i = self.rng.usize(..POOL_CAP);
            self.pool[i] = input;
        }
    }

    /// Applies one random mutation. `nested` allows mutating inside a `data` string (which
    /// mutates the decoded text with `nested` off).
    pub(crate) fn mutate(&mut self, buf: &mut Vec<u8>, nested: bool) {
        match self.rng.u32(..100) {
            0..=5 => self.flip_bit(buf),
            6..=10 => self.set_byte(buf),
            11..=12 => {
                let at = self.rng.usize(..=buf.len());
                buf.truncate(at);
            }
            13..=17 => self.delete_range(buf),
            18..=19 => self.insert_random(buf),
            20..=22 => self.duplicate_range(buf),
            23..=25 => self.splice_records(buf),
            26..=31 => self.insert_token(buf),
            32..=42 => self.replace_string(buf),
            43..=50 => self.replace_value(buf),
            51..=58 => self.change_case(buf),
            59..=62 => self.escape_string(buf),
            63..=67 => self.swap_data(buf),
            68..=74 if nested => self.mutate_data_string(buf),
            68..=74 => self.replace_string(buf),
            75..=79 => self.duplicate_member(buf),
            80..=84 => self.delete_member(buf),
            85..=88 => self.transplant_member(buf),
            89..=92 => self.deep_nesting(buf),
            93..=96 => self.invalid_utf8(buf),
            _ => self.whitespace(buf),
        }
    }

    pub(crate) fn flip_bit(&mut self, buf: &mut [u8]) {
        if !buf.is_empty() {
            let i = self.rng.usize(..buf.len());
            buf[i] ^= 1 << self.rng.u8(..8);
        }
    }

    pub(crate) fn set_byte(&mut self, buf: &mut [u8]) {
        if !buf.is_empty() {
            let i = self.rng.usize(..buf.len());
            buf[i] = if self.rng.bool() {
                self.rng.u8(..)
            } else {
                *self.pick(INTERESTING_BYTES)
            };
        }
    }

    /// A short length mostly, sometimes up to half the input.
    pub(crate) fn span_len(&mut self, len: usize) -> usize {
        if self.rng.u8(..4) == 0 {
            self.rng.usize(1..=(len / 2).max(1))
        } else {
            self.rng.usize(1..=16)
        }
    }

    pub(crate) fn delete_range(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        let start = self.rng.usize(..buf.len());
        let end = (start + self.span_len(buf.len())).min(buf.len());
        buf.drain(start..end);
    }

    pub(crate) fn insert_random(&mut self, buf: &mut Vec<u8>) {
        let at = self.rng.usize(..=buf.len());
        let n = self.rng.usize(1..=8);
        let bytes: Vec<u8> = (0..n).map(|_| self.rng.u8(..)).collect();
        splice(buf, (at, at), &bytes);
    }

    pub(crate) fn duplicate_range(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        let start = self.rng.usize(..buf.len());
        let end = (start + self.span_len(buf.len())).min(buf.len());
        let copy = buf[start..end].to_vec();
        let at = self.rng.usize(..=buf.len());
        splice(buf, (at, at), &copy);
    }

    /// Joins a prefix of this input to a suffix of another record, or inserts a piece of it.
    pub(crate) fn splice_records(&mut self, buf: &mut Vec<u8>) {
        let other = self.corpus[self.rng.usize(..self.corpus.len())].clone();
        let at = self.rng.usize(..=buf.len());
        let from = self.rng.usize(..=other.len());
        if self.rng.bool() {
            buf.truncate(at);
            buf.extend_from_slice(&other[from..]);
        } else {
            let to = (from + self.rng.usize(..=256)).min(other.len());
            splice(buf, (at, at), &other[from..to]);
        }
    }

    pub(crate) fn position(&mut self, buf: &[u8]) -> usize {
        if self.rng.bool() {
            let b = boundaries(buf);
            if !b.is_empty() {
                return *self.pick(&b);
            }
        }
        self.rng.usize(..=buf.len())
    }

    pub(crate) fn insert_token(&mut self, buf: &mut Vec<u8>) {
        let token = *self.pick(&TOKENS);
        let at = self.position(buf);
        splice(buf, (at, at), token.as_bytes());
    }

    /// A string's new contents (JSON text between the quotes), fitting the member's key.
    pub(crate) fn string_contents(&mut self, key: Option<&str>) -> Vec<u8> {
        if self.rng.bool() {
            let fitting: Option<&[&str]> = match key {
                Some("optOutType" | "body") => Some(&OPT_WORDS),
                Some("timestamp" | "time") => Some(&TIMESTAMPS),
                Some("dataschema") => Some(&SCHEMAS),
                Some("specversion") => Some(&SPECVERSIONS),
                Some("type") => Some(&TYPES),
                Some("consent_operation") => Some(&CONSENT_OPERATIONS),
                Some(
                    "id"
                    | "source"
                    | "accountSid"
                    | "from"
                    | "to"
                    | "messagingServiceSid"
                    | "messageSid"
                    | "test_id"
                    | "account_sid"
                    | "from_number"
                    | "to_number"
                    | "messaging_service_sid",
                ) => Some(&IDS),
                _ => None,
            };
            if let Some(words) = fitting {
                return self.pick(words).as_bytes().to_vec();
            }
        }
        match self.rng.u8(..8) {
            0 => {
                let unit = *self.pick(&["a", "é", "😀", "\\n", "\\u00e9", " "]);
                let n = (*self.pick(&[64, 1000, 10_000, 65_537])).min(self.max_input / 8);
                unit.repeat(n).into_bytes()
            }
            1 | 2 => self.pick(&ANY_STRINGS).as_bytes().to_vec(),
            3 | 4 => self.pick(&OPT_WORDS).as_bytes().to_vec(),
            5 => self.pick(&TIMESTAMPS).as_bytes().to_vec(),
            6 => {
                let n = self.rng.usize(1..=20);
                (0..n).map(|_| self.rng.u8(0x20..0x7f)).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Replaces the contents of a string (mostly a member's value, else any string, keys too).
    pub(crate) fn replace_string(&mut self, buf: &mut Vec<u8>) {
        let ms = members(buf);
        let (span, key) = if !ms.is_empty() && self.rng.u8(..4) != 0 {
            let m = self.pick(&ms);
            if buf.get(m.value.0) != Some(&b'"') {
                // Not a string: make it one.
                let contents = self.string_contents(m.name.as_deref());
                let mut lit = b"\"".to_vec();
                lit.extend_from_slice(&contents);
                lit.push(b'"');
                splice(buf, m.value, &lit);
                return;
            }
            (m.value, m.name.clone())
        } else {
            let spans = string_spans(buf);
            if spans.is_empty() {
                return self.insert_token(buf);
            }
            (*self.pick(&spans), None)
        };
        let contents = self.string_contents(key.as_deref());
        splice(buf, (span.0 + 1, span.1 - 1), &contents);
    }

    /// Replaces a member's value with another JSON value, a broken one, or another member's.
    pub(crate) fn replace_value(&mut self, buf: &mut Vec<u8>) {
        let ms = members(buf);
        if ms.is_empty() {
            return self.insert_token(buf);
        }
        let value = ms[self.rng.usize(..ms.len())].value;
        let new: Vec<u8> = match self.rng.u8(..8) {
            0 => {
                let other = ms[self.rng.usize(..ms.len())].value;
                buf[other.0..other.1].to_vec()
            }
            1 => format!("1{}", "0".repeat(self.rng.usize(300..420))).into_bytes(),
            _ => self.pick(&VALUES).as_bytes().to_vec(),
        };
        splice(buf, value, &new);
    }

    /// Changes the case of a string: `optOutType`'s value, a key, or any string; ASCII case or
    /// Unicode characters whose case mappings reach ASCII (ſ, ﬆ, K, ı, İ).
    pub(crate) fn change_case(&mut self, buf: &mut [u8]) {
        let ms = members(buf);
        let opt: Vec<&Member> = ms
            .iter()
            .filter(|m| m.name.as_deref() == Some("optOutType"))
            .collect();
        let span = match self.rng.u8(..3) {
            0 if !opt.is_empty() => self.pick(&opt).value,
            1 if !ms.is_empty() => self.pick(&ms).key,
            _ => {
                let spans = string_spans(buf);
                if spans.is_empty() {
                    return;
                }
                *self.pick(&spans)
            }
        };
        if buf.get(span.0) != Some(&b'"') {
            return;
        }
        let inner = &mut buf[span.0 + 1..span.1 - 1];
        match self.rng.u8(..4) {
            0 => inner.make_ascii_uppercase(),
            1 => inner.make_ascii_lowercase(),
            _ => {
                for b in inner.iter_mut() {
                    if b.is_ascii_alphabetic() && self.rng.bool() {
                        *b ^= 0x20;
                    }
                }
            }
        }
    }

    /// Rewrites a string with escapes (`\u` in either hex case, `\/`), keeping its value; or
    /// puts a Unicode look-alike of an ASCII letter in it.
    pub(crate) fn escape_string(&mut self, buf: &mut Vec<u8>) {
        let spans = string_spans(buf);
        if spans.is_empty() {
            return;
        }
        let span = *self.pick(&spans);
        let Ok(text) = serde_json::from_slice::<String>(&buf[span.0..span.1]) else {
            return;
        };
        let text = if self.rng.u8(..3) == 0 {
            // Characters whose Unicode case mappings are ASCII: ſ→S, ﬆ→ST, K→k, ı→I, İ→i̇.
            let (from, to) = *self.pick(&[
                ("st", "\u{fb06}"),
                ("ST", "\u{fb06}"),
                ("s", "\u{17f}"),
                ("S", "\u{17f}"),
                ("k", "\u{212a}"),
                ("i", "\u{131}"),
                ("I", "\u{130}"),
            ]);
            text.replacen(from, to, 1)
        } else {
            text
        };
        let one_in = *self.pick(&[0, 1, 2, 5]);
        let encoded = encode_string(&mut self.rng, &text, one_in);
        splice(buf, span, &encoded);
    }

    /// Swaps `data` between an object and a JSON string holding it.
    pub(crate) fn swap_data(&mut self, buf: &mut Vec<u8>) {
        let ms = members(buf);
        let data: Vec<&Member> = ms
            .iter()
            .filter(|m| m.name.as_deref() == Some("data"))
            .collect();
        if data.is_empty() {
            return self.transplant_member(buf);
        }
        let v = self.pick(&data).value;
        let new = match buf[v.0] {
            b'{' | b'[' => match std::str::from_utf8(&buf[v.0..v.1]) {
                Ok(text) => {
                    let one_in = if self.rng.u8(..4) == 0 { 7 } else { 0 };
                    encode_string(&mut self.rng, text, one_in)
                }
                Err(_) => return,
            },
            b'"' => match serde_json::from_slice::<String>(&buf[v.0..v.1]) {
                Ok(text) => text.into_bytes(),
                Err(_) => return,
            },
            _ => return,
        };
        splice(buf, v, &new);
    }

    /// Mutates the text held in a `data` string (1-3 mutations) and encodes it back.
    pub(crate) fn mutate_data_string(&mut self, buf: &mut Vec<u8>) {
        let ms = members(buf);
        let data: Vec<(usize, usize)> = ms
            .iter()
            .filter(|m| m.name.as_deref() == Some("data") && buf[m.value.0] == b'"')
            .map(|m| m.value)
            .collect();
        if data.is_empty() {
            return self.swap_data(buf);
        }
        let v = *self.pick(&data);
        let Ok(text) = serde_json::from_slice::<String>(&buf[v.0..v.1]) else {
            return;
        };
        let mut inner = text.into_bytes();
        for _ in 0..self.rng.usize(1..=3) {
            self.mutate(&mut inner, false);
        }
        let encoded = encode_string(&mut self.rng, &String::from_utf8_lossy(&inner), 0);
        splice(buf, v, &encoded);
    }

    /// Repeats a member right after itself (or before), so the key is duplicated.
    pub(crate) fn duplicate_member(&mut self, buf: &mut Vec<u8>) {
        let ms = members(buf);
        if ms.is_empty() {
            return;
        }
        let m = self.pick(&ms);
        let mut copy = buf[m.key.0..m.value.1].to_vec();
        if self.rng.bool() {
            copy.insert(0, b',');
            splice(buf, (m.value.1, m.value.1), &copy);
        } else {
            copy.push(b',');
            splice(buf, (m.key.0, m.key.0), &copy);
        }
    }

    /// Removes a member with the comma after it (or, for the last one, before it).
    pub(crate) fn delete_member(&mut self, buf: &mut Vec<u8>) {
        let ms = members(buf);
        if ms.is_empty() {
            return;
        }
        let m = self.pick(&ms);
        let (mut start, mut end) = (m.key.0, m.value.1);
        let after = skip_ws(buf, end);
        if buf.get(after) == Some(&b',') && self.rng.u8(..8) != 0 {
            end = skip_ws(buf, after + 1);
        } else if self.rng.u8(..8) != 0 {
            let before = buf[..start]
                .iter()
                .rposition(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'));
            if let Some(p) = before.filter(|&p| buf[p] == b',') {
                start = p;
            }
        }
        buf.drain(start..end);
    }

    /// Copies a member of another record into this one, next to one of its members.
    pub(crate) fn transplant_member(&mut self, buf: &mut Vec<u8>) {
        let other = self.corpus[self.rng.usize(..self.corpus.len())].clone();
        let theirs = members(&other);
        let ours = members(buf);
        if theirs.is_empty() || ours.is_empty() {
            return;
        }
        let t = self.pick(&theirs);
        let o = self.pick(&ours);
        let mut copy = b",".to_vec();
        copy.extend_from_slice(&other[t.key.0..t.value.1]);
        splice(buf, (o.value.1, o.value.1), &copy);
    }

    /// Wraps a member's value in arrays or objects nested around serde_json's depth limit, or
    /// inserts unbalanced brackets.
    pub(crate) fn deep_nesting(&mut self, buf: &mut Vec<u8>) {
        let depth = if self.rng.u8(..4) == 0 {
            self.rng.usize(1..300)
        } else {
            *self.pick(&DEPTHS)
        };
        let ms = members(buf);
        match self.rng.u8(..4) {
            0 | 1 if !ms.is_empty() => {
                let v = self.pick(&ms).value;
                let mut new = b"[".repeat(depth);
                new.extend_from_slice(&buf[v.0..v.1]);
                new.extend_from_slice(&b"]".repeat(depth));
                splice(buf, v, &new);
            }
            2 if !ms.is_empty() => {
                let v = self.pick(&ms).value;
                let mut new = b"{\"k\":".repeat(depth);
                new.extend_from_slice(&buf[v.0..v.1]);
                new.extend_from_slice(&b"}".repeat(depth));
                splice(buf, v, &new);
            }
            _ => {
                let at = self.position(buf);
                let open = if self.rng.bool() { b"[" } else { b"{" };
                splice(buf, (at, at), &open.repeat(depth));
            }
        }
    }

    /// Puts bytes that are not UTF-8 into a string (mostly) or anywhere.
    pub(crate) fn invalid_utf8(&mut self, buf: &mut Vec<u8>) {
        let bad = *self.pick(&INVALID_UTF8);
        let spans = string_spans(buf);
        let at = if !spans.is_empty() && self.rng.u8(..4) != 0 {
            let (s, e) = *self.pick(&spans);
            self.rng.usize(s + 1..e)
        } else {
            self.rng.usize(..=buf.len())
        };
        splice(buf, (at, at), bad);
    }

    pub(crate) fn whitespace(&mut self, buf: &mut Vec<u8>) {
        let ws = *self.pick(&WHITESPACE);
        let at = if self.rng.u8(..8) == 0 {
            0
        } else {
            self.position(buf)
        };
        let n = self.rng.usize(1..=3);
        splice(buf, (at, at), ws.repeat(n).as_bytes());
    }
}
