//! Revocation phrases: inbound messages Twilio did not flag that revoke consent anyway.
//!
//! Since 11 April 2025 a consumer may revoke consent to texts "by any reasonable means"
//! (47 CFR 64.1200(a)(10)). Twilio blocks only a body that is one default keyword; "Stop texting
//! me", "STOP!!", "opt out" or "remove me from this list" arrive as ordinary inbound messages.
//! [`RuleSet::detect`] finds them: pure, no I/O, and cheap on the hot path, because a prefilter
//! over the raw body (`prefilter.rs`, derived from the active rules) rejects almost every
//! ordinary message before anything is allocated; only candidates are normalised
//! (`normalize.rs`) and matched against the rules.
//!
//! # Rules
//! A rule has an id, a category, an anchor and patterns. Pattern syntax: words separated by
//! spaces; each word a set of alternatives separated by `|`; a trailing `?` makes it optional
//! (`stop|quit texting|messaging me|us`). Pattern words are normalised like bodies, so write
//! them in plain spelling ("all" matches "al" and "alll"; "txt" matches "text"); write "dont"
//! for "do not" and "don't". Anchors:
//! - `whole`: the whole message, give or take filler words ("please", "now", "thanks"…);
//! - `sentence`: one sentence of it (split at `. ! ? , ; :`, line breaks, emoji), same filler;
//! - `start`: the start of a sentence, after filler;
//! - `anywhere`: inside a sentence, skipped when one of the three words before it is a negator
//!   ("dont", "never", "why", "did"…) unless the rule says `negatable = false`.
//!
//! `unless_after` lists words that veto a match when they come within four words after it
//! ("remove me from the *waitlist*"). Rules are tried in order; the first match wins.
//!
//! The built-in set is versioned ([`BUILTIN_VERSION`]); a rule is recorded as
//! `version:id` so a stored detection names exactly what matched.

mod builtin;
mod normalize;
mod prefilter;

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::Deserialize;

pub use builtin::VERSION as BUILTIN_VERSION;

/// Where in a message a rule's pattern must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anchor {
    /// The whole message, give or take filler words.
    Whole,
    /// One sentence of the message, give or take filler words.
    Sentence,
    /// The start of a sentence (after filler words).
    Start,
    /// Anywhere inside a sentence, unless negated just before.
    Anywhere,
}

/// A rule as written (built in, or in a `--revocation-rules` file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Short name, unique in its set (`stop-texting`).
    pub id: String,
    /// What kind of revocation it is (`fcc-word`, `stop-request`, `list-removal`,
    /// `consent-revocation`, or anything for custom rules).
    #[serde(default = "custom")]
    pub category: String,
    /// Where the patterns must match (default `sentence`).
    #[serde(default = "sentence")]
    pub anchor: Anchor,
    /// The patterns; any one matching is a match.
    pub patterns: Vec<String>,
    /// Whether a negator among the three words before an `anywhere` match cancels it
    /// (default: true for `anywhere`).
    #[serde(default)]
    pub negatable: Option<bool>,
    /// Words that veto a match when they follow it within four words.
    #[serde(default)]
    pub unless_after: Vec<String>,
}

fn custom() -> String {
    "custom".to_owned()
}

fn sentence() -> Anchor {
    Anchor::Sentence
}

/// How a rules file combines with the built-in rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Built-in rules first, then the file's.
    #[default]
    Add,
    /// Only the file's rules.
    Replace,
}

/// A `--revocation-rules` file (JSON).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    mode: Mode,
    version: String,
    #[serde(default)]
    filler: Vec<String>,
    rules: Vec<Spec>,
}

/// One slot of a pattern: alternatives (each one or more canonical tokens), maybe optional.
#[derive(Debug, Clone)]
struct Slot {
    alts: Vec<Vec<String>>,
    optional: bool,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    id: String,
    category: String,
    anchor: Anchor,
    patterns: Vec<Vec<Slot>>,
    negatable: bool,
    unless_after: HashSet<String>,
}

impl Rule {
    /// `version:id`, as recorded with a detection (`builtin-2026.1:stop-texting`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The rule's category (`fcc-word`, `stop-request`, `list-removal`, `consent-revocation`…).
    pub fn category(&self) -> &str {
        &self.category
    }
}

