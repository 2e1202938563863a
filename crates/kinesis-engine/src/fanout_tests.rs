//! Unit tests of the fan-out reader's pure parts: end-of-shard signals, the checkpoint filter and
//! the classes of event-stream errors.

use super::*;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ChildShard, Record as SdkRecord};

fn record(seq: &str) -> SdkRecord {
    SdkRecord::builder()
        .sequence_number(seq)
        .data(Blob::new("x"))
        .partition_key("k")
        .build()
        .unwrap()
}

fn event(records: &[&str], continuation: &str, children: &[&str]) -> SubscribeToShardEvent {
    let mut b = SubscribeToShardEvent::builder()
        .set_records(Some(records.iter().map(|s| record(s)).collect()))
        .continuation_sequence_number(continuation)
        .millis_behind_latest(0);
    for c in children {
        b = b.child_shards(
            ChildShard::builder()
                .shard_id(*c)
                .parent_shards("shardId-000000000000")
                .hash_key_range(
                    aws_sdk_kinesis::types::HashKeyRange::builder()
                        .starting_hash_key("0")
                        .ending_hash_key("1")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        );
    }
    b.build().unwrap()
}

#[test]
fn the_end_of_a_shard_as_each_server_says_it() {
    // AWS: no continuation (the SDK reads a missing or null one as ""), with children.
    assert!(ends_shard(&event(&["5"], "", &["shardId-1"])));
    // ferrokinesis: children on every event of a closed shard; the end has no records.
    assert!(!ends_shard(&event(&["5"], "6", &["shardId-1"])));
    assert!(ends_shard(&event(&[], "6", &["shardId-1"])));
    // An open shard, caught up or not.
    assert!(!ends_shard(&event(&[], "6", &[])));
    assert!(!ends_shard(&event(&["5"], "6", &[])));
}

#[test]
fn records_at_or_before_the_checkpoint_are_dropped() {
    let sdk: Vec<SdkRecord> = ["98", "99", "100", "101"].map(record).into();
    let records: Vec<Record<'_>> = sdk.iter().map(Record::from_sdk).collect();
    let seqs = |rs: &[Record<'_>]| -> Vec<String> {
        rs.iter().map(|r| r.sequence_number.to_string()).collect()
    };
    assert_eq!(
        seqs(after_checkpoint(&records, None)),
        ["98", "99", "100", "101"]
    );
    assert_eq!(seqs(after_checkpoint(&records, Some("99"))), ["100", "101"]);
    assert_eq!(seqs(after_checkpoint(&records, Some("97"))).len(), 4);
    assert!(after_checkpoint(&records, Some("101")).is_empty());
    assert!(after_checkpoint(&records, Some("1000")).is_empty());
}

#[test]
fn event_stream_errors_are_classified_by_variant() {
    use aws_sdk_kinesis::types::error::{ResourceInUseException, ResourceNotFoundException};
    let raw = || aws_smithy_types::event_stream::RawMessage::invalid(None);
    let in_use = SubscribeToShardEventStreamError::ResourceInUseException(
        ResourceInUseException::builder().message("busy").build(),
    );
    let err = SdkError::service_error(in_use, raw());
    assert_eq!(stream_error_class(&err), ErrorClass::Transient);
    let gone = SubscribeToShardEventStreamError::ResourceNotFoundException(
        ResourceNotFoundException::builder().message("gone").build(),
    );
    let err = SdkError::service_error(gone, raw());
    assert_eq!(stream_error_class(&err), ErrorClass::NotFound);
}
