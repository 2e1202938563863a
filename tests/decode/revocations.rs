//! Revocation phrases (issue 9): the labelled corpus, the prefilter's soundness, the fixtures
//! under the default options, storage on both backends, and `optout replay` end to end.

use std::path::Path;

use optout::event::revocation::RuleSet;
use optout::event::{DecodeOptions, Detection, OptOutType, Outcome, Revocations, Skip, classify};
use optout::pipeline::{RawRecord, RecordFormat, decode_into};
use optout::store::{Batch, EventFilter, RevocationFilter, StatusFilter, Store};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::db::Db;

// ---------------------------------------------------------------------------------------------
// The corpus

/// `(revokes, expected category, body)` for every line of tests/corpus/revocations.tsv.
fn corpus() -> Vec<(bool, String, String)> {
    read_corpus("revocations.tsv")
}

/// `(revokes, expected category, body)` for every line of a file in tests/corpus/.
fn read_corpus(name: &str) -> Vec<(bool, String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("corpus file");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.splitn(3, '\t');
            let (label, category, body) = (
                cols.next().unwrap_or_default(),
                cols.next().unwrap_or_default(),
                cols.next()
                    .unwrap_or_else(|| panic!("three columns: {l:?}")),
            );
            assert!(label == "revoke" || label == "keep", "label: {l:?}");
            assert_eq!(label == "keep", category == "-", "category: {l:?}");
            (
                label == "revoke",
                category.to_owned(),
                body.replace("\\n", "\n"),
            )
        })
        .collect()
}

/// What the rules make of a corpus.
struct Score {
    tp: u32,
    fp: u32,
    fneg: u32,
    tn: u32,
    category_ok: u32,
}

impl Score {
    fn precision(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fp).max(1))
    }

    fn recall(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fneg).max(1))
    }
}

/// Scores the built-in rules on `corpus`, printing the figures and every mistake.
fn score(name: &str, corpus: &[(bool, String, String)]) -> Score {
    let rules = RuleSet::builtin();
    let (mut tp, mut fp, mut fneg, mut tn, mut category_ok) = (0, 0, 0, 0, 0);
    let mut mistakes = Vec::new();
    for (revokes, category, body) in corpus {
        let found = rules.detect(body);
        assert_eq!(
            found.map(|r| r.id()),
            rules.detect_unfiltered(body).map(|r| r.id()),
            "prefilter changed the answer for {body:?}"
        );
        match (found, *revokes) {
            (Some(rule), true) => {
                tp += 1;
                if rule.category() == category {
                    category_ok += 1;
                } else {
                    mistakes.push(format!("category {} for {body:?} ({category})", rule.id()));
                }
            }
            (Some(rule), false) => {
                fp += 1;
                mistakes.push(format!("false positive {} on {body:?}", rule.id()));
            }
            (None, true) => {
                fneg += 1;
                mistakes.push(format!("missed {body:?} ({category})"));
            }
            (None, false) => tn += 1,
        }
    }
    let s = Score {
        tp,
        fp,
        fneg,
        tn,
        category_ok,
    };
    println!(
        "{name} ({}): {} bodies, {} revocations, {} others; \
         TP {tp} FP {fp} FN {fneg} TN {tn}; precision {:.1}%, recall {:.1}%, \
         category agreement {category_ok}/{tp}",
        rules.version(),
        corpus.len(),
        tp + fneg,
        fp + tn,
        s.precision() * 100.0,
        s.recall() * 100.0,
    );
    for m in &mistakes {
        println!("  {m}");
    }
    s
}

/// The development corpus (written alongside the rules): the issue's thresholds.
#[test]
fn corpus_precision_and_recall() {
    let corpus = corpus();
    let s = score("revocation corpus", &corpus);
    assert!(
        corpus.len() >= 400,
        "the corpus holds {} bodies",
        corpus.len()
    );
    assert!(
        s.fp + s.tn >= 200,
        "too few hard negatives: {}",
        s.fp + s.tn
    );
    assert!(s.recall() >= 0.95, "recall {:.3} below 95%", s.recall());
    assert!(
        s.precision() >= 0.99,
        "precision {:.3} below 99%",
        s.precision()
    );
    assert!(
        f64::from(s.category_ok) >= 0.9 * f64::from(s.tp),
        "categories disagree too often: {}/{}",
        s.category_ok,
        s.tp
    );
}

