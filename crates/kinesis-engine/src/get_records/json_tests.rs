//! The fast `GetRecords` reader against the SDK's own deserializer: every body it accepts, it
//! reads as the SDK does; every body it declines, the SDK still reads.

use super::*;
use crate::records::Record;

fn b64(data: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(data)
}

fn body(records: &[(&str, &str, &[u8])], next: Option<&str>, behind: i64) -> String {
    let records: Vec<String> = records
        .iter()
        .map(|(seq, pk, data)| {
            format!(
                r#"{{"SequenceNumber":"{seq}","ApproximateArrivalTimestamp":1.733408123456E9,"Data":"{}","PartitionKey":"{pk}","EncryptionType":"NONE"}}"#,
                b64(data)
            )
        })
        .collect();
    let next = next.map_or("null".to_string(), |n| format!("\"{n}\""));
    format!(
        r#"{{"Records":[{}],"NextShardIterator":{next},"MillisBehindLatest":{behind},"ChildShards":[{{"ShardId":"shardId-000000000001","ParentShards":["shardId-000000000000"],"HashKeyRange":{{"StartingHashKey":"0","EndingHashKey":"1"}}}}]}}"#,
        records.join(",")
    )
}

fn owned(records: Vec<Record<'_>>) -> Vec<(String, String, Vec<u8>)> {
    records
        .into_iter()
        .map(|r| {
            (
                r.sequence_number.to_string(),
                r.partition_key.to_string(),
                r.data.to_vec(),
            )
        })
        .collect()
}

#[test]
fn reads_records_iterator_and_lag() {
    let payload: Vec<u8> = (0..=255).collect();
    let text = body(
        &[
            (
                "49590338271490256608559692538361571095921575989136588898",
                "+1555",
                b"{\"a\":1}",
            ),
            (
                "49590338271490256608559692538361571095921575989136588899",
                "",
                &payload,
            ),
            (
                "49590338271490256608559692538361571095921575989136588900",
                "k\u{e9}y",
                b"",
            ),
        ],
        Some("AAAAAAAAAAE/x+y=="),
        1234,
    );
    let batch = parse(text.as_bytes()).unwrap();
    assert_eq!(batch.entries.len(), 3);
    assert_eq!(
        batch.next_shard_iterator.as_deref(),
        Some("AAAAAAAAAAE/x+y==")
    );
    assert_eq!(batch.millis_behind_latest, Some(1234));
    let got = owned(batch.records());
    assert_eq!(got[0].1, "+1555");
    assert_eq!(got[0].2, b"{\"a\":1}");
    assert_eq!(got[1].2, payload);
    assert_eq!(got[2].1, "k\u{e9}y");
    assert!(got[2].2.is_empty());
    // One buffer for all the data, within the 3/4 of the body it was sized to.
    assert_eq!(batch.data.len(), 7 + 256);
    assert!(batch.data.capacity() <= text.len() / 4 * 3 + 3);
}

#[test]
fn agrees_with_the_sdk_deserializer() {
    use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
    let data: Vec<Vec<u8>> = (0..50)
        .map(|i| (0..(i * 37 % 300)).map(|j| (i * 7 + j) as u8).collect())
        .collect();
    let records: Vec<(String, String, &[u8])> = data
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("{}", 1000 + i), format!("pk-{i}"), d.as_slice()))
        .collect();
    let borrowed: Vec<(&str, &str, &[u8])> = records
        .iter()
        .map(|(s, p, d)| (s.as_str(), p.as_str(), *d))
        .collect();
    let text = body(&borrowed, Some("it-2"), 0);
    let ours = parse(text.as_bytes()).unwrap();
    let sdk: GetRecordsOutput = crate::get_records::sdk_read(text.as_bytes()).unwrap();
    assert_eq!(
        owned(ours.records()),
        owned(Batch::from_sdk(&sdk).records())
    );
    assert_eq!(
        ours.next_shard_iterator.as_deref(),
        sdk.next_shard_iterator()
    );
    assert_eq!(ours.millis_behind_latest, sdk.millis_behind_latest());
}

#[test]
fn the_end_of_a_closed_shard_and_an_empty_answer() {
    let batch = parse(body(&[], None, 0).as_bytes()).unwrap();
    assert!(batch.entries.is_empty());
    assert_eq!(batch.next_shard_iterator, None);
    let batch = parse(b"{ \"Records\" : [ ] , \"NextShardIterator\" : \"x\" }").unwrap();
    assert_eq!(batch.next_shard_iterator.as_deref(), Some("x"));
    assert_eq!(batch.millis_behind_latest, None);
    assert!(parse(b"{}").unwrap().entries.is_empty());
}

#[test]
fn unknown_fields_of_any_shape_are_skipped() {
    let text = format!(
        r#"{{"Future":{{"a":[1,-2.5e3,true,null,"x\"y\\",{{"b\"":[]}}]}},"Records":[{{"SequenceNumber":"1","Data":"{}","New":[{{}}]}}],"NextShardIterator":"i"}}"#,
        b64(b"hi")
    );
    let batch = parse(text.as_bytes()).unwrap();
    assert_eq!(
        owned(batch.records()),
        [("1".into(), String::new(), b"hi".to_vec())]
    );
}

#[test]
fn what_it_cannot_read_is_declined_not_misread() {
    let cases: [(&str, &str); 9] = [
        (r#"{"Records":[],"Records":[]}"#, "one `Records`"),
        (
            r#"{"Records":[{"SequenceNumber":"1","Data":"aGk=","PartitionKey":"a\"b"}]}"#,
            "a string without escapes",
        ),
        (
            r#"{"Records":[{"SequenceNumber":"1","Data":"aGk"}]}"#,
            "base64 data",
        ),
        (
            r#"{"Records":[{"SequenceNumber":"1","Data":"a!k="}]}"#,
            "base64 data",
        ),
        (
            r#"{"Records":[{"Data":"aGk="}]}"#,
            "a record with SequenceNumber and Data",
        ),
        (
            r#"{"Records":[{"SequenceNumber":1,"Data":"aGk="}]}"#,
            "a string",
        ),
        (r#"{"Records":[],"MillisBehindLatest":1.5}"#, "`}` or `,`"),
        (r#"{"Records":[]} x"#, "the end of the body"),
        (
            r#"{"Records":[{"SequenceNumber":"1","Data":"aGk="}"#,
            "`]` or `,`",
        ),
    ];
    for (text, reason) in cases {
        assert_eq!(parse(text.as_bytes()).unwrap_err().reason, reason, "{text}");
    }
    for cut in [
        &br#"{"X":"a\"#[..],
        br#"{"X":"#,
        br#"{"Records":[{"Data":"#,
        b"{",
    ] {
        assert!(parse(cut).is_err(), "{}", String::from_utf8_lossy(cut));
    }
    let deep = format!("{{\"X\":{}{}}}", "[".repeat(100), "]".repeat(100));
    assert_eq!(
        parse(deep.as_bytes()).unwrap_err().reason,
        "shallower nesting"
    );
}

#[test]
fn every_cut_of_an_answer_is_declined_without_a_panic() {
    let text = body(&[("1", "a", b"hello"), ("2", "b", b"world")], Some("n"), 5);
    let bytes = text.as_bytes();
    for len in 0..bytes.len() {
        assert!(parse(&bytes[..len]).is_err(), "{}", &text[..len]);
    }
    assert_eq!(parse(bytes).unwrap().entries.len(), 2);
}
