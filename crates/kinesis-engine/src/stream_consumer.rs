//! The registered stream consumer that enhanced fan-out reads as: described, registered if
//! missing (another worker registering it at the same moment is not an error), and waited for
//! until ACTIVE. The coordinator looks it up once at start, and again after a failed
//! subscription (it may have been deregistered).

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::SdkError;
use aws_sdk_kinesis::operation::describe_stream_consumer::DescribeStreamConsumerError;
use aws_sdk_kinesis::types::ConsumerStatus;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::KinesisError;
use super::backoff::{Backoff, ErrorClass, classify};
use super::shards::aws_message;

/// How long a consumer may stay CREATING (or DELETING, before it is registered again).
const CONSUMER_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);
/// Wait between `DescribeStreamConsumer` calls while the consumer is not ACTIVE yet.
const CONSUMER_POLL: Duration = Duration::from_millis(300);
/// Retry policy of the consumer registration (the engine's defaults).
const REGISTER_BACKOFF_BASE: Duration = Duration::from_millis(100);
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Registers the stream consumer `name` (or reuses it) and returns its ARN once ACTIVE;
/// `None` if cancelled first.
pub async fn ensure_consumer(
    client: &Client,
    stream: &str,
    name: &str,
    cancel: &CancellationToken,
) -> Result<Option<String>, KinesisError> {
    tokio::select! {
        _ = cancel.cancelled() => Ok(None),
        arn = active_consumer(client, stream, name) => arn.map(Some),
    }
}

/// What `DescribeStreamConsumer` says of the consumer.
enum Described {
    /// ACTIVE, with its ARN.
    Active(String),
    /// CREATING or DELETING.
    Pending(String),
    /// Not registered.
    Missing,
}

/// Describes the consumer, registers it if missing, and waits until it is ACTIVE, retrying
/// throttling and transient errors.
async fn active_consumer(
    client: &Client,
    stream: &str,
    name: &str,
) -> Result<String, KinesisError> {
    let mut backoff = Backoff::new(REGISTER_BACKOFF_BASE, REGISTER_BACKOFF_MAX);
    let stream_arn = stream_arn(client, stream, &mut backoff).await?;
    let mut waiting_since: Option<Instant> = None;
    loop {
        let delay = match describe_consumer(client, &stream_arn, name).await {
            Ok(Described::Active(arn)) => {
                info!(stream, consumer = name, consumer_arn = %arn, "Stream consumer is active; reading with enhanced fan-out.");
                return Ok(arn);
            }
            Ok(Described::Pending(status)) => {
                backoff.reset();
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() > CONSUMER_ACTIVE_TIMEOUT {
                    return Err(KinesisError::Aws {
                        operation: "DescribeStreamConsumer",
                        message: format!(
                            "stream consumer `{name}` is still {status} after {} s",
                            CONSUMER_ACTIVE_TIMEOUT.as_secs()
                        ),
                    });
                }
                debug!(consumer = name, status = %status, "Waiting for the stream consumer to become active.");
                CONSUMER_POLL
            }
            Ok(Described::Missing) => register(client, &stream_arn, name, &mut backoff).await?,
            Err(e) => retry_delay("DescribeStreamConsumer", classify(&e), &e, &mut backoff)?,
        };
        sleep(delay).await;
    }
}

/// The consumer's state; a missing consumer is not an error.
async fn describe_consumer(
    client: &Client,
    stream_arn: &str,
    name: &str,
) -> Result<Described, SdkError<DescribeStreamConsumerError, HttpResponse>> {
    let result = client
        .describe_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name(name)
        .send()
        .await;
    let out = match result {
        Ok(out) => out,
        Err(e) if classify(&e) == ErrorClass::NotFound => return Ok(Described::Missing),
        Err(e) => return Err(e),
    };
    Ok(match out.consumer_description() {
        Some(c) if *c.consumer_status() == ConsumerStatus::Active => {
            Described::Active(c.consumer_arn().to_string())
        }
        Some(c) => Described::Pending(c.consumer_status().as_str().to_string()),
        None => Described::Pending("not described".into()),
    })
}

/// The stream's ARN (consumers are addressed by it), retrying transient errors.
async fn stream_arn(
    client: &Client,
    stream: &str,
    backoff: &mut Backoff,
) -> Result<String, KinesisError> {
    loop {
        let result = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await;
        let delay = match result {
            Ok(out) => match out.stream_description_summary() {
                Some(s) => return Ok(s.stream_arn().to_string()),
                None => {
                    return Err(KinesisError::Aws {
                        operation: "DescribeStreamSummary",
                        message: format!("no summary returned for stream {stream}"),
                    });
                }
            },
            Err(e) if classify(&e) == ErrorClass::NotFound => {
                return Err(KinesisError::StreamNotFound {
                    stream: stream.to_string(),
                });
            }
            Err(e) => retry_delay("DescribeStreamSummary", classify(&e), &e, backoff)?,
        };
        sleep(delay).await;
    }
}

/// Registers the consumer; returns how long to wait before describing it again. Another
/// worker registering it at the same moment (`ResourceInUseException`) is not an error.
async fn register(
    client: &Client,
    stream_arn: &str,
    name: &str,
    backoff: &mut Backoff,
) -> Result<Duration, KinesisError> {
    let result = client
        .register_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name(name)
        .send()
        .await;
    match result {
        Ok(_) => {
            info!(
                consumer = name,
                stream_arn, "Registered the stream consumer."
            );
            Ok(CONSUMER_POLL)
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            debug!(consumer = name, error = %aws_message(&e), "Consumer registered elsewhere meanwhile (or the stream is updating); describing it again.");
            Ok(backoff.next_delay())
        }
        Err(e) => retry_delay("RegisterStreamConsumer", classify(&e), &e, backoff),
    }
}

/// The wait before retrying a retryable failure, or the error to stop with.
fn retry_delay<E: std::error::Error + 'static>(
    operation: &'static str,
    class: ErrorClass,
    err: &E,
    backoff: &mut Backoff,
) -> Result<Duration, KinesisError> {
    let message = aws_message(err);
    if !class.is_retryable() {
        return Err(KinesisError::Aws { operation, message });
    }
    warn!(operation, error = %message, attempt = backoff.attempts() + 1, "Stream consumer call failed; retrying.");
    Ok(backoff.next_delay())
}