/// The held-out bodies, written after the rules were frozen and never used to tune them: the
/// honest estimate (printed; docs/development.md quotes it). Floors guard against regressions only.
#[test]
fn holdout_precision_and_recall() {
    let corpus = read_corpus("revocations-holdout.tsv");
    let s = score("revocation hold-out", &corpus);
    assert!(
        corpus.len() >= 60,
        "the hold-out holds {} bodies",
        corpus.len()
    );
    assert!(
        s.recall() >= 0.8,
        "hold-out recall {:.3} below 80%",
        s.recall()
    );
    assert!(
        s.precision() >= 0.95,
        "hold-out precision {:.3} below 95%",
        s.precision()
    );
}

#[test]
fn corpus_has_no_duplicate_bodies() {
    let mut seen = std::collections::HashSet::new();
    for (_, _, body) in corpus()
        .into_iter()
        .chain(read_corpus("revocations-holdout.tsv"))
    {
        assert!(seen.insert(body.to_lowercase()), "duplicate: {body:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Ordinary words, none of them a trigger of the built-in rules.
const PLAIN: &[&str] = &[
    "see",
    "you",
    "at",
    "five",
    "thanks",
    "got",
    "it",
    "what",
    "time",
    "does",
    "the",
    "store",
    "open",
    "tomorrow",
    "yes",
    "please",
    "confirm",
    "my",
    "appointment",
    "for",
    "tuesday",
    "ok",
    "order",
    "shipped",
    "yet",
    "tracking",
    "link",
    "says",
    "pending",
    "merci",
    "running",
    "late",
    "sorry",
    "save",
    "seat",
    "can",
    "reschedule",
    "next",
    "week",
    "where",
    "find",
    "receipt",
    "invoice",
    "work",
    "email",
    "instead",
    "hello",
    "bus",
    "sale",
    "deal",
    "price",
    "blue",
    "size",
    "😊",
    "👍",
    "🙏",
    "!",
    "?",
    ",",
    ".",
    "\n",
    "-",
    "'",
    "é",
    "à",
    "中",
    "ＯＫ",
    "42",
    "#48213",
];

fn plain_body() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PLAIN), 0..14).prop_map(|w| w.join(" "))
}

/// Words the rules are built from, and near misses.
const TRIGGERY: &[&str] = &[
    "stop",
    "STOP",
    "stoooop",
    "s",
    "t",
    "o",
    "p",
    "texting",
    "txting",
    "me",
    "dont",
    "don't",
    "do",
    "not",
    "no",
    "more",
    "texts",
    "unsubscribe",
    "unsubcribe",
    "opt",
    "out",
    "optout",
    "remove",
    "take",
    "off",
    "your",
    "list",
    "revoke",
    "consent",
    "cancel",
    "end",
    "quit",
    "all",
    "please",
    "pls",
    "never",
    "again",
    "by",
    "bus",
    "why",
    "did",
    "!",
    ".",
    ",",
    "🛑",
    "ＳＴＯＰ",
    "ſtop",
    "waitlist",
    "sending",
    "these",
    "leave",
    "alone",
    "i",
    "said",
    "if",
    "u",
];

