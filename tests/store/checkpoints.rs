//! The checkpoint write is a compare-and-set on the checkpoint the batch was read after, in
//! the commit's own transaction: a batch whose expected checkpoint is not the stored one
//! (a retry after a lost answer, a reader that goes on after the database lost its last
//! commits, a second writer) is refused whole, with an error of its own kind, and applies
//! nothing. Effects are counted by triggers, so "nothing" includes nothing applied twice.

use optout::event::OptOutType;
use optout::store::{Batch, CheckpointUpdate, FailureKind, StoreError};

use crate::common::db::{self, Db};
use crate::common::effects::{self, Effects};
use crate::common::events::*;

both_backends! {
    a_batch_read_after_another_checkpoint_applies_nothing;
    of_two_commits_from_one_checkpoint_one_lands;
}

/// A batch on `shard` of one STOP (`id`, from `from`) whose checkpoint is `seq`, read after
/// `previous`.
fn read_after(shard: &str, id: &str, from: &str, seq: &str, previous: Option<&str>) -> Batch {
    let mut b = batch(shard, vec![opt_event(id, OptOutType::Stop, from, 10)]);
    b.checkpoint = Some(CheckpointUpdate {
        sequence_number: Some(seq.into()),
        finished: false,
        previous: previous.map(Into::into),
    });
    b
}

fn refused(result: Result<optout::store::CommitSummary, StoreError>, what: &str) {
    match result {
        Err(e) => {
            assert_eq!(e.kind(), FailureKind::CheckpointMoved, "{what}: {e}");
            assert!(
                matches!(e, StoreError::CheckpointMoved { .. }),
                "{what}: {e:?}"
            );
        }
        Ok(s) => panic!("{what}: landed ({s:?})"),
    }
}

async fn a_batch_read_after_another_checkpoint_applies_nothing(db: Db) {
    effects::install(&db.url).await;
    let s = &*db.store;
    s.commit(&read_after("a", "EZ1", "+1", "00010", None))
        .await
        .unwrap();
    let before = Effects::read(&db.url).await;
    // Expects no checkpoint: a first commit again (its answer was lost, say).
    refused(
        s.commit(&read_after("a", "EZ2", "+2", "00020", None)).await,
        "expected none, stored 00010",
    );
    // Expects an older checkpoint than the stored one.
    refused(
        s.commit(&read_after("a", "EZ2", "+2", "00020", Some("00005")))
            .await,
        "expected 00005, stored 00010",
    );
    // Expects one the store lost: no checkpoint at all for this shard.
    refused(
        s.commit(&read_after("b", "EZ3", "+3", "00030", Some("00025")))
            .await,
        "expected 00025, stored none",
    );
    assert_eq!(
        Effects::read(&db.url).await,
        before,
        "a refused batch applied something"
    );
    assert!(s.checkpoints("s").await.unwrap().len() == 1);
    // The right expectation lands, once; the same batch sent again is refused.
    let next = read_after("a", "EZ2", "+2", "00020", Some("00010"));
    assert_eq!(s.commit(&next).await.unwrap().opt_events_new, 1);
    refused(s.commit(&next).await, "the same batch again");
    let cps = s.checkpoints("s").await.unwrap();
    assert_eq!(cps[0].sequence_number.as_deref(), Some("00020"));
    let counted = effects::assert_exactly_once(&db.url, 2).await;
    assert_eq!(counted["checkpoint"], 2, "{counted:?}");
    assert_eq!(counted["status"], 2, "{counted:?}");
}

/// Two writers commit different batches read after the same checkpoint at the same moment,
/// each on a connection of its own: exactly one lands, the other is refused and applies
/// nothing (the database serialises the two checkpoint writes; the second sees the first's).
async fn of_two_commits_from_one_checkpoint_one_lands(db: Db) {
    effects::install(&db.url).await;
    db.store
        .commit(&read_after("a", "EZ0", "+0", "00010", None))
        .await
        .unwrap();
    for round in 1..=10 {
        let cp = checkpoint_of(&db, "a").await;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for writer in 0..2 {
            let (store, barrier, cp) = (db::open_store(&db.url).await, barrier.clone(), cp.clone());
            let id = format!("EZ{round}w{writer}");
            let seq = format!("{:05}", 10 + round * 10 + writer);
            tasks.push(tokio::spawn(async move {
                let b = read_after("a", &id, &format!("+{round}{writer}"), &seq, Some(&cp));
                barrier.wait().await;
                let result = store.commit(&b).await;
                store.close().await;
                result
            }));
        }
        let mut landed = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => landed += 1,
                Err(e) => assert_eq!(e.kind(), FailureKind::CheckpointMoved, "{e}"),
            }
        }
        assert_eq!(landed, 1, "round {round}: {landed} of two commits landed");
    }
    effects::assert_exactly_once(&db.url, 11).await;
}

async fn checkpoint_of(db: &Db, shard: &str) -> String {
    let cps = db.store.checkpoints("s").await.unwrap();
    let cp = cps.into_iter().find(|c| c.shard_id == shard).unwrap();
    cp.sequence_number.unwrap()
}
