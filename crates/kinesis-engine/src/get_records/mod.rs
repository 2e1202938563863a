//! `GetRecords` through the SDK, but read by the engine: the SDK still resolves the endpoint and
//! the credentials, signs, sends and classifies errors; only a successful answer's body is read
//! here, straight into a [`Batch`] (see [`json`]).
//!
//! Why: the SDK's deserializer was the largest cost of a drain. It builds a `Record` per record
//! (two strings and a blob, each its own allocation) from a generic JSON token stream, then
//! the body and every record are held at once until the batch commits. Here one pass decodes
//! the answer into three buffers, and the body is dropped before the batch is handed on.
//!
//! How: a per-call interceptor, before the call is sent, puts the engine's response
//! deserializer on top of the call's configuration. On a success it reads the body into the
//! call's [`Slot`] and gives the SDK an output without records; on an error status, or when
//! [`json::parse`] declines the body's shape, it hands the response to the SDK's own
//! `GetRecords` deserializer, which reads it as always.

pub mod json;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use aws_sdk_kinesis::operation::get_records::{GetRecords, GetRecordsOutput};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, Error, Output,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin;
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use aws_smithy_types::config_bag::{ConfigBag, FrozenLayer};
use tracing::debug;

use crate::records::Batch;

/// Successful answers the SDK's deserializer read since the process started.
static READ_BY_SDK: AtomicU64 = AtomicU64::new(0);

/// How many successful `GetRecords` answers the SDK's deserializer read rather than the
/// engine's reader, since the process started: 0 on Kinesis and on the emulators the tests
/// run; anything else means a shape the reader does not know, read correctly but more slowly.
pub fn answers_read_by_sdk() -> u64 {
    READ_BY_SDK.load(Ordering::Relaxed)
}

/// Where one call's batch lands when the engine reads it.
#[derive(Clone, Default, Debug)]
pub struct Slot(Arc<Mutex<Option<Batch>>>);

impl Slot {
    /// The batch the engine read, or else the SDK's output copied into one (the engine
    /// declined the answer; `true` then, for the reader's metric).
    pub fn take(&self, out: &GetRecordsOutput) -> (Batch, bool) {
        let read = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match read {
            Some(batch) => (batch, false),
            None => {
                READ_BY_SDK.fetch_add(1, Ordering::Relaxed);
                (Batch::from_sdk(out), true)
            }
        }
    }

    fn put(&self, batch: Batch) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(batch);
    }
}

/// The per-call interceptor that installs the engine's reader for one `GetRecords` call.
#[derive(Debug)]
pub struct ReadRaw {
    slot: Slot,
}

impl ReadRaw {
    /// Reads the call's answer into `slot`.
    pub fn new(slot: Slot) -> Self {
        ReadRaw { slot }
    }
}

impl Intercept for ReadRaw {
    fn name(&self) -> &'static str {
        "kinesis_engine::ReadRaw"
    }

    // Once per call, before any attempt (so once, whatever the retries): the reader goes on
    // top of the operation's configuration, where the orchestrator looks for it.
    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(SharedResponseDeserializer::new(Reader {
                slot: self.slot.clone(),
            }));
        Ok(())
    }
}

/// The SDK's own configuration of `GetRecords`, for its response deserializer (which the bag
/// holds by reference only): built once.
fn sdk_operation() -> &'static FrozenLayer {
    static LAYER: LazyLock<FrozenLayer> = LazyLock::new(|| {
        GetRecords::new()
            .config()
            .expect("the SDK configures GetRecords with a layer")
    });
    &LAYER
}

/// The SDK's deserializer for `GetRecords`.
fn sdk_deserializer() -> &'static SharedResponseDeserializer {
    sdk_operation()
        .load::<SharedResponseDeserializer>()
        .expect("the SDK's GetRecords layer holds its deserializer")
}

/// The SDK's deserializer for `GetRecords`, with the engine's reader in front of it.
#[derive(Debug)]
struct Reader {
    slot: Slot,
}

