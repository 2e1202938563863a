//! A long-running, seeded, structure-aware fuzz test of the record decoder ([`classify`]).
//!
//! cargo-fuzz needs a nightly toolchain, so this is a plain test: it mutates a corpus (every
//! fixture in tests/fixtures plus a few hundred synthetic records) with byte-level and
//! JSON-aware mutations, and holds every input to these oracles, in both decoding modes:
//! - `classify` never panics (each input runs under `catch_unwind`; the first panicking input
//!   is reported in hex and base64, minimised, and fails the test);
//! - the outcome agrees with the slow `serde_json::Value` reference of tests/decode/reference.rs
//!   (dead letters by category, everything else field by field);
//! - opt events have a non-empty `event_id`, `account_sid`, `sender`, `subscriber` and scope,
//!   test events a non-empty `test_id` and `account_sid`, dead letters a known category;
//! - `infer_keywords` only turns "not an opt keyword" skips or phrase revocations into inferred
//!   keyword events (or their dead letters) and changes nothing else.
//!
//! Both modes run with revocation phrase detection on (the default). The reference matches the
//! rules without their prefilter, so any body the prefilter wrongly drops is a disagreement.
//!
//! `fuzz_smoke` runs 20,000 inputs from a fixed seed on every `cargo test`. The long run is
//! `scripts/fuzz.sh` (30 minutes by default, `FUZZ_SECONDS` to change it), or by hand:
//!
//! ```text
//! FUZZ_ITERATIONS=10000000 FUZZ_SEED=<seed> \
//!     cargo test --release --test fuzz_decoder -- --ignored --nocapture
//! ```
//!
//! `FUZZ_ITERATIONS` defaults to 10,000,000, `FUZZ_SECONDS` to no time limit, and `FUZZ_SEED`
//! (decimal or `0x` hex) to a random seed, printed at the start and the end: the same seed and
//! corpus give the same inputs.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use base64::Engine as _;
use optout::event::{
    DecodeOptions, Detection, INBOUND_MESSAGE_TYPE, Outcome, Revocations, Skip, TEST_EVENT_TYPE,
    classify,
};
use optout::synth::{MixOptions, Synth};

/// The slow reference classifier of tests/decode/reference.rs.
///
/// The module is declared inside this function on purpose: the agreement tests that file also
/// holds are then unnameable here, so they run once (in tests/decode.rs), not again in this binary.
fn reference(bytes: &[u8], opts: DecodeOptions) -> Outcome {
    #[allow(dead_code, unnameable_test_items)]
    #[path = "decode/reference.rs"]
    mod reference;
    reference::reference(bytes, opts)
}

const MODES: [DecodeOptions; 2] = [
    DecodeOptions {
        infer_keywords: false,
        revocations: Revocations::Builtin,
    },
    DecodeOptions {
        infer_keywords: true,
        revocations: Revocations::Builtin,
    },
];

/// The dead-letter categories documented on [`Outcome::Dead`].
const DEAD_CATEGORIES: [&str; 8] = [
    "not JSON",
    "not a CloudEvent",
    "no usable data",
    "missing field",
    "bad timestamp",
    "unknown optOutType",
    "no test_id",
    "unstorable field",
];

/// Outcome categories, as counted: six kinds of success, then one per dead-letter category.
const CATEGORY_NAMES: [&str; 14] = [
    "opt",
    "opt (inferred)",
    "opt (phrase)",
    "test",
    "skip: other type",
    "skip: not opt keyword",
    "dead: not JSON",
    "dead: not a CloudEvent",
    "dead: no usable data",
    "dead: missing field",
    "dead: bad timestamp",
    "dead: unknown optOutType",
    "dead: no test_id",
    "dead: unstorable field",
];
const NOT_JSON: usize = 6;

