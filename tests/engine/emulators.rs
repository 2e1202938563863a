//! Proves the test harness (tests/common/emulator.rs) against both Kinesis emulators and pins, per
//! emulator, the behaviour the consumer engine has to cope with. Both emulator tests always run:
//! the kinesis-local one fails with an install hint when `scripts/install-kinesis-local.sh` has
//! not been run.
//!
//! What we observed (aws-sdk-kinesis 1.130, ferrokinesis 0.7.0, kinesis-local 0.6.2), and pin below:
//! - Shard ids are `shardId-000000000000`, numbered on across splits and merges on both.
//! - GetRecords on an open shard with nothing (more) to read: no records, a NextShardIterator,
//!   MillisBehindLatest 0, no ChildShards. ferrokinesis reports MillisBehindLatest 0 on an open
//!   shard even when records remain (it never says "behind"); a full page is the only hint.
//! - End of a closed shard:
//!   - ferrokinesis: the response carrying the last records still has a NextShardIterator; the
//!     next call returns no records, *no* NextShardIterator, no ChildShards, and
//!     MillisBehindLatest = milliseconds since the shard closed (not 0).
//!   - kinesis-local: the response carrying the last records already has *no*
//!     NextShardIterator, has ChildShards (each with its ParentShards) and MillisBehindLatest 0.
//!     An empty closed parent ends on the first call. An AFTER_SEQUENCE_NUMBER iterator at the
//!     last record, or a LATEST one, also ends at once with ChildShards.
//!
//!   So: a shard is finished when NextShardIterator is absent, whatever came with it; records in
//!   that same response must be handled (and checkpointed) first.
//! - Closed shards carry EndingSequenceNumber on both, but kinesis-local's is always
//!   `9223372036854775807` (i64::MAX), not the last sequence number: never compare a checkpoint
//!   with EndingSequenceNumber to decide whether a parent is drained.
//! - ListShards with StreamARN only: kinesis-local answers; ferrokinesis says
//!   InvalidArgumentException "Either NextToken or StreamName should be provided." Use StreamName.
//! - Nonexistent stream: a modelled ResourceNotFoundException (`is_resource_not_found_exception()`,
//!   code "ResourceNotFoundException") from ListShards, GetShardIterator, DescribeStreamSummary.
//! - A malformed shard iterator: ferrokinesis InvalidArgumentException (HTTP 400);
//!   kinesis-local HTTP 500 with an empty body (an unmodelled `SdkError::ResponseError`, no code;
//!   the SDK's default retry policy would retry it).
//! - SubscribeToShard works over plain HTTP on both. ferrokinesis sends an event every ~200 ms
//!   (empty ones too) and its consumer becomes ACTIVE after a fixed 500 ms. kinesis-local sends
//!   no initial-response, so `send()` returns only with the first event, ~1 s later; events come
//!   every ~1 s; its subscription outlives a dropped receiver (a second SubscribeToShard for the
//!   same consumer and shard gets ResourceInUseException as an error in the event stream).
//! - ExpiredIteratorException: ferrokinesis with `iterator_ttl_seconds: 1` gives the modelled
//!   error (`is_expired_iterator_exception()`) about 1 s after GetShardIterator. kinesis-local's
//!   TTL is a fixed 5 minutes: not tested.

use crate::common::emulator::{self, Emulator, EmulatorKind};

use std::time::Duration;

use anyhow::{Context, ensure};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::{
    ConsumerStatus, Shard, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};

/// kinesis-local's EndingSequenceNumber for every closed shard.
const KINESIS_LOCAL_ENDING_SEQUENCE: &str = "9223372036854775807";

#[tokio::test]
async fn ferrokinesis_harness() -> anyhow::Result<()> {
    exercise(&emulator::ferrokinesis().await).await
}

#[tokio::test]
async fn kinesis_local_harness() -> anyhow::Result<()> {
    exercise(&emulator::kinesis_local().await?).await
}

