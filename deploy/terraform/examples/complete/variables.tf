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
