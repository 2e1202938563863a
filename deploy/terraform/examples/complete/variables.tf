variable "region" {
  description = "AWS region of the stream (and of optout)."
  type        = string
  default     = "us-east-1"
}

variable "stream_name" {
  description = "Kinesis stream name."
  type        = string
  default     = "twilio-events"
}

variable "eks_oidc_provider_arn" {
  description = "Your EKS cluster's IAM OIDC provider ARN, for IRSA (null: no IRSA role)."
  type        = string
  default     = null
}

variable "sink_validated" {
  description = "Twilio creates a subscription only for an active (validated) sink: apply once with false, validate the sink with the test_id optout logs, then apply again with true."
  type        = bool
  default     = false
}

variable "inbound_schema_version" {
  description = "Schema version of com.twilio.messaging.inbound-message.received; 5 or later carries optOutType."
  type        = number
  default     = 5
  validation {
    condition     = var.inbound_schema_version >= 5
    error_message = "Use schema version 5 or later: earlier versions have no optOutType."
  }
}

variable "reassigned_number_events" {
  description = "Also subscribe to com.twilio.messaging.reassigned-number.detected (Twilio's Compliance Toolkit): numbers Twilio opted out because they changed hands."
  type        = bool
  default     = false
}

variable "webhook_public_url" {
  description = "optout's --public-url (https://HOST, what Twilio calls), to create an Event Streams webhook sink posting to HOST/twilio/events (null: no webhook sink)."
  type        = string
  default     = null
  validation {
    condition     = var.webhook_public_url == null || startswith(coalesce(var.webhook_public_url, "x"), "https://")
    error_message = "Twilio posts to an https:// URL with a publicly trusted certificate."
  }
}

variable "webhook_sink_validated" {
  description = "Like sink_validated, for the webhook sink: apply with false, validate the sink with the test_id optout records, then apply with true."
  type        = bool
  default     = false
}