/// The emulator chosen by OPTOUT_TEST_EMULATOR answers and its env() names it.
#[tokio::test]
async fn from_env_emulator_answers() -> anyhow::Result<()> {
    let emulator = emulator::from_env().await;
    let env = emulator.env();
    ensure!(env.contains(&("AWS_ENDPOINT_URL".into(), emulator.endpoint.clone())));
    ensure!(env.contains(&("AWS_REGION".into(), "us-east-1".into())));
    let client = emulator.client().await;
    let stream = emulator::unique_stream("from-env");
    emulator::create_stream(&client, &stream, 1).await?;
    ensure!(emulator::list_shards(&client, &stream).await.len() == 1);
    Ok(())
}

#[tokio::test]
async fn ferrokinesis_expired_iterator() -> anyhow::Result<()> {
    let options = ferrokinesis::store::StoreOptions {
        iterator_ttl_seconds: 1,
        ..emulator::ferrokinesis_options()
    };
    let emulator = emulator::ferrokinesis_with(options).await;
    let client = &emulator.client().await;
    let stream = &emulator::unique_stream("expiry");
    emulator::create_stream(client, stream, 1).await?;
    let iterator = &trim_horizon(client, stream, "shardId-000000000000").await?;
    let error = emulator::poll(
        "the iterator to expire",
        Duration::from_secs(10),
        || async move {
            Ok(client
                .get_records()
                .shard_iterator(iterator)
                .send()
                .await
                .err())
        },
    )
    .await?;
    ensure!(
        error.code() == Some("ExpiredIteratorException"),
        "{error:?}"
    );
    ensure!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_expired_iterator_exception())
    );
    Ok(())
}

async fn exercise(emulator: &Emulator) -> anyhow::Result<()> {
    let client = &emulator.client().await;
    let kind = emulator.kind;
    put_and_read_back(client)
        .await
        .context("put and read back")?;
    resharding(client, kind).await.context("resharding")?;
    list_shards_by_arn(client, kind)
        .await
        .context("ListShards by ARN")?;
    errors(client, kind).await.context("errors")?;
    subscribe(client).await.context("SubscribeToShard")?;
    Ok(())
}

/// 2 shards, 20 records by partition key and 3 aimed at shard 1: read_all returns each once.
async fn put_and_read_back(client: &Client) -> anyhow::Result<()> {
    let stream = &emulator::unique_stream("put-read");
    emulator::create_stream(client, stream, 2).await?;
    let empty = read_pages(client, stream, "shardId-000000000000", Until::Empty).await?;
    ensure!(empty.len() == 1 && empty[0].records.is_empty(), "{empty:?}");
    ensure!(
        empty[0].next && empty[0].millis_behind == Some(0),
        "{empty:?}"
    );
    ensure!(empty[0].children.is_empty(), "{empty:?}");

    let mut records = numbered("key", "record", 20);
    let mut placed = emulator::put_records(client, stream, &records).await?;
    ensure!(placed.iter().any(|(s, _)| s == "shardId-000000000000"));
    ensure!(placed.iter().any(|(s, _)| s == "shardId-000000000001"));
    let aimed = numbered("aimed", "aimed", 3);
    placed.extend(emulator::put_to_shard(client, stream, "shardId-000000000001", &aimed).await?);
    records.extend(aimed);

    let mut expected: Vec<(String, String, Vec<u8>)> = placed
        .into_iter()
        .zip(records)
        .map(|((shard, seq), (_, data))| (shard, seq, data))
        .collect();
    let mut read = emulator::read_all(client, stream).await;
    expected.sort();
    read.sort();
    ensure!(read == expected, "read {read:?}\nexpected {expected:?}");
    Ok(())
}

