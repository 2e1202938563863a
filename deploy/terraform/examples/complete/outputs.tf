output "sink_sid" {
  description = "The Twilio sink (DG...): test and validate it with this."
  value       = twilio_events_sinks_v1.kinesis.sid
}

output "stream_name" {
  description = "OPTOUT_STREAM in deploy/kubernetes/base/configmap.yaml."
  value       = module.optout.stream_name
}

output "consumer_role_arn" {
  description = "The eks.amazonaws.com/role-arn annotation in deploy/kubernetes/base/serviceaccount.yaml."
  value       = module.optout.consumer_role_arn
}

output "consumer_policy_arn" {
  description = "Attach to optout's principal if you did not ask for a role here."
  value       = module.optout.consumer_policy_arn
}

output "webhook_sink_sid" {
  description = "The Twilio webhook sink (DG...), if webhook_public_url is set: test and validate it with this."
  value       = one(twilio_events_sinks_v1.webhook[*].sid)
}
