//! The records the engine hands to the processor: views into one batch's buffers, whatever
//! the transport. Polling reads a `GetRecords` answer into three buffers (decoded data,
//! sequence numbers and partition keys, and their offsets) rather than the SDK's one `Record`
//! with three heap allocations each; fan-out's events are viewed as they are.

use aws_sdk_kinesis::types::Record as SdkRecord;

use super::budget::record_cost;

/// One Kinesis record, borrowed from the batch that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its sequence number (decimal digits; ordered within a shard).
    pub sequence_number: &'a str,
    /// Its partition key (empty if the server sent none).
    pub partition_key: &'a str,
    /// Its data blob, base64-decoded.
    pub data: &'a [u8],
}

impl<'a> Record<'a> {
    /// A view of one of the SDK's records (fan-out events, and the SDK's reading of a
    /// `GetRecords` answer the engine's own reader declined).
    pub fn from_sdk(r: &'a SdkRecord) -> Self {
        Record {
            sequence_number: r.sequence_number(),
            partition_key: r.partition_key().unwrap_or_default(),
            data: r.data().as_ref(),
        }
    }
}

/// What `records` cost the in-flight budget once decoded.
pub fn records_cost(records: &[Record<'_>]) -> u64 {
    records
        .iter()
        .map(|r| record_cost(r.data.len(), r.sequence_number.len(), r.partition_key.len()) as u64)
        .sum()
}

/// The record data an answer brought, as AWS counts it against the shard's read limit.
pub fn data_bytes(records: &[Record<'_>]) -> u64 {
    records.iter().map(|r| r.data.len() as u64).sum()
}

/// One record's place in a [`Batch`]'s buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// Sequence number, then partition key, in [`Batch::text`]: `text[seq_start..pk_start]`
    /// and `text[pk_start..end]`.
    pub(crate) seq_start: u32,
    pub(crate) pk_start: u32,
    pub(crate) end: u32,
    /// Data in [`Batch::data`].
    pub(crate) data_start: u32,
    pub(crate) data_end: u32,
}

/// One `GetRecords` answer, held in three buffers whatever its number of records.
#[derive(Debug, Default)]
pub struct Batch {
    /// Every record's data, decoded, one after another.
    pub(crate) data: Vec<u8>,
    /// Every record's sequence number and partition key, one after another.
    pub(crate) text: String,
    pub(crate) entries: Vec<Entry>,
    /// Where the next call reads from; `None` once a closed shard is read to its end.
    pub next_shard_iterator: Option<String>,
    /// How far behind the tip the answer was.
    pub millis_behind_latest: Option<i64>,
}

impl Batch {
    /// The records, in the order the answer gave them.
    pub fn records(&self) -> Vec<Record<'_>> {
        self.entries
            .iter()
            .map(|e| Record {
                sequence_number: &self.text[e.seq_start as usize..e.pk_start as usize],
                partition_key: &self.text[e.pk_start as usize..e.end as usize],
                data: &self.data[e.data_start as usize..e.data_end as usize],
            })
            .collect()
    }

    /// The batch built from the SDK's reading of an answer: a copy, taken only when the
    /// engine's reader declined the answer's shape (see [`crate::get_records`]).
    pub fn from_sdk(out: &aws_sdk_kinesis::operation::get_records::GetRecordsOutput) -> Self {
        let mut batch = Batch {
            next_shard_iterator: out.next_shard_iterator().map(str::to_string),
            millis_behind_latest: out.millis_behind_latest(),
            ..Batch::default()
        };
        for r in out.records().iter().map(Record::from_sdk) {
            batch.push(r);
        }
        batch
    }

    fn push(&mut self, r: Record<'_>) {
        let seq_start = self.text.len() as u32;
        self.text.push_str(r.sequence_number);
        let pk_start = self.text.len() as u32;
        self.text.push_str(r.partition_key);
        let data_start = self.data.len() as u32;
        self.data.extend_from_slice(r.data);
        self.entries.push(Entry {
            seq_start,
            pk_start,
            end: self.text.len() as u32,
            data_start,
            data_end: self.data.len() as u32,
        });
    }
}
