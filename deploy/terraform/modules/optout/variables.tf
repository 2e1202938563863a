variable "name" {
  description = "Kinesis stream name (the Twilio sink writes here; optout's --stream reads it). Also the prefix of the IAM roles and policies."
  type        = string
  default     = "twilio-events"
}

variable "stream_mode" {
  description = "ON_DEMAND (scales itself, billed per GB) or PROVISIONED (fixed shard_count)."
  type        = string
  default     = "ON_DEMAND"
  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.stream_mode)
    error_message = "stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "shard_count" {
  description = "Shards when stream_mode is PROVISIONED (ignored for ON_DEMAND). Each shard takes 1 MB/s or 1,000 records/s of writes."
  type        = number
  default     = 1
}

variable "retention_hours" {
  description = "How long Kinesis keeps records (24 to 8760). It bounds how long optout may be down without losing opt-outs: 168 (7 days) leaves time to notice and repair."
  type        = number
  default     = 168
  validation {
    condition     = var.retention_hours >= 24 && var.retention_hours <= 8760
    error_message = "retention_hours must be between 24 and 8760."
  }
}

variable "kms" {
  description = "Stream encryption: \"create\" a customer managed key (rotated yearly), \"aws-managed\" (alias/aws/kinesis, no key to manage), or \"existing\" with kms_key_arn."
  type        = string
  default     = "create"
  validation {
    condition     = contains(["create", "aws-managed", "existing"], var.kms)
    error_message = "kms must be create, aws-managed or existing."
  }
}

variable "kms_key_arn" {
  description = "ARN of an existing customer managed key, when kms = \"existing\"."
  type        = string
  default     = null
}

variable "twilio_aws_account_id" {
  description = "The AWS account Twilio's Event Streams assumes the sink role from (Twilio's documented account)."
  type        = string
  default     = "177261743968"
}

variable "enhanced_fan_out_consumer_name" {
  description = "Register an enhanced fan-out consumer of this name (optout run --consumer-name NAME); null to read by polling."
  type        = string
  default     = null
}

variable "eks_oidc_provider_arn" {
  description = "IRSA: the EKS cluster's IAM OIDC provider ARN. Set it to create a consumer role that the Kubernetes ServiceAccount below may assume."
  type        = string
  default     = null
}

variable "eks_pod_identity_cluster_name" {
  description = "EKS Pod Identity (the alternative to IRSA): the cluster name. Set it to create a consumer role trusted by pods.eks.amazonaws.com and its association with the ServiceAccount below."
  type        = string
  default     = null
}

variable "ecs_task_role" {
  description = "Create a consumer role that ECS tasks may assume (use it as the task role)."
  type        = bool
  default     = false
}

variable "kubernetes_namespace" {
  description = "Namespace of optout's ServiceAccount (deploy/kubernetes uses optout)."
  type        = string
  default     = "optout"
}

variable "kubernetes_service_account" {
  description = "Name of optout's ServiceAccount (deploy/kubernetes uses optout)."
  type        = string
  default     = "optout"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
