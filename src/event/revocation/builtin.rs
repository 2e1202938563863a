//! The built-in rule set, `builtin-2026.1`: what a reasonable person reads as "stop messaging
//! me" (47 CFR 64.1200(a)(10)), in English, kept conservative on the words' other senses.
//!
//! Rules are tried in this order; the first that matches names the detection. See the module
//! docs of `revocation` for the pattern syntax and the anchors.

use super::{Anchor, Spec};

/// The version recorded with every built-in rule id (`builtin-2026.1:stop-texting`).
pub const VERSION: &str = "builtin-2026.1";

/// Words that may surround a `whole` or `sentence` match.
pub(super) const FILLER: &[&str] = &[
    "please",
    "now",
    "thanks",
    "thank",
    "you",
    "ok",
    "okay",
    "asap",
    "immediately",
    "right",
    "away",
    "hi",
    "hello",
    "hey",
    "just",
    "already",
    "again",
    "sorry",
    "sir",
    "maam",
    "forever",
    "permanently",
    "seriously",
    "god",
];

/// Words that, among the three before an `anywhere` match, mean it is not a request.
pub(super) const NEGATORS: &[&str] = &[
    "dont", "not", "never", "didnt", "doesnt", "wont", "cant", "cannot", "shouldnt", "wouldnt",
    "couldnt", "why", "isnt", "wasnt", "arent", "havent", "hasnt", "did",
];

/// Things one is removed from that are not a messaging list.
const NOT_A_LIST: &[&str] = &[
    "appointment",
    "appt",
    "waitlist",
    "wait",
    "waiting",
    "schedule",
    "reservation",
    "booking",
    "order",
    "cart",
    "class",
    "roster",
    "team",
    "meeting",
    "event",
    "party",
    "photo",
    "picture",
    "pic",
    "tag",
    "account",
    "chat",
    "emergency",
    "autopay",
    "delivery",
    "route",
    "shift",
    "lineup",
    "carpool",
    "will",
    "lease",
    "policy",
    "loan",
    "game",
    "trip",
    "tour",
];

/// What one may opt out of that is not messaging.
const NOT_MESSAGING: &[&str] = &[
    "paper",
    "statements",
    "statement",
    "paperless",
    "email",
    "emails",
    "survey",
    "insurance",
    "warranty",
    "coverage",
    "protection",
    "autopay",
    "renewal",
    "arbitration",
    "tip",
    "tips",
    "donation",
    "roundup",
    "class",
    "lunch",
    "trip",
    "potluck",
    "game",
    "tour",
];

/// Things sent that one may ask to stop.
/// Not "deals" or "updates": "no more deals left?" asks about stock.
const SENT: &str = "texts|messages|msgs|sms|alerts|notifications|promos|promotions|spam|marketing|ads|robotexts|reminders|offers";

/// Follow-ups that make "dont text me" about timing or channel, not consent.
const TIMING: &[&str] = &[
    "back", "later", "until", "till", "til", "before", "after", "at", "when", "unless", "yet",
    "tonight", "today", "tomorrow", "while", "during", "first", "the", "a", "that", "it",
];

