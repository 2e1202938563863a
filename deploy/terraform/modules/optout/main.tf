# Everything a Twilio Event Streams Kinesis sink and the optout consumer need on AWS: the stream
# (optionally encrypted with a customer managed key), the role Twilio assumes to write to it, the
# policy optout reads it with, and optionally a role for optout (IRSA, EKS Pod Identity or ECS) and
# an enhanced fan-out consumer.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  create_kms  = var.kms == "create"
  kms_key_arn = local.create_kms ? aws_kms_key.stream[0].arn : (var.kms == "existing" ? var.kms_key_arn : null)
  # With a customer managed key, both roles need explicit KMS permissions on it.
  cmk              = var.kms != "aws-managed"
  account_root_arn = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
}

resource "aws_kms_key" "stream" {
  count                   = local.create_kms ? 1 : 0
  description             = "Encrypts the ${var.name} Kinesis stream (Twilio Event Streams)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # The account administers the key through IAM (the roles below get only what they use).
        Sid       = "AccountAdministersThroughIAM"
        Effect    = "Allow"
        Principal = { AWS = local.account_root_arn }
        Action    = "kms:*"
        Resource  = "*"
      }
    ]
  })
  tags = var.tags
}

resource "aws_kms_alias" "stream" {
  count         = local.create_kms ? 1 : 0
  name          = "alias/${var.name}-kinesis"
  target_key_id = aws_kms_key.stream[0].key_id
}

resource "aws_kinesis_stream" "this" {
  name             = var.name
  shard_count      = var.stream_mode == "PROVISIONED" ? var.shard_count : null
  retention_period = var.retention_hours
  encryption_type  = "KMS"
  kms_key_id       = local.cmk ? local.kms_key_arn : "alias/aws/kinesis"

  stream_mode_details {
    stream_mode = var.stream_mode
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.kms != "existing" || var.kms_key_arn != null
      error_message = "kms = \"existing\" needs kms_key_arn."
    }
  }
}

resource "aws_kinesis_stream_consumer" "optout" {
  count      = var.enhanced_fan_out_consumer_name == null ? 0 : 1
  name       = var.enhanced_fan_out_consumer_name
  stream_arn = aws_kinesis_stream.this.arn
}
