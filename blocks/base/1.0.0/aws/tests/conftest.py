"""Fixtures of base's AWS block tests: the EC2 API of the environment's platform (region, profile
and endpoint overrides come as AWS_* variables, credentials from the AWS chain) and the
deployment's instances, found by their ``environment`` and ``block`` tags."""

from __future__ import annotations

import os

import boto3
import pytest

# An endpoint override means an EC2 emulator (moto, LocalStack): its instances run no software,
# so there is no service to test there, only the EC2 objects.
EMULATED = bool(os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_EC2"))
NO_SERVICES = "EC2 emulator (endpoint override): its instances run no software"


@pytest.fixture(scope="session")
def ec2():
    return boto3.client("ec2")


@pytest.fixture(scope="session")
def instances(ec2):
    """The deployment's running instances, by their ``member`` tag."""
    found = {}
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": "tag:environment", "Values": [os.environ["INFRABLOCKS_ENVIRONMENT"]]},
        {"Name": "tag:block", "Values": ["base"]},
        {"Name": "instance-state-name", "Values": ["running"]}])
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                found[tags["member"]] = instance
    return found