fn spec(
    id: &str,
    category: &str,
    anchor: Anchor,
    unless_after: &[&str],
    patterns: &[String],
) -> Spec {
    Spec {
        id: id.to_owned(),
        category: category.to_owned(),
        anchor,
        patterns: patterns.to_vec(),
        negatable: None,
        unless_after: unless_after.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The built-in rules, in the order they are tried.
pub(super) fn specs() -> Vec<Spec> {
    let p = |v: &[&str]| -> Vec<String> { v.iter().map(|s| (*s).to_owned()).collect() };
    let s = SENT;
    use Anchor::{Anywhere, Sentence, Start, Whole};
    vec![
        // 1. FCC words as the whole message or a sentence of it ("STOP!!", "opt out please").
        spec("fcc-word", "fcc-word", Sentence, &[], &p(&[
            "stop|unsubscribe|revoke|stopall all|it|this|that|them|everything|everyone?",
            "opt|opted me|us? out all|now?",
        ])),
        spec("fcc-word-whole", "fcc-word", Whole, &[], &p(&[
            "cancel|end|quit all|it|this|that|everything?",
        ])),
        spec("stop-start", "fcc-word", Start, &[], &p(&[
            "stop who|wrong|never|unsubscribe|remove|this|it|i",
        ])),
        // 2. Explicit revocation of consent.
        spec("revoke-consent", "consent-revocation", Anywhere, &[], &p(&[
            "revoke|revoking|withdraw|withdrawing|rescind|retract|cancel|pull my|your|the|all|any? consent|permission|authorization|authorisation",
            "revoke|revoking",
            "no longer consent|agree|authorize",
            "dont consent|authorize",
            "dont have|give my|your? consent|permission",
            "no longer have|give my|your? consent|permission",
            "never gave|give you? my|your? consent|permission",
            "never consented|agreed|subscribed|opted",
            "consent withdrawn|revoked",
        ])),
        spec("never-signed-up", "consent-revocation", Anywhere, NOT_A_LIST, &p(&[
            "never signed|sign up",
        ])),
        // 3. Removal from a list.
        spec("unsubscribe", "list-removal", Anywhere, &["link", "button", "page"], &p(&[
            "unsubscribe|unsubscribed",
        ])),
        spec("opt-out", "list-removal", Anywhere, NOT_MESSAGING, &p(&[
            "opt|opted me|us|my|this? number? out",
        ])),
        spec("remove-me", "list-removal", Anywhere, NOT_A_LIST, &p(&[
            "remove|delete|erase|unenroll me|us",
            "remove|delete|erase my|this|our|the number|name|phone|cell|info|contact|details|information",
        ])),
        spec("remove-whole", "list-removal", Whole, &[], &p(&["remove|delete|unenroll|unenrol"])),
        spec("take-me-off", "list-removal", Anywhere, NOT_A_LIST, &[
            "take|get me|us off|of|out of? your|the|this|that|these|my|ur|all? mailing|text|texting|sms|contact|marketing|call|calling|email|message|messaging|distribution|subscriber|broadcast|promo|promotional? list|lists|listing|database|system".to_owned(),
            format!("take|get me|us off|of|out of? your|the|these|those|all|ur? text? {s}"),
            "take|get my|this|our number off|out".to_owned(),
        ]),
        spec("take-me-off-sentence", "list-removal", Sentence, &[], &p(&[
            "take|get me|us off|out this|it|here?",
        ])),
        // 4. Direct requests to stop.
        spec("if-you-dont-stop", "stop-request", Anywhere, &["by", "in", "at", "for", "over"], &p(&[
            "if you dont stop|quit",
            "unless you stop|quit",
        ])),
        spec("i-said-stop", "stop-request", Anywhere, &["by", "in", "at", "for", "over", "the"], &p(&[
            "i said|told you? to? stop|unsubscribe|quit",
        ])),
        spec("cease-and-desist", "stop-request", Anywhere, &[], &p(&["cease and desist"])),
        spec("stop-texting", "stop-request", Anywhere, &[], &p(&[
            "stop|quit|cease texting|messaging|contacting|spamming|bothering|harassing|calling|text|message|contact|spam|bugging|hitting me|us|my|this|him|her",
        ])),
        spec("stop-texting-start", "stop-request", Start, &["while", "during", "when", "if", "at", "in", "on"], &p(&[
            "stop|quit|cease texting|messaging|contacting|spamming|calling|text|message|contact",
        ])),
        spec("stop-sending", "stop-request", Anywhere, &[], &[format!(
            "stop|quit|cease sending|send me|us|these|them|those|any|your|ur|all|text|{s}"
        )]),
        spec("stop-messages", "stop-request", Anywhere, &[], &[format!(
            "stop|end|cancel|quit all|these|the|this|those|your|ur|any|my? text? {s}"
        )]),
        spec("do-not-text", "stop-request", Anywhere, TIMING, &p(&[
            "dont ever? text|message|contact|sms|spam|bother me|us|this|my|again|anymore|any",
            "never ever? text|message|contact|sms|spam|bother me|us|this|my this? number? again",
            "dont want|wish|need to? be contacted|texted|messaged|spammed",
        ])),
        spec("no-more-texts", "stop-request", Anywhere, &[], &[
            format!("no more|further text|{s}"),
            format!("dont want|need|wish to? receive|get? any|these|your|ur|the|more|those|this|such? more? text? {s}"),
            format!("no longer want|need|wish to? receive|get? any|these|your|ur|the|more|those|this|such? more? text? {s}"),
        ]),
        spec("leave-me-alone", "stop-request", Anywhere, &[], &p(&[
            "leave me|us alone",
            "lose|forget my|this number",
        ])),
    ]
}