/// 3 shards: split 0, merge 1 and 2; lineage, closed parents, drained parents, read_all.
async fn resharding(client: &Client, kind: EmulatorKind) -> anyhow::Result<()> {
    let stream = &emulator::unique_stream("reshard");
    emulator::create_stream(client, stream, 3).await?;
    let [s0, s1, s2] = ["0", "1", "2"].map(|n| format!("shardId-00000000000{n}"));
    let before = emulator::list_shards(client, stream).await;
    let parents = emulator::put_to_shard(client, stream, &s0, &numbered("p", "parent", 3)).await?;
    emulator::put_to_shard(client, stream, &s1, &numbered("q", "one", 1)).await?;

    let [low, high] = emulator::split_shard(client, stream, &s0).await?;
    let merged = emulator::merge_shards(client, stream, &s1, &s2).await?;
    ensure!(
        [&low, &high, &merged]
            == [
                "shardId-000000000003",
                "shardId-000000000004",
                "shardId-000000000005"
            ]
    );

    let shards = emulator::list_shards(client, stream).await;
    ensure!(shards.len() == 6, "{shards:?}");
    check_split_lineage(&shards, &before, &s0, [&low, &high])?;
    check_merge_lineage(&shards, &before, [&s1, &s2], &merged)?;
    for parent in [&s0, &s1, &s2] {
        check_closed(
            shard(&shards, parent)?,
            kind,
            &parents.last().expect("3 records").1,
        )?;
    }

    check_drained_parent(client, kind, stream, &s0, 3, &[&low, &high]).await?;
    check_drained_parent(client, kind, stream, &s2, 0, &[&merged]).await?;

    for child in [&low, &high, &merged] {
        emulator::put_to_shard(client, stream, child, &numbered(child, "child", 1)).await?;
    }
    let all = emulator::read_all(client, stream).await;
    let count = |id: &str| all.iter().filter(|(s, _, _)| s == id).count();
    let counts = [&s0, &s1, &s2, &low, &high, &merged].map(|id| count(id));
    ensure!(counts == [3, 1, 0, 1, 1, 1], "records per shard {counts:?}");
    Ok(())
}

fn check_split_lineage(
    shards: &[Shard],
    before: &[Shard],
    parent: &str,
    [low, high]: [&str; 2],
) -> anyhow::Result<()> {
    let (low, high) = (shard(shards, low)?, shard(shards, high)?);
    for child in [low, high] {
        ensure!(child.parent_shard_id() == Some(parent), "{child:?}");
        ensure!(child.adjacent_parent_shard_id().is_none(), "{child:?}");
        ensure!(!emulator::is_closed(child), "{child:?}");
    }
    let (start, end) = range(shard(before, parent)?);
    ensure!(
        range(low).0 == start && range(high).1 == end,
        "{low:?} {high:?}"
    );
    ensure!(
        range(low).1 + 1 == range(high).0,
        "children not adjacent: {low:?} {high:?}"
    );
    Ok(())
}

fn check_merge_lineage(
    shards: &[Shard],
    before: &[Shard],
    [a, b]: [&str; 2],
    merged: &str,
) -> anyhow::Result<()> {
    let child = shard(shards, merged)?;
    ensure!(child.parent_shard_id() == Some(a), "{child:?}");
    ensure!(child.adjacent_parent_shard_id() == Some(b), "{child:?}");
    ensure!(!emulator::is_closed(child), "{child:?}");
    let span = (range(shard(before, a)?).0, range(shard(before, b)?).1);
    ensure!(range(child) == span, "{child:?}");
    Ok(())
}

/// A closed parent has an EndingSequenceNumber: after its last record on ferrokinesis, always
/// i64::MAX on kinesis-local.
fn check_closed(parent: &Shard, kind: EmulatorKind, last_put: &str) -> anyhow::Result<()> {
    let ending = parent
        .sequence_number_range()
        .and_then(|r| r.ending_sequence_number())
        .with_context(|| format!("closed parent without EndingSequenceNumber: {parent:?}"))?;
    match kind {
        EmulatorKind::Ferrokinesis => ensure!(seq_key(ending) > seq_key(last_put), "{parent:?}"),
        EmulatorKind::KinesisLocal => {
            ensure!(ending == KINESIS_LOCAL_ENDING_SEQUENCE, "{parent:?}")
        }
    }
    Ok(())
}

