//! The oracles every fuzz input is held to: no panic, agreement with the slow reference,
//! invariants of each outcome, consistency of the two decoding modes; and the minimiser that
//! shrinks a failing input.

use super::*;

/// The slow reference classifier of tests/decode/reference.rs (its agreement tests live in
/// tests/decode/decoder.rs, so declaring it here runs nothing twice).
#[allow(dead_code)]
pub(crate) use crate::reference::reference;

pub(crate) const MODES: [DecodeOptions; 2] = [
    DecodeOptions {
        infer_keywords: false,
        revocations: Revocations::Builtin,
    },
    DecodeOptions {
        infer_keywords: true,
        revocations: Revocations::Builtin,
    },
];

/// The dead-letter categories of a CloudEvent documented on [`Outcome::Dead`] (`not a form`
/// is the Messaging webhook's, which `classify` never reads).
pub(crate) const DEAD_CATEGORIES: [&str; 9] = [
    "not JSON",
    "not a CloudEvent",
    "no usable data",
    "missing field",
    "bad timestamp",
    "unknown optOutType",
    "unknown consent_operation",
    "no test_id",
    "unstorable field",
];

/// Outcome categories, as counted: seven kinds of success, then one per dead-letter category.
pub(crate) const CATEGORY_NAMES: [&str; 16] = [
    "opt",
    "opt (inferred)",
    "opt (phrase)",
    "opt (reassigned)",
    "test",
    "skip: other type",
    "skip: not opt keyword",
    "dead: not JSON",
    "dead: not a CloudEvent",
    "dead: no usable data",
    "dead: missing field",
    "dead: bad timestamp",
    "dead: unknown optOutType",
    "dead: unknown consent_operation",
    "dead: no test_id",
    "dead: unstorable field",
];
pub(crate) const NOT_JSON: usize = 7;

/// The counting category of an outcome; `None` for a dead letter of no known category.
pub(crate) fn category(o: &Outcome) -> Option<usize> {
    match o {
        Outcome::Opt(e) => Some(match e.detection {
            Detection::Twilio => 0,
            Detection::Keyword => 1,
            Detection::Phrase => 2,
            Detection::Reassigned => 3,
        }),
        Outcome::Test(_) => Some(4),
        Outcome::Skip(Skip::OtherType) => Some(5),
        Outcome::Skip(Skip::NotOptKeyword) => Some(6),
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
pub(crate) struct Failure {
    pub(crate) key: String,
    pub(crate) detail: String,
}

impl Failure {
    pub(crate) fn new(key: String, detail: String) -> Self {
        Failure { key, detail }
    }
}

/// What [`check`] learnt of an input that passed.
pub(crate) struct Checked {
    /// The category of the fast outcome, in each mode.
    pub(crate) categories: [usize; 2],
    /// The time the fast decoder took, both modes together.
    pub(crate) fast: Duration,
}

/// Runs every oracle on one input.
pub(crate) fn check(input: &[u8]) -> Result<Checked, Failure> {
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
pub(crate) fn invariants(o: &Outcome) -> Result<(), &'static str> {
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
            if e.inferred != matches!(e.detection, Detection::Keyword | Detection::Phrase) {
                return Err("opt event whose `inferred` disagrees with its detection");
            }
            if e.detection == Detection::Reassigned
                && (e.opt_out_type != optout::event::OptOutType::Stop || e.body.is_some())
            {
                return Err("a reassigned-number opt event that is not a STOP without a body");
            }
            if e.time_source != optout::event::TimeSource::Twilio {
                return Err("a CloudEvent whose time is not Twilio's");
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
pub(crate) fn modes_consistent(off: &Outcome, on: &Outcome) -> Result<(), &'static str> {
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
pub(crate) fn install_panic_hook() {
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
pub(crate) fn guarded_check(input: &[u8]) -> Result<Checked, Failure> {
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
pub(crate) fn minimise(input: &[u8], key: &str) -> Vec<u8> {
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(crate) fn describe_input(label: &str, bytes: &[u8]) -> String {
    format!(
        "{label} ({} bytes):\n  hex:    {}\n  base64: {}\n  text:   {}\n",
        bytes.len(),
        hex(bytes),
        base64::engine::general_purpose::STANDARD.encode(bytes),
        String::from_utf8_lossy(bytes).escape_debug(),
    )
}
