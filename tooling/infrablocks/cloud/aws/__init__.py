"""AWS twins of the local cloud's control-plane operations (boto3 EC2/EBS).

``infrablocks.cloud.aws.ops.AwsCloudOps`` is the rolling engine's CloudOps on AWS; docs/aws.md
describes how an upgrade runs there. boto3 is imported lazily: importing this package is cheap.
"""