/// Reads a closed parent from TRIM_HORIZON to its end and pins how each emulator says "end".
async fn check_drained_parent(
    client: &Client,
    kind: EmulatorKind,
    stream: &str,
    parent: &str,
    records: usize,
    children: &[&str],
) -> anyhow::Result<()> {
    let pages = read_pages(client, stream, parent, Until::End).await?;
    let last = pages.last().context("no page")?;
    ensure!(
        !last.next,
        "the last page has a NextShardIterator: {pages:?}"
    );
    let total: usize = pages.iter().map(|p| p.records.len()).sum();
    ensure!(total == records, "{pages:?}");
    match kind {
        EmulatorKind::Ferrokinesis => {
            // [records…, NextShardIterator] then [no records, no NextShardIterator].
            ensure!(pages.len() == 2 && pages[0].next, "{pages:?}");
            ensure!(
                last.records.is_empty() && last.children.is_empty(),
                "{pages:?}"
            );
            ensure!(last.millis_behind.is_some(), "{pages:?}");
        }
        EmulatorKind::KinesisLocal => {
            // One page: [records…, no NextShardIterator, ChildShards, MillisBehindLatest 0].
            ensure!(
                pages.len() == 1 && last.millis_behind == Some(0),
                "{pages:?}"
            );
            ensure!(last.children == children, "{pages:?}");
        }
    }
    Ok(())
}

async fn list_shards_by_arn(client: &Client, kind: EmulatorKind) -> anyhow::Result<()> {
    let stream = &emulator::unique_stream("by-arn");
    emulator::create_stream(client, stream, 1).await?;
    let arn = emulator::stream_arn(client, stream).await?;
    let result = client.list_shards().stream_arn(&arn).send().await;
    match kind {
        EmulatorKind::Ferrokinesis => {
            let error = result.expect_err("ferrokinesis now accepts StreamARN");
            ensure!(
                error.code() == Some("InvalidArgumentException"),
                "{error:?}"
            );
        }
        EmulatorKind::KinesisLocal => ensure!(result?.shards().len() == 1),
    }
    Ok(())
}

async fn errors(client: &Client, kind: EmulatorKind) -> anyhow::Result<()> {
    let missing = "no-such-stream";
    let error = client
        .list_shards()
        .stream_name(missing)
        .send()
        .await
        .unwrap_err();
    ensure!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception())
    );
    ensure!(
        error.code() == Some("ResourceNotFoundException"),
        "{error:?}"
    );
    let error = client
        .get_shard_iterator()
        .stream_name(missing)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_err();
    ensure!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception())
    );
    let error = client
        .describe_stream_summary()
        .stream_name(missing)
        .send()
        .await
        .unwrap_err();
    ensure!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception())
    );

    let error = client
        .get_records()
        .shard_iterator("garbage")
        .send()
        .await
        .unwrap_err();
    match kind {
        EmulatorKind::Ferrokinesis => {
            ensure!(
                error.code() == Some("InvalidArgumentException"),
                "{error:?}"
            )
        }
        EmulatorKind::KinesisLocal => {
            let status = error.raw_response().map(|r| r.status().as_u16());
            ensure!(matches!(error, SdkError::ResponseError(_)), "{error:?}");
            ensure!(status == Some(500) && error.code().is_none(), "{error:?}");
        }
    }
    Ok(())
}

