//! Unit tests of the shard slots: each state transition, the restart backoff, and where a
//! reader starts (checkpoint, lineage, the `latest` pin).

use std::time::Duration;

use super::*;

fn shard(id: &str, parent: Option<&str>) -> ShardInfo {
    ShardInfo {
        shard_id: id.into(),
        parent: parent.map(str::to_string),
        adjacent_parent: None,
        closed: false,
    }
}

fn checkpoint(shard: &str, seq: Option<&str>, finished: bool) -> ShardCheckpoint {
    ShardCheckpoint {
        shard_id: shard.into(),
        sequence_number: seq.map(str::to_string),
        finished,
    }
}

const RESTARTS: BackoffSettings = BackoffSettings {
    base: Duration::from_secs(1),
    max: Duration::from_secs(30),
};

/// A running state with a real task id.
async fn running() -> Running {
    let task = tokio::spawn(async {});
    let id = task.id();
    task.await.unwrap();
    Running {
        cancel: CancellationToken::new(),
        started: Instant::now(),
        task: id,
    }
}

#[tokio::test]
async fn a_reader_runs_then_finishes_the_shard() {
    let mut slots = Slots::default();
    let now = Instant::now();
    assert!(
        slots.may_start("s0", now),
        "an unknown shard waits to start"
    );
    let r = running().await;
    let task = r.task;
    slots.slot("s0").started(r);
    assert!(slots.is_running("s0") && !slots.may_start("s0", now));
    assert_eq!(slots.running(), HashSet::from(["s0".to_string()]));
    assert_eq!(slots.shard_of_task(task).as_deref(), Some("s0"));
    slots.slot("s0").reader_finished();
    assert!(matches!(slots.slot("s0").state(), SlotState::Finished));
    assert!(slots.is_finished("s0") && !slots.may_start("s0", now));
    assert_eq!(slots.shard_of_task(task), None, "its task is gone");
}

#[tokio::test]
async fn a_stopped_reader_waits_and_its_cancel_token_stops_it() {
    let mut slots = Slots::default();
    let r = running().await;
    let cancel = r.cancel.clone();
    slots.slot("s0").started(r);
    slots.stop_reader("s0");
    assert!(cancel.is_cancelled(), "a lost lease stops the reader");
    slots.slot("s0").reader_stopped();
    assert!(matches!(slots.slot("s0").state(), SlotState::Waiting));
    assert!(slots.may_start("s0", Instant::now()));
}

#[tokio::test]
async fn the_end_checkpointed_while_the_reader_runs_keeps_it_running() {
    let mut slots = Slots::default();
    slots.slot("p").started(running().await);
    slots.apply(vec![checkpoint("p", Some("9"), true)]);
    // Children may start (they wait for the checkpoint), the reader still returns.
    assert!(slots.is_finished("p") && slots.is_running("p"));
    assert_eq!(slots.finished(), HashSet::from(["p".to_string()]));
    slots.slot("p").reader_stopped();
    assert!(matches!(slots.slot("p").state(), SlotState::Finished));
    // Without a reader, the checkpoint finishes the slot at once, from any other state.
    slots.apply(vec![checkpoint("w", None, true)]);
    assert!(matches!(slots.slot("w").state(), SlotState::Finished));
    slots.slot("b").reader_failed(RESTARTS, Instant::now());
    slots.apply(vec![checkpoint("b", None, true)]);
    assert!(matches!(slots.slot("b").state(), SlotState::Finished));
}

#[test]
fn checkpoints_only_move_forward_in_what_they_say() {
    let mut slots = Slots::default();
    slots.apply(vec![checkpoint("s0", Some("5"), false)]);
    slots.apply(vec![checkpoint("s0", None, false)]);
    let start = slots.start_position(&shard("s0", None), &[], InitialPosition::TrimHorizon);
    assert!(
        matches!(start, StartAt::After(ref s) if s == "5"),
        "a missing sequence number clears nothing"
    );
    slots.apply(vec![checkpoint("s0", Some("6"), true)]);
    slots.apply(vec![checkpoint("s0", Some("6"), false)]);
    assert!(slots.is_finished("s0"), "an ended shard stays ended");
}