impl DeserializeResponse for Reader {
    fn deserialize_streaming_with_config(
        &self,
        response: &mut HttpResponse,
        cfg: &ConfigBag,
    ) -> Option<Result<Output, OrchestratorError<Error>>> {
        sdk_deserializer().deserialize_streaming_with_config(response, cfg)
    }

    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<Error>> {
        if response.status().is_success()
            && let Some(body) = response.body().bytes()
        {
            match json::parse(body) {
                Ok(batch) => {
                    // `records` is the one required field: set, so building cannot fail.
                    let out = GetRecordsOutput::builder()
                        .set_records(Some(Vec::new()))
                        .set_next_shard_iterator(batch.next_shard_iterator.clone())
                        .set_millis_behind_latest(batch.millis_behind_latest)
                        .build()
                        .map_err(OrchestratorError::other)?;
                    self.slot.put(batch);
                    return Ok(Output::erase(out));
                }
                Err(declined) => {
                    debug!(
                        at = declined.at,
                        expected = declined.reason,
                        "GetRecords answer left to the SDK's deserializer."
                    );
                }
            }
        }
        sdk_deserializer().deserialize_nonstreaming_with_config(response, cfg)
    }
}

/// A successful answer with `body`, and the configuration the client would give its
/// deserializer (Kinesis speaks AWS JSON 1.1).
#[cfg(test)]
fn test_answer(body: &[u8]) -> (ConfigBag, HttpResponse) {
    use aws_smithy_json::protocol::aws_json_rpc::AwsJsonRpcProtocol;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_schema::protocol::SharedClientProtocol;
    use aws_smithy_types::body::SdkBody;

    let mut cfg = ConfigBag::base();
    cfg.push_shared_layer(sdk_operation().clone());
    cfg.interceptor_state().store_put(SharedClientProtocol::new(
        AwsJsonRpcProtocol::aws_json_1_1().with_default_namespace("com.amazonaws.kinesis"),
    ));
    let status = StatusCode::try_from(200).unwrap();
    (cfg, HttpResponse::new(status, SdkBody::from(body.to_vec())))
}

/// The SDK's own reading of a successful `GetRecords` body (tests compare the two readers).
#[cfg(test)]
pub(crate) fn sdk_read(body: &[u8]) -> Result<GetRecordsOutput, String> {
    let (cfg, response) = test_answer(body);
    let out = sdk_deserializer()
        .deserialize_nonstreaming_with_config(&response, &cfg)
        .map_err(|e| format!("{e:?}"))?;
    out.downcast::<GetRecordsOutput>()
        .map_err(|e| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Record;

    /// What the engine's deserializer gives the SDK, and what the reader then takes.
    fn through_reader(body: &[u8]) -> (GetRecordsOutput, Batch, bool) {
        let (cfg, response) = test_answer(body);
        let slot = Slot::default();
        let reader = Reader { slot: slot.clone() };
        let out = reader
            .deserialize_nonstreaming_with_config(&response, &cfg)
            .unwrap()
            .downcast::<GetRecordsOutput>()
            .unwrap();
        let (batch, by_sdk) = slot.take(&out);
        (out, batch, by_sdk)
    }

    #[test]
    fn an_answer_it_knows_lands_in_the_slot_and_the_sdk_gets_no_records() {
        let body = br#"{"Records":[{"SequenceNumber":"7","Data":"aGk=","PartitionKey":"k"}],"NextShardIterator":"n","MillisBehindLatest":3}"#;
        let (out, batch, by_sdk) = through_reader(body);
        assert!(!by_sdk);
        assert!(out.records().is_empty());
        assert_eq!(out.next_shard_iterator(), Some("n"));
        assert_eq!(out.millis_behind_latest(), Some(3));
        let want = Record {
            sequence_number: "7",
            partition_key: "k",
            data: b"hi",
        };
        assert_eq!(batch.records(), [want]);
    }

    #[test]
    fn an_answer_it_declines_is_read_by_the_sdk_and_counted() {
        // An escaped quote in the partition key: the engine's reader keeps strings as they are
        // in the body, so it leaves this one to the SDK, which unescapes it.
        let body = br#"{"Records":[{"SequenceNumber":"7","Data":"aGk=","PartitionKey":"a\"b"}],"NextShardIterator":"n","MillisBehindLatest":3}"#;
        let before = answers_read_by_sdk();
        let (out, batch, by_sdk) = through_reader(body);
        assert!(by_sdk);
        assert_eq!(out.records().len(), 1);
        let want = Record {
            sequence_number: "7",
            partition_key: "a\"b",
            data: b"hi",
        };
        assert_eq!(batch.records(), [want]);
        assert_eq!(batch.next_shard_iterator.as_deref(), Some("n"));
        assert!(answers_read_by_sdk() > before);
    }
}
