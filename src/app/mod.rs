//! The composition root: one function per command, each building the stages it needs from
//! settings and wiring them together.
//!
//! The CLI parses flags into the settings of [`settings`] and calls one function here per
//! command: [`run`] (the Kinesis way in, with the HTTP server beside it), [`serve`], [`replay`]
//! (the archive way in), [`resync`], [`retry_dead_letters`], [`migrate`], [`export`] (the query commands), [`shard_table`] and
//! [`produce`]. This is the only module that knows every stage, so that the engine, the
//! decoder and the store each stay ignorant of the others; data runs one way through it: ways
//! in → pipeline → store → ways out.

mod api_runtime;
mod aws;
mod changes;
mod deliver;
pub mod metrics;
mod produce;
pub mod progress;
mod query;
mod replay;
mod resync;
mod retry;
mod run;
mod serve;
mod settings;
mod shards;
mod store;
mod upkeep;

pub use changes::{ChangesSettings, changes};
pub use deliver::{DeliverySettings, TWILIO_API_URL};
pub use produce::{ProduceSettings, Produced, produce};
pub use progress::{NoProgress, Progress};
pub use query::{dead_letter, export};
pub use replay::{ReplaySettings, ReplayedFile, replay};
pub use resync::{ResyncSettings, resync};
pub use retry::{RetriedRow, RetryRequest, RetrySettings, RetrySummary, retry_dead_letters};
pub use run::{RunSettings, run};
pub use serve::{ServeSettings, http_app, http_app_with, serve};
pub use settings::{AwsSettings, ConsumerSettings, DecodeSettings, HttpSettings, WebhookSettings};
pub use shards::{ShardRow, shard_table};
pub use store::migrate;

/// The vocabulary the CLI speaks to the application, chosen here so that it needs no other
/// module: where shards start, the log format, what a query command asks for, and the
/// values it filters on.
pub mod vocabulary {
    pub use crate::deliver::{ConsentMode, TwilioEnv};
    pub use crate::event::{Detection, OptOutType};
    pub use crate::store::IngestPath;
    pub use crate::store::query::{
        AsOfFilter, DeadLetterFilter, DeliveryFilter, HistoryFilter, Listing, TestEventFilter,
        feed_json,
    };
    pub use crate::store::{EventFilter, RevocationFilter, RevocationScope, StatusFilter};
    pub use crate::telemetry::LogFormat;
    pub use kinesis_engine::InitialPosition;
}

use crate::store::StoreError;
use kinesis_engine::KinesisError;

/// Why a command of the application failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A setting is wrong; the message says which and what to do.
    #[error("{0}")]
    Usage(String),
    /// The store could not be opened (or migrated): the cause, against the redacted URL.
    #[error("{0}")]
    Open(String),
    /// The store failed while in use.
    #[error("store: {0}")]
    Store(StoreError),
    /// A Kinesis call failed (outside the consumer engine).
    #[error("{0}")]
    Aws(String),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// The consumer engine stopped with an error. The engine speaks of its settings; when one
    /// of them is the likely cause, the message adds the flags that set it.
    #[error("{0}{hint}", hint = flags_to_check(.0))]
    Engine(#[from] KinesisError),
    /// An input could not be read, or a replay could not store what it read.
    #[error("{0}")]
    Replay(String),
}

/// The flags behind the engine settings an error names, in optout's terms.
fn flags_to_check(e: &KinesisError) -> &'static str {
    match e {
        KinesisError::StreamNotFound { .. } => " (--stream, --region, --endpoint-url)",
        _ => "",
    }
}

impl AppError {
    /// Whether the user must change what they asked for (exit 2) rather than an operator fix
    /// something at run time (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            AppError::Usage(_) | AppError::Engine(KinesisError::StreamNotFound { .. })
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_stream_names_the_flags_to_check() {
        let e = AppError::from(KinesisError::StreamNotFound {
            stream: "orders".into(),
        });
        assert_eq!(
            e.to_string(),
            "stream `orders` not found: check the stream name, region, endpoint and AWS account \
             (--stream, --region, --endpoint-url)"
        );
        let e = AppError::from(KinesisError::Aws {
            operation: "ListShards",
            message: "denied".into(),
        });
        assert_eq!(e.to_string(), "ListShards failed: denied");
    }
}
