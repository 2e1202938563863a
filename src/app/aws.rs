//! The Kinesis client every command uses.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;

use super::AppError;
use super::settings::AwsSettings;

/// A Kinesis client from the default AWS chain (environment, profile, web identity, instance
/// role), with the region and endpoint of `aws` when given.
///
/// `consumer` clients have the SDK's retries off (the engine's backoff is the one policy) and
/// bounded timeouts, so a hung connection cannot stall a shard.
pub(super) async fn kinesis_client(
    aws: &AwsSettings,
    consumer: bool,
) -> Result<aws_sdk_kinesis::Client, AppError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &aws.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &aws.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(AppError::Usage(
            "no AWS region: set AWS_REGION or pass --region (e.g. --region us-east-1)".into(),
        ));
    }
    let mut builder = aws_sdk_kinesis::config::Builder::from(&shared);
    if consumer {
        builder = builder
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
    }
    Ok(aws_sdk_kinesis::Client::from_conf(builder.build()))
}
