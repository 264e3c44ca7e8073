terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.30, < 6.0" }
  }
}

# Region, profile and endpoint overrides come from the environment's AWS platform as AWS_REGION,
# AWS_PROFILE and AWS_ENDPOINT_URL* (blocks.toml [platforms.NAME]); credentials from the AWS
# credential chain of the process running Terraform. Nothing here names an account.
provider "aws" {
  default_tags {
    tags = {
      environment = var.environment
      block       = "base"
    }
  }
}
