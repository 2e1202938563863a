//! The prefilter: a single pass over a body's characters that proves most messages cannot
//! match any rule, before anything is allocated.
//!
//! It is derived from the active rules, so custom rules get their own. For every pattern, each
//! required (non-optional) word must appear in a matching body, so the body must hold a raw
//! token that normalises to one of its alternatives: the alternative itself, or a misspelling
//! that maps to it ("txt" for "text"), or "do" for "dont" ("do not"). The scan mirrors the
//! first normalisation steps exactly (lower case, full-width to ASCII, apostrophes dropped,
//! tokens of letters and digits, repeated characters squeezed) and compares each token with
//! those raw forms: the whole token when the form is shorter than four characters, its first
//! four otherwise. A body is a candidate when some pattern has every required word seen, or
//! when it is made only of single letters ("S T O P" is joined into one word). Anything the
//! prefilter lets through is then matched exactly; it never rejects a body the rules match
//! (a property test and the decoder fuzzer hold it to that).

use super::Rule;
use super::normalize::{fold, is_apostrophe, spelled};

/// How many required words the prefilter tracks; words beyond are not checked (still sound).
const MAX_SLOTS: u32 = 128;

/// Words of the bloom filter (2 KiB: stays in L1 next to the record being decoded).
const BLOOM_WORDS: usize = 256;

#[derive(Debug, Clone)]
pub(super) struct Prefilter {
    /// A 16384-bit filter over the ASCII keys, so most tokens cost one bit test.
    bloom: Box<[u64; BLOOM_WORDS]>,
    /// ASCII keys (see [`ascii_key`]), sorted, with the required words they satisfy.
    ascii: Vec<(u32, u128)>,
    /// Keys with non-ASCII characters: (first up to four characters, is a prefix, words).
    other: Vec<(String, bool, u128)>,
    /// Per pattern, the required words it needs.
    patterns: Vec<u128>,
    /// Every raw form, for tests.
    triggers: Vec<String>,
}

/// The raw squeezed tokens that normalise to (or into a sequence holding) the canonical `t`.
fn sources(t: &str, spellings: &[(String, Vec<String>)]) -> Vec<String> {
    let mut out = vec![t.to_owned()];
    out.extend(
        spellings
            .iter()
            .filter(|(_, v)| v.iter().any(|w| w == t))
            .map(|(k, _)| k.clone()),
    );
    if t == "dont" {
        out.push("do".to_owned());
    }
    out
}

/// A token of at most four ASCII characters as a `u32`: a four-character prefix is its bytes;
/// a shorter whole token also carries its length in the top byte (so the two never collide).
fn ascii_key(chars: &[char], prefix: bool) -> Option<u32> {
    let mut key = 0u32;
    for (i, c) in chars.iter().enumerate() {
        if !c.is_ascii() {
            return None;
        }
        key |= (*c as u32) << (8 * i);
    }
    if !prefix {
        key |= (0x80 | chars.len() as u32) << 24;
    }
    Some(key)
}

#[inline]
fn bloom_bit(key: u32) -> (usize, u64) {
    let h = (key.wrapping_mul(0x9E37_79B1) >> 18) as usize;
    (h / 64, 1u64 << (h % 64))
}

impl Prefilter {
    pub(super) fn new(rules: &[Rule]) -> Self {
        let spellings = spelled();
        let mut p = Prefilter {
            bloom: Box::new([0; BLOOM_WORDS]),
            ascii: Vec::new(),
            other: Vec::new(),
            patterns: Vec::new(),
            triggers: Vec::new(),
        };
        let mut next = 0u32;
        for rule in rules {
            for slots in &rule.patterns {
                let mut mask = 0u128;
                for slot in slots.iter().filter(|s| !s.optional) {
                    if next >= MAX_SLOTS {
                        break;
                    }
                    let bit = 1u128 << next;
                    next += 1;
                    mask |= bit;
                    for alt in &slot.alts {
                        let Some(first) = alt.first() else { continue };
                        for s in sources(first, spellings) {
                            p.add(&s, bit);
                        }
                    }
                }
                p.patterns.push(mask);
            }
        }
        p.ascii.sort_unstable_by_key(|&(k, _)| k);
        p.ascii.dedup_by(|a, b| {
            let same = a.0 == b.0;
            if same {
                b.1 |= a.1;
            }
            same
        });
        p.triggers.sort_unstable();
        p.triggers.dedup();
        p
    }

