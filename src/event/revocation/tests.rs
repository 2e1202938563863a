use super::*;

fn detect(body: &str) -> Option<String> {
    RuleSet::builtin()
        .detect(body)
        .map(|r| r.id().trim_start_matches("builtin-2026.1:").to_owned())
}

#[test]
fn builtin_rules_compile_and_are_versioned() {
    let set = RuleSet::builtin();
    assert_eq!(set.version(), "builtin-2026.1");
    assert!(set.rules().len() > 10);
    assert!(
        set.rules()
            .iter()
            .all(|r| r.id().starts_with("builtin-2026.1:"))
    );
}

#[test]
fn catches_what_twilio_lets_through() {
    for (body, rule) in [
        ("STOP!!", "fcc-word"),
        ("Stop please", "fcc-word"),
        ("opt out", "fcc-word"),
        ("Opt-out now", "fcc-word"),
        ("stoooop", "fcc-word"),
        ("S T O P", "fcc-word"),
        ("Cancel please", "fcc-word-whole"),
        ("Stop texting me", "stop-texting"),
        ("pls stop txting me", "stop-texting"),
        ("Please do not text me again", "do-not-text"),
        ("No more texts please", "no-more-texts"),
        ("please unsubscribe me", "unsubscribe"),
        ("pls unsubcribe", "fcc-word"),
        ("remove me from this list", "remove-me"),
        ("Take me off your mailing list", "take-me-off"),
        ("I revoke my consent", "revoke-consent"),
        ("Stop 🛑 who is this", "fcc-word"),
    ] {
        assert_eq!(detect(body).as_deref(), Some(rule), "{body:?}");
        assert!(RuleSet::builtin().is_candidate(body), "{body:?}");
    }
}

#[test]
fn conservative_on_other_senses() {
    for body in [
        "Don't stop!",
        "When does the sale end?",
        "Cancel my appointment please",
        "I'll stop by later",
        "Waiting at the bus stop",
        "non-stop deals all weekend",
        "Can I cancel my order?",
        "Why did you stop texting me?",
        "Don't text me back, I'll call",
        "Please remove me from the waitlist",
        "I don't want to unsubscribe",
        "See you at 5",
        "",
    ] {
        assert_eq!(detect(body), None, "{body:?}");
    }
}

#[test]
fn rule_files_add_or_replace() {
    let add = RuleSet::from_json(
        r#"{"mode": "add", "version": "acme-es-1", "filler": ["por", "favor"],
            "rules": [{"id": "es-baja", "category": "fcc-word", "anchor": "sentence",
                       "patterns": ["baja|alto|cancelar|parar"]}]}"#,
    )
    .expect("valid file");
    assert_eq!(add.version(), "builtin-2026.1+acme-es-1");
    assert_eq!(
        add.detect("BAJA por favor").map(Rule::id),
        Some("acme-es-1:es-baja")
    );
    assert!(add.detect("stop").is_some(), "built-ins kept");
    let replace = RuleSet::from_json(
        r#"{"mode": "replace", "version": "acme-2", "rules": [{"id": "halt", "anchor": "whole", "patterns": ["halt"]}]}"#,
    )
    .expect("valid file");
    assert_eq!(replace.detect("HALT").map(Rule::category), Some("custom"));
    assert!(replace.detect("stop").is_none(), "built-ins replaced");
    assert!(!replace.is_candidate("stop texting me"));
}

#[test]
fn bad_rule_files_say_what_is_wrong() {
    for (text, want) in [
        ("{", "not a rules file"),
        (r#"{"version": "x", "rules": []}"#, "`rules` is empty"),
        (
            r#"{"version": "", "rules": [{"id": "a", "patterns": ["a"]}]}"#,
            "`version`",
        ),
        (
            r#"{"version": "x", "rules": [{"id": "a", "patterns": ["a?"]}]}"#,
            "every word is optional",
        ),
        (
            r#"{"version": "x", "rules": [{"id": "a", "patterns": ["--"]}]}"#,
            "no letters or digits",
        ),
        (
            r#"{"version": "x", "mode": "merge", "rules": [{"id": "a", "patterns": ["a"]}]}"#,
            "not a rules file",
        ),
        (
            r#"{"version": "x", "rules": [{"id": "stop-texting", "patterns": ["a"]}, {"id": "stop-texting", "patterns": ["b"]}]}"#,
            "appears twice",
        ),
        (
            r#"{"version": "x", "rules": [{"id": "a", "pattern": ["a"]}]}"#,
            "unknown field",
        ),
    ] {
        let err = RuleSet::from_json(text).expect_err(text);
        assert!(err.contains(want), "{text}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}
