# What Twilio's Kinesis sink needs (sink_configuration: arn, role_arn, external_id) and what
# optout needs (the stream name, its role, the fan-out consumer).

output "stream_arn" {
  description = "sink_configuration.arn: the Kinesis stream Twilio writes to."
  value       = aws_kinesis_stream.this.arn
}

output "stream_name" {
  description = "optout run --stream (OPTOUT_STREAM)."
  value       = aws_kinesis_stream.this.name
}

output "twilio_role_arn" {
  description = "sink_configuration.role_arn: the role Twilio assumes to write."
  value       = aws_iam_role.twilio.arn
}

output "twilio_external_id" {
  description = "sink_configuration.external_id: required by the role's trust policy."
  value       = random_password.external_id.result
  sensitive   = true
}

output "consumer_policy_arn" {
  description = "The policy that lets optout read the stream (attach it to any principal)."
  value       = aws_iam_policy.consumer.arn
}

output "consumer_role_arn" {
  description = "optout's role (IRSA annotation, Pod Identity or ECS task role), when one was asked for."
  value       = try(aws_iam_role.consumer[0].arn, null)
}

output "consumer_name" {
  description = "optout run --consumer-name (OPTOUT_CONSUMER_NAME), when enhanced fan-out is on."
  value       = try(aws_kinesis_stream_consumer.optout[0].name, null)
}