/// A compiled, versioned set of revocation rules with its prefilter.
#[derive(Debug, Clone)]
pub struct RuleSet {
    version: String,
    rules: Vec<Rule>,
    filler: HashSet<String>,
    negators: HashSet<String>,
    prefilter: prefilter::Prefilter,
}

static BUILTIN: LazyLock<RuleSet> = LazyLock::new(|| {
    RuleSet::compile(BUILTIN_VERSION, &[(BUILTIN_VERSION, builtin::specs())], &[])
        .unwrap_or_else(|e| unreachable!("the built-in rules compile (unit-tested): {e}"))
});

impl RuleSet {
    /// The built-in rules ([`BUILTIN_VERSION`]).
    pub fn builtin() -> &'static RuleSet {
        &BUILTIN
    }

    /// Reads a rules file: `{"mode": "add"|"replace", "version": "...", "filler": [...],
    /// "rules": [{"id", "category", "anchor", "patterns", "negatable", "unless_after"}]}`.
    /// The error is one line that says what to fix.
    pub fn load(path: &std::path::Path) -> Result<RuleSet, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and compiles a rules file's JSON text (see [`RuleSet::load`]).
    pub fn from_json(text: &str) -> Result<RuleSet, String> {
        let file: RulesFile =
            serde_json::from_str(text).map_err(|e| format!("not a rules file: {e}"))?;
        let version = file.version.trim();
        if version.is_empty() || version.contains(':') {
            return Err("`version` must be a non-empty name without `:`".to_owned());
        }
        if file.rules.is_empty() {
            return Err("`rules` is empty".to_owned());
        }
        let filler: Vec<&str> = file.filler.iter().map(String::as_str).collect();
        match file.mode {
            Mode::Add => Self::compile(
                &format!("{BUILTIN_VERSION}+{version}"),
                &[(BUILTIN_VERSION, builtin::specs()), (version, file.rules)],
                &filler,
            ),
            Mode::Replace => Self::compile(version, &[(version, file.rules)], &filler),
        }
    }

    fn compile(
        version: &str,
        groups: &[(&str, Vec<Spec>)],
        extra_filler: &[&str],
    ) -> Result<RuleSet, String> {
        let mut rules = Vec::new();
        let mut ids = HashSet::new();
        for (group_version, specs) in groups {
            for spec in specs {
                let rule = compile_rule(group_version, spec)?;
                if !ids.insert(rule.id.clone()) {
                    return Err(format!("rule id `{}` appears twice", spec.id));
                }
                rules.push(rule);
            }
        }
        let words = |list: &mut dyn Iterator<Item = &str>| -> HashSet<String> {
            list.flat_map(normalize::word).collect()
        };
        let filler = words(
            &mut builtin::FILLER
                .iter()
                .copied()
                .chain(extra_filler.iter().copied()),
        );
        let negators = words(&mut builtin::NEGATORS.iter().copied());
        let prefilter = prefilter::Prefilter::new(&rules);
        Ok(RuleSet {
            version: version.to_owned(),
            rules,
            filler,
            negators,
            prefilter,
        })
    }

    /// The set's version (`builtin-2026.1`, or `builtin-2026.1+acme-1` with added rules).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule that matches `body`, if any: the hot path (prefilter, then the rules).
    #[inline]
    pub fn detect(&self, body: &str) -> Option<&Rule> {
        if !self.prefilter.is_candidate(body) {
            return None;
        }
        self.detect_unfiltered(body)
    }

    /// [`RuleSet::detect`] without the prefilter: the same answer, slower (tests check this).
    pub fn detect_unfiltered(&self, body: &str) -> Option<&Rule> {
        let sentences = normalize::sentences(body);
        if sentences.is_empty() {
            return None;
        }
        let all: Vec<String> = sentences.iter().flatten().cloned().collect();
        self.rules
            .iter()
            .find(|r| self.matches(r, &sentences, &all))
    }

    /// Whether the prefilter lets `body` through to the rules (a superset of the matches).
    pub fn is_candidate(&self, body: &str) -> bool {
        self.prefilter.is_candidate(body)
    }

    /// The body as the rules see it: sentences of canonical tokens (for tests and debugging).
    pub fn normalise(body: &str) -> Vec<Vec<String>> {
        normalize::sentences(body)
    }

    /// Every raw word (squeezed, lower case) that can satisfy some required word of some rule:
    /// a body with none of them never matches.
    pub fn trigger_words(&self) -> Vec<String> {
        self.prefilter.trigger_words()
    }

    fn strip<'t>(&self, mut t: &'t [String], trailing: bool) -> &'t [String] {
        while let [first, rest @ ..] = t {
            if !self.filler.contains(first) {
                break;
            }
            t = rest;
        }
        while let [rest @ .., last] = t {
            if !trailing || !self.filler.contains(last) {
                break;
            }
            t = rest;
        }
        t
    }

    fn matches(&self, rule: &Rule, sentences: &[Vec<String>], all: &[String]) -> bool {
        let vetoed = |t: &[String], end: usize| {
            t.get(end..end.saturating_add(4).min(t.len()))
                .is_some_and(|after| after.iter().any(|w| rule.unless_after.contains(w)))
        };
        let exact = |t: &[String]| {
            rule.patterns
                .iter()
                .any(|p| match_from(p, t, 0, &mut |e| e == t.len()))
        };
        match rule.anchor {
            Anchor::Whole => exact(self.strip(all, true)),
            Anchor::Sentence => sentences.iter().any(|s| exact(self.strip(s, true))),
            Anchor::Start => sentences.iter().any(|s| {
                let t = self.strip(s, false);
                rule.patterns
                    .iter()
                    .any(|p| match_from(p, t, 0, &mut |e| !vetoed(t, e)))
            }),
            Anchor::Anywhere => sentences.iter().any(|s| {
                (0..s.len()).any(|start| {
                    let before = &s[start.saturating_sub(3)..start];
                    if rule.negatable && before.iter().any(|w| self.negators.contains(w)) {
                        return false;
                    }
                    rule.patterns
                        .iter()
                        .any(|p| match_from(p, s, start, &mut |e| !vetoed(s, e)))
                })
            }),
        }
    }
}