/// The counting category of an outcome; `None` for a dead letter of no known category.
fn category(o: &Outcome) -> Option<usize> {
    match o {
        Outcome::Opt(e) => Some(match e.detection {
            Detection::Twilio => 0,
            Detection::Keyword => 1,
            Detection::Phrase => 2,
        }),
        Outcome::Test(_) => Some(3),
        Outcome::Skip(Skip::OtherType) => Some(4),
        Outcome::Skip(Skip::NotOptKeyword) => Some(5),
        Outcome::Dead(reason) => DEAD_CATEGORIES
            .iter()
            .position(|c| {
                reason
                    .strip_prefix(c)
                    .is_some_and(|rest| rest.starts_with(": "))
            })
            .map(|i| i + NOT_JSON),
    }
}

/// Why an input failed an oracle. `key` identifies the failure for minimisation (the input is
/// shrunk while it fails with the same key); `detail` is what to show.
#[derive(Debug, Clone)]
struct Failure {
    key: String,
    detail: String,
}

impl Failure {
    fn new(key: String, detail: String) -> Self {
        Failure { key, detail }
    }
}

/// What [`check`] learnt of an input that passed.
struct Checked {
    /// The category of the fast outcome, in each mode.
    categories: [usize; 2],
    /// The time the fast decoder took, both modes together.
    fast: Duration,
}

/// Runs every oracle on one input.
fn check(input: &[u8]) -> Result<Checked, Failure> {
    let mut outcomes = Vec::with_capacity(2);
    let mut categories = [0; 2];
    let mut fast_time = Duration::ZERO;
    for (m, opts) in MODES.into_iter().enumerate() {
        let mode = format!("infer_keywords={}", opts.infer_keywords);
        PANIC_SITE.with(|s| s.set("classify"));
        let t = Instant::now();
        let fast = classify(input, opts);
        fast_time += t.elapsed();
        PANIC_SITE.with(|s| s.set("reference"));
        let slow = reference(input, opts);
        PANIC_SITE.with(|s| s.set("oracle"));
        let Some(cat) = category(&fast) else {
            return Err(Failure::new(
                format!("unknown dead-letter category ({mode})"),
                format!("{mode}: fast {fast:?}"),
            ));
        };
        let agree = match (&fast, &slow) {
            (Outcome::Dead(_), Outcome::Dead(_)) => category(&slow) == Some(cat),
            _ => fast == slow,
        };
        if !agree {
            let slow_cat = category(&slow).map_or("?", |c| CATEGORY_NAMES[c]);
            return Err(Failure::new(
                format!(
                    "disagreement ({mode}): fast {}, reference {slow_cat}",
                    CATEGORY_NAMES[cat]
                ),
                format!("{mode}:\n  fast:      {fast:?}\n  reference: {slow:?}"),
            ));
        }
        invariants(&fast).map_err(|what| {
            Failure::new(
                format!("invariant ({mode}): {what}"),
                format!("{mode}: {what}: {fast:?}"),
            )
        })?;
        categories[m] = cat;
        outcomes.push(fast);
    }
    modes_consistent(&outcomes[0], &outcomes[1]).map_err(|what| {
        Failure::new(
            format!("modes: {what}"),
            format!(
                "{what}:\n  infer off: {:?}\n  infer on:  {:?}",
                outcomes[0], outcomes[1]
            ),
        )
    })?;
    Ok(Checked {
        categories,
        fast: fast_time,
    })
}

/// What must hold of any single outcome.
fn invariants(o: &Outcome) -> Result<(), &'static str> {
    match o {
        Outcome::Opt(e) => {
            if e.event_id.is_empty() {
                return Err("opt event with an empty event_id");
            }
            if e.account_sid.is_empty() {
                return Err("opt event with an empty account_sid");
            }
            if e.sender.is_empty() {
                return Err("opt event with an empty sender");
            }
            if e.subscriber.is_empty() {
                return Err("opt event with an empty subscriber");
            }
            if e.scope().is_empty() {
                return Err("opt event with an empty scope");
            }
            if e.inferred != (e.detection != Detection::Twilio) {
                return Err("opt event whose `inferred` disagrees with its detection");
            }
            if (e.detection == Detection::Phrase) != e.rule.is_some() {
                return Err("a rule without a phrase detection, or the reverse");
            }
            if e.detection == Detection::Phrase && e.opt_out_type != optout::event::OptOutType::Stop
            {
                return Err("a phrase detection that is not a STOP");
            }
        }
        Outcome::Test(t) => {
            if t.test_id.is_empty() {
                return Err("test event with an empty test_id");
            }
            if t.account_sid.is_empty() {
                return Err("test event with an empty account_sid");
            }
        }
        Outcome::Skip(_) | Outcome::Dead(_) => {}
    }
    Ok(())
}

