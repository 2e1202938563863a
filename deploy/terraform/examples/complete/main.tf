# From an empty AWS account to a Twilio sink feeding optout (docs/deploying.md):
#   1. terraform apply                          -> stream, roles, the Twilio sink (not yet active)
#   2. deploy optout (deploy/kubernetes), then ask Twilio to send the sink a test event:
#        twilio api:events:v1:sinks:test:create --sid "$(terraform output -raw sink_sid)"
#   3. validate with the test_id optout logs (or `optout test-events` prints):
#        twilio api:events:v1:sinks:validate:create --sid "$(terraform output -raw sink_sid)" --test-id TEST_ID
#   4. terraform apply -var sink_validated=true -> the subscription to inbound messages
#
# Also, or instead, Twilio's Event Streams webhook sink (it needs no AWS): with
# -var webhook_public_url=https://optout.example.com (optout's --public-url, served by
# deploy/kubernetes/webhooks), Twilio posts the same events to /twilio/events; test and validate
# it the same way with `terraform output webhook_sink_sid`, then -var webhook_sink_validated=true.

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

locals {
  # What optout records: inbound messages (STOP, START, HELP and revocation phrases) and, with
  # Twilio's Compliance Toolkit, reassigned-number opt-outs.
  optout_event_types = concat(
    [jsonencode({
      type           = "com.twilio.messaging.inbound-message.received"
      schema_version = var.inbound_schema_version
    })],
    var.reassigned_number_events ? [jsonencode({
      type           = "com.twilio.messaging.reassigned-number.detected"
      schema_version = 1
    })] : []
  )
}

resource "twilio_events_subscriptions_v1" "inbound_messages" {
  count       = var.sink_validated ? 1 : 0
  description = "Inbound messages (STOP, START, HELP) for optout"
  sink_sid    = twilio_events_sinks_v1.kinesis.sid
  types       = local.optout_event_types
}

# The Event Streams webhook sink: Twilio posts signed CloudEvents to optout's /twilio/events
# (X-Twilio-Signature with the account's auth token, bodySHA256 on the URL). Twilio's sink
# resource documents destination and method; batch_events (Twilio groups events into one
# request of up to 64 kB) is optional, and optout takes one CloudEvent or an array either way.
resource "twilio_events_sinks_v1" "webhook" {
  count       = var.webhook_public_url == null ? 0 : 1
  description = "optout: webhook sink"
  sink_type   = "webhook"
  sink_configuration = jsonencode({
    destination  = "${trimsuffix(var.webhook_public_url, "/")}/twilio/events"
    method       = "POST"
    batch_events = true
  })
}

resource "twilio_events_subscriptions_v1" "webhook" {
  count       = var.webhook_public_url != null && var.webhook_sink_validated ? 1 : 0
  description = "Inbound messages (STOP, START, HELP) for optout, by webhook"
  sink_sid    = twilio_events_sinks_v1.webhook[0].sid
  types       = local.optout_event_types
}
