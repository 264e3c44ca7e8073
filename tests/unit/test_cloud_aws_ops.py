"""The pure parts of infrablocks.cloud.aws.ops: waiter timing, device names, the InstanceInfo
read from a DescribeInstances answer, and botocore errors turned into CloudOps errors. The API
calls themselves run against moto server in tests/integration/test_cloud_aws_moto.py."""

from __future__ import annotations

import datetime

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from infrablocks.cloud.aws.ops import (
    AwsCloudOps,
    botocore_error,
    device_name,
    instance_info,
    waiter_config,
)
from infrablocks.cloud.ops import CloudNotFoundError, CloudOpsError, InstanceInfo

# One instance of a DescribeInstances answer, as EC2 returns it (trimmed to what is read).
DESCRIPTION = {
    "InstanceId": "i-0abc",
    "ImageId": "ami-1234",
    "State": {"Code": 16, "Name": "running"},
    "PrivateIpAddress": "10.0.7.11",
    "Tags": [{"Key": "environment", "Value": "prod"}, {"Key": "member", "Value": "1"}],
    "BlockDeviceMappings": [
        {"DeviceName": "/dev/xvda",
         "Ebs": {"AttachTime": datetime.datetime(2026, 1, 1), "DeleteOnTermination": True,
                 "Status": "attached", "VolumeId": "vol-root"}},
        {"DeviceName": "/dev/xvdf",
         "Ebs": {"AttachTime": datetime.datetime(2026, 1, 1), "DeleteOnTermination": False,
                 "Status": "attached", "VolumeId": "vol-data"}},
    ],
}


@pytest.mark.parametrize(("timeout", "interval", "attempts"), [
    (60, 5, 13),       # checks at 0, 5, …, 60
    (61, 5, 13),
    (0.3, 0.1, 3),     # floor(0.3/0.1) is 2 in binary floating point: 0, 0.1, 0.2
    (0, 5, 1),         # a zero timeout still looks once
    (-1, 5, 1),
])
def test_waiter_config_spreads_the_timeout_over_attempts(timeout, interval, attempts):
    assert waiter_config(timeout, interval) == {"Delay": interval, "MaxAttempts": attempts}


def test_waiter_config_refuses_a_non_positive_interval():
    with pytest.raises(ValueError, match="poll_interval must be positive"):
        waiter_config(10, 0)


@pytest.mark.parametrize(("aws", "local"), [
    ("/dev/xvdf", "xvdf"), ("/dev/sdf", "sdf"), ("xvdg", "xvdg"), ("/dev/nvme1n1", "nvme1n1"),
])
def test_device_names_drop_dev_as_the_local_cloud_names_them(aws, local):
    assert device_name(aws) == local


def test_instance_info_reads_state_address_tags_image_and_volumes_by_device():
    assert instance_info(DESCRIPTION) == InstanceInfo(
        id="i-0abc", state="running", private_ip="10.0.7.11",
        tags={"environment": "prod", "member": "1"},
        volumes={"xvda": "vol-root", "xvdf": "vol-data"}, image_id="ami-1234")


def test_instance_info_of_a_terminated_instance_has_no_address_or_volumes():
    terminated = {"InstanceId": "i-0abc", "State": {"Code": 48, "Name": "terminated"},
                  "BlockDeviceMappings": []}
    info = instance_info(terminated)
    assert (info.state, info.private_ip, info.volumes, info.tags) == ("terminated", "", {}, {})


def client_error(code: str, message: str, operation: str = "DescribeInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize("code", ["InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed",
                                  "InvalidVolume.NotFound"])
def test_missing_or_malformed_ids_become_not_found_errors(code):
    error = botocore_error("instance i-0abc", client_error(code, "The ID 'i-0abc' is bad"))
    assert isinstance(error, CloudNotFoundError)
    assert str(error) == f"instance i-0abc: {code}: The ID 'i-0abc' is bad"


def test_a_refused_operation_keeps_aws_code_and_message():
    error = botocore_error("instance i-0abc", client_error(
        "IncorrectInstanceState", "The instance 'i-0abc' is not in a state from which it can "
        "be started.", "StartInstances"))
    assert type(error) is CloudOpsError
    assert error.message == ("instance i-0abc: IncorrectInstanceState: The instance 'i-0abc' "
                             "is not in a state from which it can be started.")


def test_missing_permissions_come_with_a_hint():
    error = botocore_error("volume vol-1", client_error(
        "UnauthorizedOperation", "You are not authorized to perform this operation.",
        "DescribeVolumes"))
    assert error.hint == "the credentials in use may not call this EC2 API"


@pytest.mark.parametrize("cause", [
    EndpointConnectionError(endpoint_url="http://127.42.240.1:1"), NoCredentialsError()])
def test_an_unreachable_api_or_missing_credentials_is_a_clear_error(cause):
    error = botocore_error("instance i-0abc", cause)
    assert type(error) is CloudOpsError
    assert error.message.startswith("instance i-0abc: the EC2 API could not be reached: ")
    assert error.hint == "check the region, credentials and endpoint"


def test_aws_cloud_ops_refuses_a_non_positive_poll_interval():
    with pytest.raises(ValueError, match="poll_interval"):
        AwsCloudOps(object(), poll_interval=0)