/// RegisterStreamConsumer + SubscribeToShard from TRIM_HORIZON delivers 3 records.
async fn subscribe(client: &Client) -> anyhow::Result<()> {
    let stream = &emulator::unique_stream("subscribe");
    emulator::create_stream(client, stream, 1).await?;
    let records = numbered("key", "fan-out", 3);
    emulator::put_records(client, stream, &records).await?;
    let arn = emulator::stream_arn(client, stream).await?;
    let registered = client
        .register_stream_consumer()
        .stream_arn(&arn)
        .consumer_name("optout-test")
        .send()
        .await?;
    let consumer = &registered
        .consumer()
        .context("no consumer")?
        .consumer_arn()
        .to_string();
    emulator::wait_for(
        "the consumer to be ACTIVE",
        Duration::from_secs(10),
        || async move {
            let described = client
                .describe_stream_consumer()
                .consumer_arn(consumer)
                .send()
                .await;
            described.ok().and_then(|d| {
                d.consumer_description()
                    .map(|c| c.consumer_status().clone())
            }) == Some(ConsumerStatus::Active)
        },
    )
    .await?;

    let position = StartingPosition::builder()
        .r#type(ShardIteratorType::TrimHorizon)
        .build()?;
    let mut output = client
        .subscribe_to_shard()
        .consumer_arn(consumer)
        .shard_id("shardId-000000000000")
        .starting_position(position)
        .send()
        .await?;
    let mut received: Vec<Vec<u8>> = Vec::new();
    let delivery = async {
        while received.len() < records.len() {
            match output.event_stream.recv().await? {
                Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)) => {
                    received.extend(event.records().iter().map(|r| r.data().as_ref().to_vec()))
                }
                Some(other) => anyhow::bail!("unexpected event {other:?}"),
                None => anyhow::bail!("the event stream ended"),
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(20), delivery)
        .await
        .context("no 3 records within 20 s")??;
    let sent: Vec<Vec<u8>> = records.into_iter().map(|(_, data)| data).collect();
    ensure!(received == sent, "{received:?}");
    Ok(())
}

/// One GetRecords response, reduced to what the assertions look at.
#[derive(Debug)]
struct Page {
    records: Vec<String>,
    next: bool,
    millis_behind: Option<i64>,
    children: Vec<String>,
}

/// Where [`read_pages`] stops.
#[derive(Clone, Copy, PartialEq)]
enum Until {
    /// The first page without records (caught up on an open shard).
    Empty,
    /// The first page without NextShardIterator (the end of a closed shard).
    End,
}

/// GetRecords pages of a shard from TRIM_HORIZON until `until`.
async fn read_pages(
    client: &Client,
    stream: &str,
    shard_id: &str,
    until: Until,
) -> anyhow::Result<Vec<Page>> {
    let mut iterator = Some(trim_horizon(client, stream, shard_id).await?);
    let mut pages = Vec::new();
    while let Some(current) = iterator {
        ensure!(pages.len() < 20, "{shard_id} never ends: {pages:?}");
        let output = client.get_records().shard_iterator(current).send().await?;
        iterator = output.next_shard_iterator().map(str::to_string);
        let page = Page {
            records: output
                .records()
                .iter()
                .map(|r| r.sequence_number().to_string())
                .collect(),
            next: iterator.is_some(),
            millis_behind: output.millis_behind_latest(),
            children: output
                .child_shards()
                .iter()
                .map(|c| c.shard_id().to_string())
                .collect(),
        };
        let stop = until == Until::Empty && page.records.is_empty();
        pages.push(page);
        if stop {
            break;
        }
    }
    Ok(pages)
}

async fn trim_horizon(client: &Client, stream: &str, shard_id: &str) -> anyhow::Result<String> {
    let output = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await?;
    output
        .shard_iterator()
        .map(str::to_string)
        .context("no ShardIterator")
}

fn shard<'a>(shards: &'a [Shard], id: &str) -> anyhow::Result<&'a Shard> {
    shards
        .iter()
        .find(|s| s.shard_id() == id)
        .with_context(|| format!("no {id} in {shards:?}"))
}

fn range(shard: &Shard) -> (u128, u128) {
    let range = shard.hash_key_range().expect("hash key range");
    let parse = |key: &str| key.parse::<u128>().expect("decimal hash key");
    (
        parse(range.starting_hash_key()),
        parse(range.ending_hash_key()),
    )
}

/// Sequence numbers are decimal strings longer than u128: order by length, then digits.
fn seq_key(seq: &str) -> (usize, &str) {
    (seq.len(), seq)
}

/// `n` records `(prefix-i, body-i)`.
fn numbered(prefix: &str, body: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| (format!("{prefix}-{i}"), format!("{body}-{i}").into_bytes()))
        .collect()
}
