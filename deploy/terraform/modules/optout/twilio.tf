# The role Twilio's Event Streams assumes to write to the stream (the "Kinesis sink"). Only
# Twilio's AWS account may assume it, and only with the external id Terraform generates here,
# which is then given to Twilio in the sink configuration (confused-deputy protection).

resource "random_password" "external_id" {
  length  = 40
  special = false
}

resource "aws_iam_role" "twilio" {
  name        = "${var.name}-twilio-sink"
  description = "Assumed by Twilio Event Streams to write to the ${var.name} Kinesis stream"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${var.twilio_aws_account_id}:root" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "sts:ExternalId" = random_password.external_id.result } }
    }]
  })
  tags = var.tags
}

data "aws_iam_policy_document" "twilio" {
  statement {
    sid       = "WriteTheStream"
    actions   = ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListShards"]
    resources = [aws_kinesis_stream.this.arn]
  }
  # DescribeLimits has no resource-level permissions: it is account-wide and read-only (shard
  # limits), so AWS only accepts "*" for it.
  statement {
    sid       = "ReadAccountShardLimits"
    actions   = ["kinesis:DescribeLimits"]
    resources = ["*"]
  }
  dynamic "statement" {
    for_each = local.cmk ? [1] : []
    content {
      sid       = "EncryptRecords"
      actions   = ["kms:GenerateDataKey"]
      resources = [local.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "twilio" {
  name   = "write-${var.name}"
  role   = aws_iam_role.twilio.id
  policy = data.aws_iam_policy_document.twilio.json
}