/// Whether `slots` match `t` from `i` with an end position `done` accepts (backtracking over
/// optional slots and alternatives of several tokens).
fn match_from(slots: &[Slot], t: &[String], i: usize, done: &mut dyn FnMut(usize) -> bool) -> bool {
    let Some((slot, rest)) = slots.split_first() else {
        return done(i);
    };
    let rest_of = t.get(i..).unwrap_or_default();
    for alt in &slot.alts {
        if rest_of.starts_with(alt) && match_from(rest, t, i + alt.len(), done) {
            return true;
        }
    }
    slot.optional && match_from(rest, t, i, done)
}

fn compile_rule(version: &str, spec: &Spec) -> Result<Rule, String> {
    let id = spec.id.trim();
    if id.is_empty() || id.contains(':') {
        return Err("a rule `id` must be a non-empty name without `:`".to_owned());
    }
    if spec.patterns.is_empty() {
        return Err(format!("rule `{id}` has no patterns"));
    }
    let mut patterns = Vec::new();
    for p in &spec.patterns {
        let slots = compile_pattern(p).map_err(|e| format!("rule `{id}`, pattern {p:?}: {e}"))?;
        patterns.push(slots);
    }
    Ok(Rule {
        id: format!("{version}:{id}"),
        category: spec.category.clone(),
        anchor: spec.anchor,
        patterns,
        negatable: spec.negatable.unwrap_or(spec.anchor == Anchor::Anywhere),
        unless_after: spec
            .unless_after
            .iter()
            .flat_map(|w| normalize::word(w))
            .collect(),
    })
}

fn compile_pattern(p: &str) -> Result<Vec<Slot>, String> {
    let mut slots = Vec::new();
    for raw in p.split_whitespace() {
        let (body, optional) = match raw.strip_suffix('?') {
            Some(b) => (b, true),
            None => (raw, false),
        };
        let mut alts = Vec::new();
        for alt in body.split('|') {
            let tokens = normalize::word(alt);
            if tokens.is_empty() {
                return Err(format!(
                    "`{raw}` has an alternative with no letters or digits"
                ));
            }
            alts.push(tokens);
        }
        slots.push(Slot { alts, optional });
    }
    if slots.is_empty() {
        return Err("empty pattern".to_owned());
    }
    if slots.iter().all(|s| s.optional) {
        return Err("every word is optional".to_owned());
    }
    Ok(slots)
}

#[cfg(test)]
mod tests;
