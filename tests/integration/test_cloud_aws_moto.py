"""AwsCloudOps against a real EC2 API: moto server on 127.0.0.1, a boto3 client with dummy
credentials in us-east-1. Instances are run and volumes created and attached as Terraform's
aws_instance / aws_ebs_volume / aws_volume_attachment would; then every step of a rolling unit
goes through AwsCloudOps: describe, stop, volume released, replacement attached, start, status
checks — and every failure is a CloudOps error naming the instance or volume.

moto keeps its backends in this process: each test terminates its instances and deletes its
volumes (the server is conftest's session-wide ``moto_endpoint``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from infrablocks.cloud.aws.ops import AwsCloudOps
from infrablocks.cloud.ops import (
    CloudNotFoundError,
    CloudOps,
    CloudOpsError,
    CloudTimeoutError,
)
from infrablocks.health.base import Member
from infrablocks.health.instance import instance_running, volume_back
from tests.support.loopback import free_port

pytestmark = [pytest.mark.integration, pytest.mark.aws]

REGION = "us-east-1"
POLL = 0.05


def ec2_client(endpoint: str, **config: object):
    import boto3
    from botocore.config import Config

    return boto3.client("ec2", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(**config) if config else None)


@dataclass
class Ec2:
    """The test's EC2 account: a client, and what the test created (removed at teardown)."""

    client: object
    instances: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def image_id(self) -> str:
        return self.client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def run_instance(self, name: str, member: int) -> dict:
        reservation = self.client.run_instances(
            ImageId=self.image_id(), MinCount=1, MaxCount=1, InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "Name", "Value": name}, {"Key": "block", "Value": "base"},
                {"Key": "member", "Value": str(member)}]}])
        instance = reservation["Instances"][0]
        self.instances.append(instance["InstanceId"])
        return instance

    def create_volume(self, zone: str) -> str:
        volume_id = self.client.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"]
        self.volumes.append(volume_id)
        return volume_id

    def cleanup(self) -> None:
        live = [i for i in self.instances
                if self.client.describe_instances(InstanceIds=[i])["Reservations"][0]
                ["Instances"][0]["State"]["Name"] != "terminated"]
        if live:
            self.client.terminate_instances(InstanceIds=live)
        for volume_id in self.volumes:
            volume = self.client.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
            for attachment in volume.get("Attachments", []):
                self.client.detach_volume(VolumeId=volume_id,
                                          InstanceId=attachment["InstanceId"])
            self.client.delete_volume(VolumeId=volume_id)


@pytest.fixture
def ec2(moto_endpoint: str) -> Iterator[Ec2]:
    account = Ec2(ec2_client(moto_endpoint))
    try:
        yield account
    finally:
        account.cleanup()


@pytest.fixture
def ops(ec2: Ec2) -> AwsCloudOps:
    return AwsCloudOps(ec2.client, poll_interval=POLL)


def test_aws_cloud_ops_is_a_cloud_ops(ops):
    assert isinstance(ops, CloudOps)


@pytest.mark.slow
def test_every_step_of_a_rolling_unit(ec2, ops):
    """Three members with data volumes; member 1 is replaced the way the engine does it."""
    members = [ec2.run_instance(f"prod-base-{n}", n) for n in (1, 2, 3)]
    zone = members[0]["Placement"]["AvailabilityZone"]
    volumes = [ec2.create_volume(zone) for _ in members]
    for instance, volume_id in zip(members, volumes, strict=True):
        ec2.client.attach_volume(VolumeId=volume_id, InstanceId=instance["InstanceId"],
                                 Device="/dev/xvdf")
    old = members[0]["InstanceId"]

    # describe: state, address, tags, the data volume by its device (without /dev/)
    ops.wait_instance_state(old, "running", timeout=10)
    info = ops.describe_instance(old)
    assert info.id == old and info.state == "running"
    assert info.private_ip == members[0]["PrivateIpAddress"]
    assert info.tags == {"Name": "prod-base-1", "block": "base", "member": "1"}
    assert info.volumes["xvdf"] == volumes[0]
    assert info.image_id == members[0]["ImageId"]
    ops.wait_volume_state(volumes[0], "in-use", timeout=10)
    assert ops.volume_state(volumes[0]) == "in-use"
    assert ops.instance_ready(old)
    assert ops.status_checks(old) == {"state": "running", "system": "ok", "instance": "ok"}

    # the rolling engine's platform gates read AWS through the same interface
    member = Member(index=0, name="prod-base-1", instance_address="aws_instance.member[0]",
                    attachment_address="aws_volume_attachment.member[0]", instance_id=old,
                    private_ip=info.private_ip, volume_id=volumes[0])
    assert instance_running(ops, member).ok
    assert volume_back(ops, member, None, None).ok

    # pre-operation: stop, so the volume can detach; stopping twice is a no-op
    ops.stop_instance(old, timeout=10)
    assert not instance_running(ops, member).ok
    assert ops.describe_instance(old).state == "stopped"
    ops.stop_instance(old, timeout=10)
    assert not ops.instance_ready(old)
    assert ops.status_checks(old)["system"] == "not-applicable"
    assert ops.volume_state(volumes[0]) == "in-use"   # a stopped instance keeps its volume

    # the targeted apply: the old instance goes, a new one gets the same volume
    ec2.client.detach_volume(VolumeId=volumes[0], InstanceId=old)
    ops.wait_volume_state(volumes[0], "available", timeout=10)
    ec2.client.terminate_instances(InstanceIds=[old])
    ops.wait_instance_state(old, "terminated", timeout=10)
    new = ec2.run_instance("prod-base-1", 1)["InstanceId"]
    ec2.client.attach_volume(VolumeId=volumes[0], InstanceId=new, Device="/dev/xvdf")
    ops.wait_volume_state(volumes[0], "in-use", timeout=10)

    # post-operations and the instance gates
    ops.wait_instance_state(new, "running", timeout=10)
    ops.wait_instance_ready(new, timeout=10)
    assert ops.instance_ready(new)
    assert ops.describe_instance(new).volumes["xvdf"] == volumes[0]
    replaced = Member(**{**member.to_dict(), "instance_id": new})
    assert instance_running(ops, replaced).ok
    assert volume_back(ops, replaced, None, None).ok
    assert not volume_back(ops, member, None, None).ok     # not on the old instance any more
    # the other members were never touched
    for instance, volume_id in zip(members[1:], volumes[1:], strict=True):
        other = ops.describe_instance(instance["InstanceId"])
        assert other.state == "running" and other.volumes["xvdf"] == volume_id