fn triggery_body() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TRIGGERY), 0..8).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// No rule fires on a body without any of the rules' trigger words (after normalisation).
    #[test]
    fn never_fires_without_a_trigger_word(body in plain_body()) {
        let rules = RuleSet::builtin();
        let triggers = rules.trigger_words();
        let tokens = RuleSet::normalise(&body);
        prop_assume!(!tokens.iter().flatten().any(|t| triggers.iter().any(|w| w == t)));
        prop_assert!(rules.detect_unfiltered(&body).is_none(), "{body:?}");
        prop_assert!(rules.detect(&body).is_none(), "{body:?}");
    }

    /// The prefilter never drops a body the rules match, on dense mixes of trigger words.
    #[test]
    fn prefilter_is_sound_on_trigger_words(body in triggery_body()) {
        let rules = RuleSet::builtin();
        let slow = rules.detect_unfiltered(&body).map(|r| r.id().to_owned());
        if slow.is_some() {
            prop_assert!(rules.is_candidate(&body), "{body:?}");
        }
        prop_assert_eq!(rules.detect(&body).map(|r| r.id().to_owned()), slow);
    }

    /// ... and on arbitrary text.
    #[test]
    fn prefilter_is_sound_on_any_text(body in any::<String>()) {
        let rules = RuleSet::builtin();
        prop_assert_eq!(
            rules.detect(&body).map(|r| r.id()),
            rules.detect_unfiltered(&body).map(|r| r.id())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The decoder

fn record(
    id: &str,
    from: &str,
    body: &str,
    opt_out_type: Option<&str>,
    ts: &str,
    v: u32,
) -> Vec<u8> {
    let mut data = json!({
        "messageSid": format!("SM{id}"),
        "timestamp": ts,
        "accountSid": "AC1",
        "from": from,
        "to": "+15559870002",
        "messagingServiceSid": "MG1",
        "body": body,
    });
    if let Some(t) = opt_out_type {
        data["optOutType"] = json!(t);
    }
    serde_json::to_vec(&json!({
        "specversion": "1.0",
        "type": "com.twilio.messaging.inbound-message.received",
        "source": "/2010-04-01/Accounts/AC1/Messages.json",
        "id": id,
        "dataschema": format!("https://events-schemas.twilio.com/Messaging.InboundMessageV1/{v}"),
        "data": data,
    }))
    .expect("JSON")
}

#[test]
fn default_options_detect_phrases_in_any_schema_version() {
    let opts = DecodeOptions::default();
    for v in [3, 4, 5, 6] {
        let Outcome::Opt(e) = classify(
            &record(
                "EZ1",
                "+1",
                "Stop texting me!!",
                None,
                "2026-03-01T12:00:00Z",
                v,
            ),
            opts,
        ) else {
            panic!("v{v}: a phrase revocation")
        };
        assert_eq!(
            (e.opt_out_type, e.detection, e.inferred, e.rule.as_deref()),
            (
                OptOutType::Stop,
                Detection::Phrase,
                true,
                Some("builtin-2026.1:stop-texting")
            )
        );
        assert_eq!(e.body.as_deref(), Some("Stop texting me!!"));
    }
    // Twilio's optOutType comes first, keywords next (old schemas, when asked), phrases last.
    let twilio = classify(
        &record("EZ2", "+1", "STOP", Some("STOP"), "2026-03-01T12:00:00Z", 5),
        opts,
    );
    assert!(
        matches!(twilio, Outcome::Opt(e) if e.detection == Detection::Twilio && e.rule.is_none())
    );
    let infer = DecodeOptions {
        infer_keywords: true,
        ..opts
    };
    let keyword = classify(
        &record("EZ3", "+1", "stop", None, "2026-03-01T12:00:00Z", 4),
        infer,
    );
    assert!(matches!(keyword, Outcome::Opt(e) if e.detection == Detection::Keyword));
    let phrase = classify(
        &record("EZ3", "+1", "stop", None, "2026-03-01T12:00:00Z", 4),
        opts,
    );
    assert!(matches!(phrase, Outcome::Opt(e) if e.detection == Detection::Phrase));
    let plain = classify(
        &record(
            "EZ4",
            "+1",
            "I'll stop by later",
            None,
            "2026-03-01T12:00:00Z",
            5,
        ),
        opts,
    );
    assert_eq!(plain, Outcome::Skip(Skip::NotOptKeyword));
    let off = DecodeOptions {
        revocations: Revocations::Off,
        ..opts
    };
    let skipped = classify(
        &record(
            "EZ5",
            "+1",
            "Stop texting me",
            None,
            "2026-03-01T12:00:00Z",
            5,
        ),
        off,
    );
    assert_eq!(skipped, Outcome::Skip(Skip::NotOptKeyword));
    // A phrase event still needs its identity fields: without `from` it is a dead letter.
    let mut v: Value = serde_json::from_slice(&record(
        "EZ6",
        "+1",
        "remove me",
        None,
        "2026-03-01T12:00:00Z",
        5,
    ))
    .unwrap();
    v["data"].as_object_mut().unwrap().remove("from");
    let dead = classify(&serde_json::to_vec(&v).unwrap(), opts);
    assert!(matches!(dead, Outcome::Dead(r) if r.starts_with("missing field: ")));
}

#[test]
fn fixtures_that_revoke_consent_are_phrase_events_by_default() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let off = DecodeOptions {
        revocations: Revocations::Off,
        ..DecodeOptions::default()
    };
    let mut phrases = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let bytes = std::fs::read(&path).unwrap();
        let (on, without) = (
            classify(&bytes, DecodeOptions::default()),
            classify(&bytes, off),
        );
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match &on {
            Outcome::Opt(e) if e.detection == Detection::Phrase => {
                assert_eq!(without, Outcome::Skip(Skip::NotOptKeyword), "{name}");
                phrases.push((name, e.body.clone().unwrap_or_default()));
            }
            _ => assert_eq!(on, without, "{name}: detection changed more than a skip"),
        }
    }
    assert_eq!(
        phrases,
        [
            (
                "infer-stop-no-dataschema.json".to_owned(),
                "UNSUBSCRIBE".to_owned()
            ),
            (
                "infer-stop-v4-padded-body.json".to_owned(),
                "  stop ".to_owned()
            ),
            (
                "skip-v4-opt-out-with-space.json".to_owned(),
                "OPT OUT".to_owned()
            ),
            (
                "skip-v4-stop-please.json".to_owned(),
                "Stop please".to_owned()
            ),
            (
                "skip-v5-keyword-body-without-opt-out-type.json".to_owned(),
                "STOP".to_owned()
            ),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The store, both backends

both_backends! {
    phrases_are_recorded_and_change_status_only_when_honoured;
    revocations_lists_numbers_whose_latest_signal_is_a_phrase;
}

fn ts(m: u32) -> String {
    format!("2026-03-01T12:{m:02}:00Z")
}

async fn ingest(store: &dyn Store, records: &[Vec<u8>], honor: bool) {
    let mut batch = Batch {
        stream: "test".into(),
        shard_id: "shard-0".into(),
        honor_revocations: honor,
        ..Batch::default()
    };
    let seqs: Vec<String> = (0..records.len()).map(|i| format!("{i:05}")).collect();
    let counts = decode_into(
        &mut batch,
        seqs.iter().zip(records).map(|(s, r)| RawRecord {
            sequence_number: s,
            partition_key: None,
            data: r,
            format: RecordFormat::CloudEvent,
        }),
        DecodeOptions::default(),
    );
    assert_eq!(counts.dead_letters, 0);
    store.commit(&batch).await.expect("commit");
}

async fn status(reader: &optout::store::Reader, subscriber: &str) -> Option<(String, String)> {
    let rows = reader
        .all(&StatusFilter {
            subscriber: Some(subscriber.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    rows.first().map(|r| (r.status.clone(), r.event_id.clone()))
}

async fn phrases_are_recorded_and_change_status_only_when_honoured(db: Db) {
    let s = &*db.store;
    // Recorded, status untouched (the default).
    ingest(
        s,
        &[record(
            "EZp1",
            "+1",
            "please stop texting me",
            None,
            &ts(10),
            5,
        )],
        false,
    )
    .await;
    let events = db
        .reader
        .all(&EventFilter {
            detection: Some(Detection::Phrase),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].detection.as_str(),
            events[0].rule.as_deref(),
            events[0].inferred
        ),
        ("phrase", Some("builtin-2026.1:stop-texting"), true)
    );
    assert_eq!(events[0].opt_out_type, "STOP");
    assert_eq!(status(&db.reader, "+1").await, None);
    // Honoured: opted_out, under the STOP ordering rules (latest data.timestamp wins).
    ingest(
        s,
        &[record("EZs1", "+2", "START", Some("START"), &ts(20), 5)],
        true,
    )
    .await;
    ingest(
        s,
        &[record(
            "EZp2",
            "+2",
            "Remove me from your list",
            None,
            &ts(10),
            5,
        )],
        true,
    )
    .await;
    assert_eq!(
        status(&db.reader, "+2").await,
        Some(("opted_in".into(), "EZs1".into())),
        "an older phrase loses"
    );
    ingest(
        s,
        &[record(
            "EZp3",
            "+2",
            "I revoke my consent",
            None,
            &ts(30),
            5,
        )],
        true,
    )
    .await;
    assert_eq!(
        status(&db.reader, "+2").await,
        Some(("opted_out".into(), "EZp3".into()))
    );
    // Re-reading the same event later without the flag changes nothing (identity is the id).
    ingest(
        s,
        &[record(
            "EZp1",
            "+1",
            "please stop texting me",
            None,
            &ts(10),
            5,
        )],
        true,
    )
    .await;
    assert_eq!(status(&db.reader, "+1").await, None);
    // The other filters and detections.
    ingest(
        s,
        &[record("EZt1", "+3", "STOP", Some("STOP"), &ts(40), 6)],
        false,
    )
    .await;
    let twilio = db
        .reader
        .all(&EventFilter {
            detection: Some(Detection::Twilio),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        twilio
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["EZs1", "EZt1"]
    );
    assert!(twilio.iter().all(|e| e.rule.is_none() && !e.inferred));
}

async fn revocations_lists_numbers_whose_latest_signal_is_a_phrase(db: Db) {
    let s = &*db.store;
    let records = [
        // +1: a phrase, nothing after: listed.
        record("EZa1", "+1", "Stop texting me", None, &ts(10), 5),
        // +2: a phrase, then Twilio's own STOP: blocked by Twilio, not listed.
        record("EZb1", "+2", "opt out", None, &ts(10), 5),
        record("EZb2", "+2", "STOP", Some("STOP"), &ts(11), 5),
        // +3: a phrase, then START: opted back in, not listed.
        record("EZc1", "+3", "unsubscribe me", None, &ts(10), 5),
        record("EZc2", "+3", "START", Some("START"), &ts(12), 5),
        // +4: START, then a phrase, then HELP (ignored): listed, the latest phrase once.
        record("EZd1", "+4", "START", Some("START"), &ts(5), 5),
        record("EZd2", "+4", "no more texts", None, &ts(20), 5),
        record("EZd3", "+4", "take me off your list", None, &ts(21), 5),
        record("EZd4", "+4", "HELP", Some("HELP"), &ts(22), 5),
        // +5: an ordinary message only.
        record("EZe1", "+5", "See you at 5", None, &ts(10), 5),
    ];
    ingest(s, &records, false).await;
    let rows = db.reader.all(&RevocationFilter::default()).await.unwrap();
    let listed: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.subscriber.as_str(), r.event_id.as_str()))
        .collect();
    assert_eq!(listed, [("+1", "EZa1"), ("+4", "EZd3")]);
    assert_eq!(rows[0].rule.as_deref(), Some("builtin-2026.1:stop-texting"));
    assert_eq!(
        rows[0].status, None,
        "not honoured: Twilio's status is untouched"
    );
    assert_eq!(rows[1].status.as_deref(), Some("opted_in"));
    assert_eq!(rows[1].revoked_at, "2026-03-01T12:21:00.000000Z");
    let since = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:15:00Z")
        .unwrap()
        .to_utc();
    let later = db
        .reader
        .all(&RevocationFilter { since: Some(since) })
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].subscriber, "+4");
}

// ---------------------------------------------------------------------------------------------
// The binary: `optout replay`, `optout events --detection`, `optout revocations`

/// `optout ARGS` against the SQLite file `db`, with a clean environment.
fn optout(db: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = crate::common::optout::bare_command(args);
    cmd.env("OPTOUT_STORE", format!("sqlite://{}", db.display()));
    cmd.output().expect("run optout")
}

/// The JSON lines a successful command printed.
fn json_lines(out: &std::process::Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::common::optout::json_rows(&out.stdout)
}

#[test]
fn replay_records_phrases_and_honours_them_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.jsonl");
    let lines = [
        record("EZr1", "+1", "Stop texting me", None, &ts(10), 5),
        record("EZr2", "+2", "STOP!!", None, &ts(10), 6),
        record("EZr3", "+3", "See you at 5", None, &ts(10), 5),
        record("EZr4", "+4", "BAJA", None, &ts(10), 5),
    ];
    let text: Vec<String> = lines
        .iter()
        .map(|l| String::from_utf8(l.clone()).unwrap())
        .collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    let file = file.to_str().unwrap();

    // Default: recorded with detection and rule, a WARN per detection without the number or body.
    let plain = dir.path().join("plain.db");
    let out = optout(&plain, &["replay", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    assert_eq!(logs.matches("Revocation phrase").count(), 2, "{logs}");
    assert!(
        logs.contains("builtin-2026.1:stop-texting") && logs.contains("MG1"),
        "{logs}"
    );
    assert!(
        !logs.contains("+1") && !logs.contains("Stop texting me"),
        "personal data logged: {logs}"
    );
    let events = json_lines(&optout(
        &plain,
        &["events", "--detection", "phrase", "--format", "json"],
    ));
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["event_id"].as_str().unwrap(), e["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("EZr1", "builtin-2026.1:stop-texting"),
            ("EZr2", "builtin-2026.1:fcc-word")
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e["detection"] == "phrase" && e["opt_out_type"] == "STOP")
    );
    assert!(json_lines(&optout(&plain, &["status", "--format", "json"])).is_empty());
    let csv = optout(&plain, &["events", "--format", "csv"]);
    let header = String::from_utf8_lossy(&csv.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(header.contains("detection,rule"), "{header}");
    let listed = json_lines(&optout(&plain, &["revocations", "--format", "json"]));
    assert_eq!(listed.len(), 2);

    // Honoured, with Spanish rules added from a file: status changes, BAJA detected too.
    let rules = dir.path().join("rules.json");
    std::fs::write(&rules, r#"{"mode": "add", "version": "es-1", "rules": [{"id": "baja", "category": "fcc-word", "patterns": ["baja|alto|cancelar"]}]}"#).unwrap();
    let honoured = dir.path().join("honoured.db");
    let out = optout(
        &honoured,
        &[
            "replay",
            "--honor-revocations",
            "--revocation-rules",
            rules.to_str().unwrap(),
            file,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = json_lines(&optout(&honoured, &["status", "--format", "json"]));
    let got: Vec<(&str, &str)> = status
        .iter()
        .map(|r| {
            (
                r["subscriber"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("+1", "opted_out"),
            ("+2", "opted_out"),
            ("+4", "opted_out")
        ]
    );
    let baja = json_lines(&optout(
        &honoured,
        &["events", "--subscriber", "+4", "--format", "json"],
    ));
    assert_eq!(baja[0]["rule"], "es-1:baja");

    // A bad rules file: exit 2, one line.
    std::fs::write(&rules, r#"{"mode": "add", "rules": []}"#).unwrap();
    let out = optout(
        &honoured,
        &[
            "replay",
            "--revocation-rules",
            rules.to_str().unwrap(),
            file,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("invalid --revocation-rules"), "{err}");
}
