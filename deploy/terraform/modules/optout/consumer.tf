# What optout needs to read the stream: polling (GetRecords) and enhanced fan-out
# (SubscribeToShard), plus kms:Decrypt with a customer managed key. A managed policy, so that it
# can be attached to any principal; and optionally a role for optout itself.

data "aws_iam_policy_document" "consumer" {
  statement {
    sid = "PollTheStream"
    actions = [
      "kinesis:DescribeStreamSummary",
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
    ]
    resources = [aws_kinesis_stream.this.arn]
  }
  statement {
    sid       = "RegisterFanOutConsumer"
    actions   = ["kinesis:RegisterStreamConsumer"]
    resources = [aws_kinesis_stream.this.arn]
  }
  statement {
    sid       = "ReadWithFanOut"
    actions   = ["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"]
    resources = ["${aws_kinesis_stream.this.arn}/consumer/*"]
  }
  dynamic "statement" {
    for_each = local.cmk ? [1] : []
    content {
      sid       = "DecryptRecords"
      actions   = ["kms:Decrypt"]
      resources = [local.kms_key_arn]
    }
  }
}

resource "aws_iam_policy" "consumer" {
  name        = "${var.name}-optout-consumer"
  description = "Lets optout read the ${var.name} Kinesis stream (polling and enhanced fan-out)"
  policy      = data.aws_iam_policy_document.consumer.json
  tags        = var.tags
}

locals {
  irsa_issuer = var.eks_oidc_provider_arn == null ? null : regex("oidc-provider/(.+)$", var.eks_oidc_provider_arn)[0]
  consumer_trust = concat(
    var.eks_oidc_provider_arn == null ? [] : [{
      Effect    = "Allow"
      Principal = { Federated = var.eks_oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "${local.irsa_issuer}:sub" = "system:serviceaccount:${var.kubernetes_namespace}:${var.kubernetes_service_account}"
          "${local.irsa_issuer}:aud" = "sts.amazonaws.com"
        }
      }
    }],
    var.eks_pod_identity_cluster_name == null ? [] : [{
      Effect    = "Allow"
      Principal = { Service = "pods.eks.amazonaws.com" }
      Action    = ["sts:AssumeRole", "sts:TagSession"]
    }],
    var.ecs_task_role ? [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id } }
    }] : [],
  )
}

resource "aws_iam_role" "consumer" {
  count       = length(local.consumer_trust) > 0 ? 1 : 0
  name        = "${var.name}-optout-consumer"
  description = "optout, reading the ${var.name} Kinesis stream"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.consumer_trust
  })
  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "consumer" {
  count      = length(aws_iam_role.consumer)
  role       = aws_iam_role.consumer[0].name
  policy_arn = aws_iam_policy.consumer.arn
}

resource "aws_eks_pod_identity_association" "consumer" {
  count           = var.eks_pod_identity_cluster_name == null ? 0 : 1
  cluster_name    = var.eks_pod_identity_cluster_name
  namespace       = var.kubernetes_namespace
  service_account = var.kubernetes_service_account
  role_arn        = aws_iam_role.consumer[0].arn
}