    fn add(&mut self, source: &str, bit: u128) {
        self.triggers.push(source.to_owned());
        let chars: Vec<char> = source.chars().take(4).collect();
        let prefix = source.chars().nth(3).is_some();
        match ascii_key(&chars, prefix) {
            Some(key) => {
                let (w, b) = bloom_bit(key);
                self.bloom[w] |= b;
                self.ascii.push((key, bit));
            }
            None => self.other.push((chars.into_iter().collect(), prefix, bit)),
        }
    }

    pub(super) fn trigger_words(&self) -> Vec<String> {
        self.triggers.clone()
    }

    /// Whether `body` may match a rule (never false when it does).
    #[inline]
    pub(super) fn is_candidate(&self, body: &str) -> bool {
        let mut scan = Scan {
            filter: self,
            seen: 0,
            buf: ['\0'; 4],
            key: 0,
            len: 0,
            last: None,
            ascii: true,
            tokens: 0,
            all_single: true,
        };
        let bytes = body.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b < 0x80 {
                i += 1;
                let c = b.to_ascii_lowercase();
                if c.is_ascii_alphanumeric() {
                    scan.push(char::from(c));
                } else if c != b'\'' && c != b'`' {
                    scan.end();
                }
            } else {
                let Some(c) = body.get(i..).and_then(|s| s.chars().next()) else {
                    break;
                };
                i += c.len_utf8();
                fold(c, |f| {
                    if is_apostrophe(f) {
                    } else if f.is_alphanumeric() {
                        scan.push(f);
                    } else {
                        scan.end();
                    }
                });
            }
        }
        scan.end();
        if scan.tokens >= 2 && scan.all_single {
            return true;
        }
        let seen = scan.seen;
        self.patterns.iter().any(|&needed| needed & !seen == 0)
    }
}

/// The state of one prefilter pass.
struct Scan<'f> {
    filter: &'f Prefilter,
    /// Required words seen so far.
    seen: u128,
    /// The current token's first (squeezed) characters.
    buf: [char; 4],
    /// The same, packed as in [`ascii_key`] while they are ASCII.
    key: u32,
    /// The current token's squeezed length.
    len: usize,
    last: Option<char>,
    ascii: bool,
    tokens: usize,
    all_single: bool,
}

impl Scan<'_> {
    #[inline]
    fn push(&mut self, c: char) {
        if self.last == Some(c) {
            return;
        }
        self.last = Some(c);
        if self.len < 4 {
            self.buf[self.len] = c;
            self.ascii &= c.is_ascii();
            self.key |= (c as u32 & 0xff) << (8 * self.len);
        }
        self.len += 1;
        if self.len == 4 {
            self.check(true);
        }
    }

    #[inline]
    fn end(&mut self) {
        self.last = None;
        if self.len == 0 {
            return;
        }
        self.tokens += 1;
        self.all_single &= self.len == 1;
        if self.len < 4 {
            self.check(false);
        }
        self.len = 0;
        self.key = 0;
        self.ascii = true;
    }

    fn check(&mut self, prefix: bool) {
        let f = self.filter;
        if self.ascii {
            let key = if prefix {
                self.key
            } else {
                self.key | (0x80 | self.len as u32) << 24
            };
            let (w, b) = bloom_bit(key);
            if f.bloom.get(w).is_some_and(|x| x & b != 0)
                && let Ok(i) = f.ascii.binary_search_by_key(&key, |&(k, _)| k)
            {
                self.seen |= f.ascii.get(i).map_or(0, |&(_, m)| m);
            }
        } else {
            let s: String = self.buf[..self.len.min(4)].iter().collect();
            for (k, p, m) in &f.other {
                if *p == prefix && *k == s {
                    self.seen |= m;
                }
            }
        }
    }
}