#[tokio::test(start_paused = true)]
async fn backoff_is_per_shard_and_forgotten_on_recovery() {
    let mut slots = Slots::default();
    let now = Instant::now();
    assert!(
        slots.may_start("a", now),
        "a shard that never failed starts at once"
    );
    let (first, attempts) = slots.slot("a").reader_failed(RESTARTS, Instant::now());
    assert_eq!(attempts, 1);
    let (second, attempts) = slots.slot("a").reader_failed(RESTARTS, Instant::now());
    assert_eq!(attempts, 2);
    assert!(second >= first, "the wait grows: {first:?} then {second:?}");
    assert!(!slots.may_start("a", Instant::now()));
    assert!(
        slots.may_start("b", Instant::now()),
        "another shard is not held back"
    );
    tokio::time::advance(second).await;
    assert!(slots.may_start("a", Instant::now()));
    slots.slot("a").forget_failures();
    assert_eq!(
        slots.slot("a").reader_failed(RESTARTS, Instant::now()).1,
        1,
        "a recovered shard starts counting again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_reader_keeps_its_backoff_until_it_recovers() {
    let mut slots = Slots::default();
    let (delay, _) = slots.slot("a").reader_failed(RESTARTS, Instant::now());
    assert!(matches!(
        slots.slot("a").state(),
        SlotState::BackingOff { .. }
    ));
    tokio::time::advance(delay).await;
    slots.slot("a").started(running().await);
    assert!(slots.slot("a").has_failures(), "kept while it runs again");
    // Still failing: kept; healthy again: forgotten.
    slots.forget_recovered(|_| false);
    assert!(slots.slot("a").has_failures());
    slots.forget_recovered(|_| true);
    assert!(!slots.slot("a").has_failures());
    assert!(slots.is_running("a"), "recovery does not touch the reader");
    // A shard backing off that goes to another worker waits, with no backoff left.
    slots.slot("b").reader_failed(RESTARTS, Instant::now());
    slots.slot("b").forget_failures();
    assert!(matches!(slots.slot("b").state(), SlotState::Waiting));
    assert!(slots.may_start("b", Instant::now()));
}

#[test]
fn latest_is_pinned_to_the_first_start_for_restarts() {
    let mut slots = Slots::default();
    let s0 = shard("s0", None);
    let before = chrono::Utc::now();
    let first = slots.start_position(&s0, &[], InitialPosition::Latest);
    let StartAt::Latest { pinned } = first else {
        panic!("the first start is not at the tip: {first:?}");
    };
    let again = slots.start_position(&s0, &[], InitialPosition::Latest);
    match again {
        StartAt::Initial(InitialPosition::AtTimestamp(t)) => {
            assert!(t >= before - LATEST_SLACK);
            assert!(t <= chrono::Utc::now() - LATEST_SLACK);
            assert_eq!(t, pinned, "one pin, for the reader and its restarts");
        }
        other => panic!("restart not pinned: {other:?}"),
    }
    // A checkpoint always wins.
    slots.apply(vec![checkpoint("s0", Some("42"), false)]);
    let after = slots.start_position(&s0, &[], InitialPosition::Latest);
    assert!(matches!(after, StartAt::After(ref s) if s == "42"));
    // Other positions are left alone and pin nothing.
    let s1 = shard("s1", None);
    let trim = slots.start_position(&s1, &[], InitialPosition::TrimHorizon);
    assert!(matches!(
        trim,
        StartAt::Initial(InitialPosition::TrimHorizon)
    ));
    assert!(slots.get("s1").unwrap().latest_pin.is_none());
}

#[test]
fn a_child_of_a_known_shard_starts_at_its_beginning_under_latest() {
    let parent = shard("p", None);
    let child = shard("c", Some("p"));
    let listed = [parent.clone(), child.clone()];
    let start = Slots::default().start_position(&child, &listed, InitialPosition::Latest);
    assert!(matches!(
        start,
        StartAt::Initial(InitialPosition::TrimHorizon)
    ));
    // Known only by its checkpoint (already trimmed from the listing) counts too.
    let mut slots = Slots::default();
    slots.apply(vec![checkpoint("p", Some("7"), false)]);
    let start = slots.start_position(&child, &[], InitialPosition::Latest);
    assert!(matches!(
        start,
        StartAt::Initial(InitialPosition::TrimHorizon)
    ));
    // An unknown parent (trimmed and never read here) does not.
    let start = Slots::default().start_position(&child, &[], InitialPosition::Latest);
    assert!(matches!(start, StartAt::Latest { .. }));
}
