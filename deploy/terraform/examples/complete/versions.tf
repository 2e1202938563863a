terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
    twilio = {
      source  = "twilio/twilio"
      version = "~> 0.18"
    }
  }
}

provider "aws" {
  region = var.region
}

# Credentials from TWILIO_ACCOUNT_SID and TWILIO_API_KEY / TWILIO_API_SECRET (or
# TWILIO_AUTH_TOKEN) in the environment; never in a .tf file.
provider "twilio" {}
