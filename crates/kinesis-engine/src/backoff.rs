//! Retry policy: which AWS errors are worth waiting out, and how long to wait.
//!
//! The SDK's own retries are switched off for the consumer's client, so this is the one policy:
//! exponential backoff with jitter on throttling and transient failures, a fresh iterator on
//! `ExpiredIteratorException`, and a clean stop on errors no wait can fix.

use std::time::Duration;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

/// What the consumer should do about a failed AWS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Over a rate limit (`ProvisionedThroughputExceeded`, `LimitExceeded`, KMS throttling):
    /// back off and try again.
    Throttled,
    /// The network or the service failed (timeouts, connection refused, 5xx): back off, retry.
    Transient,
    /// The shard iterator is older than 5 minutes: get a new one from the last checkpoint.
    ExpiredIterator,
    /// The stream or shard does not exist (any more).
    NotFound,
    /// Anything else (bad credentials, access denied, invalid argument): waiting will not help.
    Fatal,
}

impl ErrorClass {
    /// Whether the call may succeed if repeated after a pause.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Throttled | ErrorClass::Transient)
    }
}

/// Classifies any Kinesis operation's error by its kind and AWS error code.
pub fn classify<E, R>(err: &SdkError<E, R>) -> ErrorClass
where
    E: ProvideErrorMetadata,
    R: std::fmt::Debug,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ErrorClass::Transient
        }
        SdkError::ConstructionFailure(_) => ErrorClass::Fatal,
        _ => classify_code(err.code()),
    }
}

/// Classifies an AWS error code (the part of the rule that does not depend on the SDK types).
pub fn classify_code(code: Option<&str>) -> ErrorClass {
    match code {
        Some(
            "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException"
            | "Throttling"
            | "RequestLimitExceeded",
        ) => ErrorClass::Throttled,
        Some("ExpiredIteratorException") => ErrorClass::ExpiredIterator,
        Some("ResourceNotFoundException") => ErrorClass::NotFound,
        Some(
            "InternalFailureException"
            | "InternalFailure"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "ExpiredNextTokenException"
            | "ResourceInUseException",
        ) => ErrorClass::Transient,
        // No code at all: an unmodelled reply (an HTML 502 from a proxy, say); worth retrying.
        None => ErrorClass::Transient,
        Some(_) => ErrorClass::Fatal,
    }
}

/// Exponential backoff with "equal jitter": each wait is drawn from [d/2, d] where d doubles
/// from `base` up to `max`, so retries from many shards spread out but never spin.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff starting at `base` and never waiting longer than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// The next wait; grows until `max`.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ms = self.rng.u64(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Consecutive failures so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Called after a success: the next failure waits `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::operation::get_records::GetRecordsError;
    use aws_sdk_kinesis::types::error::{
        AccessDeniedException, ExpiredIteratorException, InternalFailureException,
        KmsThrottlingException, ProvisionedThroughputExceededException, ResourceNotFoundException,
    };
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(e: GetRecordsError, status: u16) -> SdkError<GetRecordsError, Response> {
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(e, raw)
    }

    fn meta(code: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message("test").build()
    }

    #[test]
    fn classifies_the_sdk_errors_of_get_records() {
        let throttled = GetRecordsError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("Rate exceeded for shard")
                .meta(meta("ProvisionedThroughputExceededException"))
                .build(),
        );
        assert_eq!(
            classify(&service_error(throttled, 400)),
            ErrorClass::Throttled
        );
        let kms = GetRecordsError::KmsThrottlingException(
            KmsThrottlingException::builder()
                .meta(meta("KMSThrottlingException"))
                .build(),
        );
        assert_eq!(classify(&service_error(kms, 400)), ErrorClass::Throttled);
        let expired = GetRecordsError::ExpiredIteratorException(
            ExpiredIteratorException::builder()
                .meta(meta("ExpiredIteratorException"))
                .build(),
        );
        assert_eq!(
            classify(&service_error(expired, 400)),
            ErrorClass::ExpiredIterator
        );
        let internal = GetRecordsError::InternalFailureException(
            InternalFailureException::builder()
                .meta(meta("InternalFailureException"))
                .build(),
        );
        assert_eq!(
            classify(&service_error(internal, 500)),
            ErrorClass::Transient
        );
        let gone = GetRecordsError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .meta(meta("ResourceNotFoundException"))
                .build(),
        );
        assert_eq!(classify(&service_error(gone, 400)), ErrorClass::NotFound);
        let denied = GetRecordsError::AccessDeniedException(
            AccessDeniedException::builder()
                .meta(meta("AccessDeniedException"))
                .build(),
        );
        let class = classify(&service_error(denied, 400));
        assert_eq!(class, ErrorClass::Fatal);
        assert!(!class.is_retryable());
    }

    #[test]
    fn network_failures_are_transient() {
        let timeout: SdkError<GetRecordsError, Response> =
            SdkError::timeout_error("operation timed out");
        assert_eq!(classify(&timeout), ErrorClass::Transient);
        let construction: SdkError<GetRecordsError, Response> =
            SdkError::construction_failure("bad input");
        assert_eq!(classify(&construction), ErrorClass::Fatal);
    }

    #[test]
    fn backoff_doubles_with_jitter_from_100_ms_up_to_10_s_and_resets() {
        // The documented policy: 100 ms, doubling, capped at 10 s (the consumer's defaults).
        let config = crate::ConsumerConfig::new("s");
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(10));
        let defaults = config.reading.backoff;
        assert_eq!((defaults.base, defaults.max), (base, max));
        let mut b = Backoff::new(base, max);
        let ceilings = [
            100u64, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000,
        ];
        for _ in 0..20 {
            b.reset();
            for ceiling in ceilings {
                let d = b.next_delay().as_millis() as u64;
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "delay {d} ms outside [{}, {ceiling}]",
                    ceiling / 2
                );
            }
        }
        // Many failures later the cap still holds, and the wait never drops under half of it.
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(d >= max / 2 && d <= max, "{d:?}");
        }
        assert_eq!(b.attempts(), ceilings.len() as u32 + 100);
        b.reset();
        assert!(b.next_delay() <= base);
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_secs(10));
            seen.insert(b.next_delay().as_millis());
        }
        assert!(seen.len() > 10, "waits are not jittered: {seen:?}");
    }
}
