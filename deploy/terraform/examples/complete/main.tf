# From an empty AWS account to a Twilio sink feeding optout (docs/deploying.md):
#   1. terraform apply                          -> stream, roles, the Twilio sink (not yet active)
#   2. deploy optout (deploy/kubernetes), then ask Twilio to send the sink a test event:
#        twilio api:events:v1:sinks:test:create --sid "$(terraform output -raw sink_sid)"
#   3. validate with the test_id optout logs (or `optout test-events` prints):
#        twilio api:events:v1:sinks:validate:create --sid "$(terraform output -raw sink_sid)" --test-id TEST_ID
#   4. terraform apply -var sink_validated=true -> the subscription to inbound messages

module "optout" {
  source = "../../modules/optout"

  name                  = var.stream_name
  stream_mode           = "ON_DEMAND"
  retention_hours       = 168
  kms                   = "create"
  eks_oidc_provider_arn = var.eks_oidc_provider_arn
  tags = {
    service = "optout"
  }
}

resource "twilio_events_sinks_v1" "kinesis" {
  description = "optout: ${var.stream_name} Kinesis stream"
  sink_type   = "kinesis"
  sink_configuration = jsonencode({
    arn         = module.optout.stream_arn
    role_arn    = module.optout.twilio_role_arn
    external_id = module.optout.twilio_external_id
  })
}

resource "twilio_events_subscriptions_v1" "inbound_messages" {
  count       = var.sink_validated ? 1 : 0
  description = "Inbound messages (STOP, START, HELP) for optout"
  sink_sid    = twilio_events_sinks_v1.kinesis.sid
  types = [jsonencode({
    type           = "com.twilio.messaging.inbound-message.received"
    schema_version = var.inbound_schema_version
  })]
}