/// `infer_keywords` may only turn a "not an opt keyword" skip or a phrase revocation into an
/// inferred keyword event, or a skip into the dead letter such an event can be; every other
/// outcome is the same in both modes.
fn modes_consistent(off: &Outcome, on: &Outcome) -> Result<(), &'static str> {
    if matches!(off, Outcome::Opt(e) if e.detection == Detection::Keyword) {
        return Err("inferred keyword event without infer_keywords");
    }
    let ok = match (off, on) {
        (Outcome::Skip(Skip::NotOptKeyword), Outcome::Opt(e)) => e.detection == Detection::Keyword,
        (Outcome::Opt(p), Outcome::Opt(k))
            if p.detection == Detection::Phrase && k.detection == Detection::Keyword =>
        {
            p.event_id == k.event_id && p.body == k.body && p.occurred_at == k.occurred_at
        }
        (Outcome::Skip(Skip::NotOptKeyword), Outcome::Dead(reason)) => {
            reason.starts_with("missing field: ")
                || reason.starts_with("bad timestamp: ")
                || reason.starts_with("unstorable field: ")
        }
        _ => off == on,
    };
    if ok {
        Ok(())
    } else {
        Err("infer_keywords changed more than an inferred keyword")
    }
}

thread_local! {
    /// Set while an input is checked: the panic hook then records the panic instead of printing.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// Which step was running (classify, reference, oracle) when a captured panic happened.
    static PANIC_SITE: Cell<&'static str> = const { Cell::new("") };
    /// The captured panic: message, location and backtrace.
    static PANIC_REPORT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that captures panics of checked inputs and leaves all others to
/// the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let site = PANIC_SITE.with(Cell::get);
                let backtrace = std::backtrace::Backtrace::force_capture();
                let report = format!("panic in {site}: {info}\nbacktrace:\n{backtrace}");
                PANIC_REPORT.with(|r| *r.borrow_mut() = Some(report));
            } else {
                previous(info);
            }
        }));
    });
}

/// [`check`] under `catch_unwind`: a panic becomes a [`Failure`].
fn guarded_check(input: &[u8]) -> Result<Checked, Failure> {
    CAPTURING.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| check(input)));
    CAPTURING.with(|c| c.set(false));
    match result {
        Ok(r) => r,
        Err(_) => {
            let site = PANIC_SITE.with(Cell::get);
            let report = PANIC_REPORT
                .with(|r| r.borrow_mut().take())
                .unwrap_or_else(|| "panic (no report captured)".to_owned());
            Err(Failure::new(format!("panic in {site}"), report))
        }
    }
}