def test_start_brings_a_stopped_instance_back_and_is_a_no_op_when_running(ec2, ops):
    instance_id = ec2.run_instance("prod-stolon-1", 1)["InstanceId"]
    ops.start_instance(instance_id, timeout=10)          # already running: no-op
    assert ops.describe_instance(instance_id).state == "running"
    ops.stop_instance(instance_id, timeout=10)
    ops.start_instance(instance_id, timeout=10)
    assert ops.describe_instance(instance_id).state == "running"
    assert ops.instance_ready(instance_id)


def test_unknown_ids_are_not_found_errors_naming_them(ops):
    with pytest.raises(CloudNotFoundError, match="instance i-0123456789abcdef0"):
        ops.describe_instance("i-0123456789abcdef0")
    with pytest.raises(CloudNotFoundError, match="instance i-0123456789abcdef0"):
        ops.stop_instance("i-0123456789abcdef0", timeout=1)
    with pytest.raises(CloudNotFoundError, match="volume vol-0123456789abcdef0"):
        ops.volume_state("vol-0123456789abcdef0")
    with pytest.raises(CloudNotFoundError, match="volume vol-0123456789abcdef0"):
        ops.wait_volume_state("vol-0123456789abcdef0", "available", timeout=1)


def test_a_wait_that_cannot_succeed_says_what_it_saw(ec2, ops):
    instance = ec2.run_instance("prod-base-1", 1)
    volume_id = ec2.create_volume(instance["Placement"]["AvailabilityZone"])

    with pytest.raises(CloudTimeoutError) as timeout:
        ops.wait_volume_state(volume_id, "in-use", timeout=0.3)
    assert timeout.value.wanted == "in-use" and timeout.value.last_seen == "available"
    assert str(timeout.value) == (f"volume {volume_id} is still available after 0.3s "
                                  f"waiting for in-use")

    with pytest.raises(CloudTimeoutError, match=f"instance {instance['InstanceId']} is still "
                                                f"running after 0.2s waiting for stopping"):
        ops.wait_instance_state(instance["InstanceId"], "stopping", timeout=0.2)

    ec2.client.terminate_instances(InstanceIds=[instance["InstanceId"]])
    with pytest.raises(CloudOpsError, match="can no longer become running: it is terminated"):
        ops.wait_instance_state(instance["InstanceId"], "running", timeout=5)
    # still described by EC2, but gone as far as the engine is concerned (as on the local cloud)
    assert ops.describe_instance(instance["InstanceId"]).state == "terminated"
    with pytest.raises(CloudNotFoundError, match="cannot stop instance .*: it is terminated"):
        ops.stop_instance(instance["InstanceId"], timeout=5)
    with pytest.raises(CloudNotFoundError, match="cannot start instance .*: it is terminated"):
        ops.start_instance(instance["InstanceId"], timeout=5)


def test_invalid_states_are_refused_with_the_valid_ones(ec2, ops):
    instance_id = ec2.run_instance("prod-base-1", 1)["InstanceId"]
    with pytest.raises(CloudOpsError, match="unknown instance state 'up'.*valid: pending, "
                                            "running, stopping, stopped, terminated"):
        ops.wait_instance_state(instance_id, "up", timeout=1)
    with pytest.raises(CloudOpsError, match="unknown volume state 'attached'.*valid: "
                                            "available, in-use"):
        ops.wait_volume_state("vol-0123456789abcdef0", "attached", timeout=1)


def test_an_unreachable_endpoint_is_a_clear_error():
    client = ec2_client(f"http://127.0.0.1:{free_port()}", connect_timeout=1,
                        retries={"total_max_attempts": 1})
    ops = AwsCloudOps(client, poll_interval=POLL)
    with pytest.raises(CloudOpsError) as error:
        ops.describe_instance("i-0123456789abcdef0")
    assert "instance i-0123456789abcdef0: the EC2 API could not be reached" in str(error.value)
    assert error.value.hint == "check the region, credentials and endpoint"