/// Shrinks `input` while it still fails with `key`: removes whole members, then byte ranges of
/// halving size (at every offset once they are short), until nothing more can go or a budget
/// of checks is spent.
fn minimise(input: &[u8], key: &str) -> Vec<u8> {
    let budget = Cell::new(200_000u32);
    let fails = |c: &[u8]| {
        budget.set(budget.get().saturating_sub(1));
        budget.get() > 0 && guarded_check(c).err().is_some_and(|f| f.key == key)
    };
    let without = |b: &[u8], (start, end): (usize, usize)| {
        let mut out = b[..start].to_vec();
        out.extend_from_slice(&b[end..]);
        out
    };
    let mut cur = input.to_vec();
    loop {
        let before = cur.len();
        let mut i = 0;
        while let Some(m) = members(&cur).get(i) {
            let after = skip_ws(&cur, m.value.1);
            let comma_before = cur[..m.key.0]
                .iter()
                .rposition(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
                .filter(|&p| cur[p] == b',');
            let mut ranges = Vec::new();
            if cur.get(after) == Some(&b',') {
                ranges.push((m.key.0, after + 1));
            }
            if let Some(p) = comma_before {
                ranges.push((p, m.value.1));
            }
            ranges.push((m.key.0, m.value.1));
            match ranges
                .into_iter()
                .map(|r| without(&cur, r))
                .find(|c| fails(c))
            {
                Some(smaller) => cur = smaller,
                None => i += 1,
            }
        }
        let mut chunk = cur.len().div_ceil(2);
        while chunk > 0 {
            let step = if chunk <= 8 { 1 } else { chunk };
            let mut i = 0;
            while i + chunk <= cur.len() {
                let candidate = without(&cur, (i, i + chunk));
                if fails(&candidate) {
                    cur = candidate;
                } else {
                    i += step;
                }
            }
            chunk /= 2;
        }
        if cur.len() == before || budget.get() == 0 {
            return cur;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn describe_input(label: &str, bytes: &[u8]) -> String {
    format!(
        "{label} ({} bytes):\n  hex:    {}\n  base64: {}\n  text:   {}\n",
        bytes.len(),
        hex(bytes),
        base64::engine::general_purpose::STANDARD.encode(bytes),
        String::from_utf8_lossy(bytes).escape_debug(),
    )
}

// ---------------------------------------------------------------------------------------------
// The corpus and the mutator.

/// Every fixture (sorted by name, so a seed replays) and synthetic records of several seeds.
fn corpus() -> (Vec<Vec<u8>>, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("fixture dir entry").path())
        .collect();
    paths.sort();
    let mut records: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    let fixtures = records.len();
    for seed in 1..=5 {
        let mut synth = Synth::new(MixOptions {
            seed,
            opt_ratio: 0.3,
            subscribers: 50,
        });
        records.push(synth.test_event());
        records.extend((0..60).map(|_| synth.next_record().1));
    }
    (records, fixtures)
}

/// Inputs kept for further mutation: at most this many, each at most this long.
const POOL_CAP: usize = 512;
const POOL_MAX_INPUT: usize = 16 << 10;

/// Tokens with a meaning in JSON, inserted anywhere.
const TOKENS: [&str; 22] = [
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
const VALUES: [&str; 48] = [
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
const INTERESTING_BYTES: &[u8] =
    b"\x00\x01\x08\x09\x0a\x0b\x0d\x1f\x20\x22\x2c\x2d\x2e\x30\x31\x39\x3a\x45\x5b\x5c\x5d\x65\x66\x6e\x74\x75\x7b\x7d\x7f\x80\xa0\xbf\xc0\xc2\xc3\xed\xef\xf4\xf8\xff";

/// Byte sequences that are not UTF-8.
const INVALID_UTF8: [&[u8]; 11] = [
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
const WHITESPACE: [&str; 9] = [
    " ", "\t", "\n", "\r", "\x0b", "\x0c", "\u{a0}", "\u{feff}", "\u{2028}",
];

/// String contents (already JSON-escaped where needed) for any string.
const ANY_STRINGS: [&str; 30] = [
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
const OPT_WORDS: [&str; 58] = [
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

const TIMESTAMPS: [&str; 22] = [
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

const SCHEMAS: [&str; 18] = [
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

const SPECVERSIONS: [&str; 7] = ["1.0", "0.3", "1.0 ", "1", "1.00", "", "\\u0031.0"];

const TYPES: [&str; 8] = [
    INBOUND_MESSAGE_TYPE,
    TEST_EVENT_TYPE,
    "com.twilio.messaging.message.delivered",
    "COM.TWILIO.MESSAGING.INBOUND-MESSAGE.RECEIVED",
    "com.twilio.messaging.inbound-message.receive\\u0064",
    "com.twilio.eventstreams.test-event ",
    "",
    " ",
];

const IDS: [&str; 7] = [
    "AC0f3c2b1a0f3c2b1a0f3c2b1a0f3c2b1a",
    "+15551230001",
    "whatsapp:+15551230001",
    "MG2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c",
    "",
    " ",
    "\\u0000",
];

/// Nesting depths around serde_json's limit (127 containers), and beyond.
const DEPTHS: [usize; 10] = [1, 2, 60, 124, 125, 126, 127, 128, 129, 200];

/// The end (exclusive) of the string literal whose opening quote is at `s`.
fn string_end(b: &[u8], s: usize) -> Option<usize> {
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
fn string_spans(b: &[u8]) -> Vec<(usize, usize)> {
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

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the value starting at `v`, by bracket counting.
fn value_end(b: &[u8], v: usize) -> Option<usize> {
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
struct Member {
    key: (usize, usize),
    name: Option<String>,
    value: (usize, usize),
}

fn members(b: &[u8]) -> Vec<Member> {
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
fn encode_string(rng: &mut fastrand::Rng, s: &str, one_in: u32) -> Vec<u8> {
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

fn splice(buf: &mut Vec<u8>, range: (usize, usize), with: &[u8]) {
    buf.splice(range.0..range.1, with.iter().copied());
}

/// Positions between tokens: after `{ [ , :` and before `} ]`.
fn boundaries(b: &[u8]) -> Vec<usize> {
    b.iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            b'{' | b'[' | b',' | b':' => Some(i + 1),
            b'}' | b']' => Some(i),
            _ => None,
        })
        .collect()
}

struct Fuzzer {
    rng: fastrand::Rng,
    corpus: Vec<Vec<u8>>,
    /// Recent mutants that are still JSON, mutated further (so mutations stack up).
    pool: Vec<Vec<u8>>,
    /// Mutated inputs are cut to this length (long-string mutations can grow them).
    max_input: usize,
}

impl Fuzzer {
    fn new(seed: u64, corpus: Vec<Vec<u8>>, max_input: usize) -> Self {
        Fuzzer {
            rng: fastrand::Rng::with_seed(seed),
            corpus,
            pool: Vec::new(),
            max_input,
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.usize(..items.len())]
    }

    /// The next input: a corpus record or a kept mutant, mutated one to eight times.
    fn next_input(&mut self) -> Vec<u8> {
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
    fn offer(&mut self, input: Vec<u8>, category: usize) {
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
    fn mutate(&mut self, buf: &mut Vec<u8>, nested: bool) {
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

    fn flip_bit(&mut self, buf: &mut [u8]) {
        if !buf.is_empty() {
            let i = self.rng.usize(..buf.len());
            buf[i] ^= 1 << self.rng.u8(..8);
        }
    }

    fn set_byte(&mut self, buf: &mut [u8]) {
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
    fn span_len(&mut self, len: usize) -> usize {
        if self.rng.u8(..4) == 0 {
            self.rng.usize(1..=(len / 2).max(1))
        } else {
            self.rng.usize(1..=16)
        }
    }

    fn delete_range(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        let start = self.rng.usize(..buf.len());
        let end = (start + self.span_len(buf.len())).min(buf.len());
        buf.drain(start..end);
    }

    fn insert_random(&mut self, buf: &mut Vec<u8>) {
        let at = self.rng.usize(..=buf.len());
        let n = self.rng.usize(1..=8);
        let bytes: Vec<u8> = (0..n).map(|_| self.rng.u8(..)).collect();
        splice(buf, (at, at), &bytes);
    }

    fn duplicate_range(&mut self, buf: &mut Vec<u8>) {
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
    fn splice_records(&mut self, buf: &mut Vec<u8>) {
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

    fn position(&mut self, buf: &[u8]) -> usize {
        if self.rng.bool() {
            let b = boundaries(buf);
            if !b.is_empty() {
                return *self.pick(&b);
            }
        }
        self.rng.usize(..=buf.len())
    }

    fn insert_token(&mut self, buf: &mut Vec<u8>) {
        let token = *self.pick(&TOKENS);
        let at = self.position(buf);
        splice(buf, (at, at), token.as_bytes());
    }

    /// A string's new contents (JSON text between the quotes), fitting the member's key.
    fn string_contents(&mut self, key: Option<&str>) -> Vec<u8> {
        if self.rng.bool() {
            let fitting: Option<&[&str]> = match key {
                Some("optOutType" | "body") => Some(&OPT_WORDS),
                Some("timestamp" | "time") => Some(&TIMESTAMPS),
                Some("dataschema") => Some(&SCHEMAS),
                Some("specversion") => Some(&SPECVERSIONS),
                Some("type") => Some(&TYPES),
                Some(
                    "id"
                    | "source"
                    | "accountSid"
                    | "from"
                    | "to"
                    | "messagingServiceSid"
                    | "messageSid"
                    | "test_id",
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
    fn replace_string(&mut self, buf: &mut Vec<u8>) {
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
    fn replace_value(&mut self, buf: &mut Vec<u8>) {
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
    fn change_case(&mut self, buf: &mut [u8]) {
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
    fn escape_string(&mut self, buf: &mut Vec<u8>) {
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
    fn swap_data(&mut self, buf: &mut Vec<u8>) {
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
    fn mutate_data_string(&mut self, buf: &mut Vec<u8>) {
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
    fn duplicate_member(&mut self, buf: &mut Vec<u8>) {
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
    fn delete_member(&mut self, buf: &mut Vec<u8>) {
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
    fn transplant_member(&mut self, buf: &mut Vec<u8>) {
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
    fn deep_nesting(&mut self, buf: &mut Vec<u8>) {
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
    fn invalid_utf8(&mut self, buf: &mut Vec<u8>) {
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

    fn whitespace(&mut self, buf: &mut Vec<u8>) {
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

// ---------------------------------------------------------------------------------------------
// The run.

/// What a run saw.
struct Report {
    iterations: u64,
    seed: u64,
    elapsed: Duration,
    /// Per mode (infer off, on), per category.
    counts: [[u64; CATEGORY_NAMES.len()]; 2],
    corpus: (usize, usize),
    slowest: (Duration, usize),
}

impl Report {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        println!("fuzz_decoder summary");
        println!(
            "  iterations:   {} inputs (each classified in both modes)",
            self.iterations
        );
        println!("  seed:         {0} (FUZZ_SEED={0})", self.seed);
        println!("  elapsed:      {secs:.1} s");
        println!(
            "  rate:         {:.0} inputs/s",
            self.iterations as f64 / secs.max(1e-9)
        );
        println!(
            "  corpus:       {} fixtures + {} synthetic records",
            self.corpus.0, self.corpus.1
        );
        println!(
            "  slowest:      {:?} for one input of {} bytes (both modes, fast decoder only)",
            self.slowest.0, self.slowest.1
        );
        println!("  {:<26} {:>12} {:>12}", "outcome", "infer off", "infer on");
        for (i, name) in CATEGORY_NAMES.iter().enumerate() {
            println!(
                "  {name:<26} {:>12} {:>12}",
                self.counts[0][i], self.counts[1][i]
            );
        }
    }

    /// Categories no input reached in either mode.
    fn unreached(&self) -> Vec<&'static str> {
        CATEGORY_NAMES
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.counts[0][i] + self.counts[1][i] == 0)
            .map(|(_, name)| *name)
            .collect()
    }
}

/// Fuzzes `iterations` inputs from `seed`, none longer than `max_input`, stopping early once
/// `budget` has passed; panics with a full report on the first failure.
fn run(
    iterations: u64,
    budget: Option<Duration>,
    seed: u64,
    max_input: usize,
    progress: bool,
) -> Report {
    install_panic_hook();
    let (corpus, fixtures) = corpus();
    let sizes = (fixtures, corpus.len() - fixtures);
    // Every corpus record must pass the oracles before it is mutated.
    for (i, record) in corpus.iter().enumerate() {
        if let Err(f) = guarded_check(record) {
            panic!(
                "corpus record {i} fails: {}\n{}",
                f.detail,
                describe_input("record", record)
            );
        }
    }
    let mut fuzzer = Fuzzer::new(seed, corpus, max_input);
    let mut counts = [[0u64; CATEGORY_NAMES.len()]; 2];
    let mut slowest = (Duration::ZERO, 0);
    let start = Instant::now();
    let mut last_progress = start;
    let mut done = iterations;
    for i in 0..iterations {
        if i % 1024 == 0 && budget.is_some_and(|b| start.elapsed() >= b) {
            done = i;
            break;
        }
        let input = fuzzer.next_input();
        match guarded_check(&input) {
            Ok(Checked { categories, fast }) => {
                counts[0][categories[0]] += 1;
                counts[1][categories[1]] += 1;
                if fast > slowest.0 {
                    slowest = (fast, input.len());
                }
                fuzzer.offer(input, categories[1]);
            }
            Err(failure) => fail(seed, i, &input, &failure),
        }
        if progress && i % 65_536 == 0 && last_progress.elapsed() >= Duration::from_secs(30) {
            last_progress = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "fuzz_decoder: {i} inputs, {secs:.0} s, {:.0} inputs/s",
                i as f64 / secs
            );
        }
    }
    Report {
        iterations: done,
        seed,
        elapsed: start.elapsed(),
        counts,
        corpus: sizes,
        slowest,
    }
}

fn fail(seed: u64, iteration: u64, input: &[u8], failure: &Failure) -> ! {
    let minimal = minimise(input, &failure.key);
    let minimal_detail = guarded_check(&minimal)
        .err()
        .map_or_else(String::new, |f| f.detail);
    panic!(
        "fuzz_decoder found a bug: {}\nseed {seed} (FUZZ_SEED={seed}), input #{iteration}\n{}\n{}\
         {}\nminimal input: {}",
        failure.key,
        failure.detail,
        describe_input("input", input),
        describe_input("minimal input", &minimal),
        minimal_detail,
    );
}

fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    let s = raw.trim().replace('_', "");
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={raw:?}: {e}")))
}

/// The long run: `scripts/fuzz.sh` (or `cargo test --release --test fuzz_decoder -- --ignored
/// --nocapture`). `FUZZ_SECONDS` bounds it by time as well as by `FUZZ_ITERATIONS`.
#[test]
#[ignore = "long-running; run in release with --ignored --nocapture"]
fn fuzz_decoder() {
    let iterations = env_u64("FUZZ_ITERATIONS").unwrap_or(10_000_000);
    let budget = env_u64("FUZZ_SECONDS").map(Duration::from_secs);
    let seed = env_u64("FUZZ_SEED").unwrap_or_else(|| fastrand::u64(..));
    println!(
        "fuzz_decoder: up to {iterations} inputs{} from seed {seed} (FUZZ_SEED={seed})",
        budget.map_or(String::new(), |b| format!(" or {} s", b.as_secs()))
    );
    let report = run(iterations, budget, seed, 256 << 10, true);
    report.print();
    println!("  result:       0 panics, 0 disagreements, 0 invariant violations");
    let unreached = report.unreached();
    assert!(
        report.iterations < 100_000 || unreached.is_empty(),
        "the mutations never reached {unreached:?}"
    );
}

/// A short run from a fixed seed on every `cargo test`, so the harness itself stays working.
#[test]
fn fuzz_smoke() {
    // Smaller inputs than the long run, to stay fast in debug builds.
    let report = run(20_000, None, 20_260_301, 32 << 10, false);
    report.print();
    let unreached = report.unreached();
    assert!(
        unreached.is_empty(),
        "the mutations never reached {unreached:?}"
    );
}
