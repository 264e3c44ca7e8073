"""The AWS platform's own EC2 calls against moto server (no Terraform): the environment's subnet,
AMIs found by name and tags, stopping a block, sweeping an environment, the inventory. Each test
removes what it creates (the moto server is shared by the session)."""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from infrablocks.cloud.aws.images import ami_name, find_ami
from infrablocks.cloud.aws.network import ENVIRONMENT_TAG
from infrablocks.errors import ConfigError, InfrablocksError
from infrablocks.images.refs import parse_image_ref
from infrablocks.platforms import Platform
from infrablocks.platforms.aws import AwsPlatform
from tests.support.aws_moto import (
    REGION,
    dummy_credentials,
    ec2_client,
    register_images,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.aws]


@pytest.fixture
def platform(moto_endpoint, tmp_path):
    with dummy_credentials():
        yield AwsPlatform.open(tmp_path, region=REGION, endpoint=moto_endpoint,
                               poll_interval=0.2)


@pytest.fixture
def environment(platform):
    name = f"t-{uuid.uuid4().hex[:6]}"
    yield name
    platform.sweep_environment(name)


def tags(**values: str) -> list[dict[str, object]]:
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in values.items()]}
            for kind in ("instance", "volume")]


def run(platform: AwsPlatform, subnet_id: str, **tag_values: str) -> str:
    image = platform.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return platform.ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet_id,
        TagSpecifications=tags(**tag_values))["Instances"][0]["InstanceId"]


def subnet_id(platform: AwsPlatform, environment: str) -> str:
    return platform.ec2.describe_subnets(Filters=[
        {"Name": f"tag:{ENVIRONMENT_TAG}", "Values": [environment]}])["Subnets"][0]["SubnetId"]


def test_the_aws_platform_is_a_platform(platform):
    assert isinstance(platform, Platform)
    assert platform.ops is platform.ops
    assert platform.terraform_env()["AWS_ENDPOINT_URL"] == platform.settings.endpoint


def test_each_environment_gets_its_own_free_subnet_of_the_vpc(platform, environment):
    vpc = platform.vpc()
    taken = [ipaddress.ip_network(s["CidrBlock"]) for s in platform.ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]]
    cidr = platform.environment_subnet(environment, None)
    network = ipaddress.ip_network(cidr)
    assert network.prefixlen == 24 and network.subnet_of(ipaddress.ip_network(vpc["CidrBlock"]))
    assert not any(network.overlaps(t) for t in taken)
    assert platform.environment_subnet(environment, None) == cidr          # stable
    other = f"{environment}-b"
    try:
        assert platform.environment_subnet(other, None) != cidr
    finally:
        platform.sweep_environment(other)
    with pytest.raises(ConfigError) as raised:
        platform.environment_subnet(environment, "172.31.250.0/24")
    assert f"its subnet {subnet_id(platform, environment)}" in str(raised.value)


def test_a_look_creates_no_subnet_and_the_release_deletes_it(platform, environment):
    """Read-only commands look (``create=False``): the CIDR it would get, nothing created;
    after the environment's last block is destroyed its subnet is given back."""
    def subnets() -> list[dict]:
        return platform.ec2.describe_subnets(Filters=[
            {"Name": f"tag:{ENVIRONMENT_TAG}", "Values": [environment]}])["Subnets"]

    would = platform.environment_subnet(environment, None, create=False)
    assert subnets() == []
    assert platform.environment_subnet(environment, "172.31.252.0/24", create=False) \
        == "172.31.252.0/24" and subnets() == []
    assert platform.environment_subnet(environment, None) == would      # the claim
    assert platform.environment_subnet(environment, None, create=False) == would
    assert platform.release_environment_subnet(environment) is None
    assert subnets() == []


def test_a_configured_subnet_must_be_free_and_inside_the_vpc(platform, environment):
    with pytest.raises(ConfigError) as outside:
        platform.environment_subnet(environment, "10.99.0.0/24")
    assert "is not inside VPC" in str(outside.value)
    with pytest.raises(ConfigError) as overlapping:
        platform.environment_subnet(environment, "172.31.0.0/24")   # a default subnet's
    assert "overlaps a subnet that exists" in str(overlapping.value)
    assert platform.environment_subnet(environment, "172.31.251.0/24") == "172.31.251.0/24"


def test_images_are_the_amis_named_and_tagged_for_them(platform, moto_endpoint):
    ref = f"probe{uuid.uuid4().hex[:6]}@1.0.0"
    with pytest.raises(InfrablocksError) as missing:
        platform.ensure_images([ref])
    name = ami_name(parse_image_ref(ref))
    assert f"none named {name} with tag infrablocks:image={ref}" in str(missing.value)
    assert f"images/{ref.split('@')[0]}/1.0.0/aws/" in missing.value.hint
    registered = register_images(ec2_client(moto_endpoint), [ref])[ref]
    try:
        seen: list[str] = []
        assert platform.ensure_images([ref], before_each=seen.append) == [registered]
        assert seen == [ref]
        assert find_ami(platform.ec2, parse_image_ref(ref))["ImageId"] == registered
    finally:
        platform.ec2.deregister_image(ImageId=registered)


def test_stop_sweep_and_inventory_stay_in_their_environment(platform, environment):
    other = f"{environment}-o"
    platform.environment_subnet(environment, None)
    platform.environment_subnet(other, None)
    try:
        net = subnet_id(platform, environment)
        doomed = run(platform, net, environment=environment, block="db", Name="db-1")
        sibling = run(platform, net, environment=environment, block="app", Name="app-1")
        stranger = run(platform, subnet_id(platform, other), environment=other, block="db")
        zone = platform.ec2.describe_subnets(SubnetIds=[net])["Subnets"][0]["AvailabilityZone"]
        volume = platform.ec2.create_volume(
            AvailabilityZone=zone, Size=1, TagSpecifications=[tags(
                environment=environment, block="db", Name="db-1-data")[1]])["VolumeId"]
        platform.ec2.get_waiter("volume_available").wait(VolumeIds=[volume])
        platform.ec2.attach_volume(VolumeId=volume, InstanceId=doomed, Device="/dev/xvdf")
        group = platform.ec2.create_security_group(
            GroupName=f"{environment}-db", Description="db",
            VpcId=platform.vpc()["VpcId"], TagSpecifications=[{
                "ResourceType": "security-group",
                "Tags": [{"Key": "environment", "Value": environment},
                         {"Key": "block", "Value": "db"}]}])["GroupId"]

        assert platform.stop_block_instances(environment, "db", grace=1) == ["db-1"]
        states = {i: platform.ops.describe_instance(i).state
                  for i in (doomed, sibling, stranger)}
        assert states == {doomed: "stopped", sibling: "running", stranger: "running"}

        inventory = platform.inventory(environment)
        assert inventory["platform"] == "aws" and platform.settings.endpoint in inventory["where"]
        assert sorted(i["name"] for i in inventory["instances"]) == ["app-1", "db-1"]
        attached = {v["id"]: v["attached_to"] for v in inventory["volumes"]}
        assert attached[volume]["instance"] == "db-1" and attached[volume]["device"] == "xvdf"

        removed = platform.sweep_environment(environment)
        assert sorted(removed["instances"]) == [f"app-1 ({sibling})", f"db-1 ({doomed})"]
        assert removed["volumes"] == [f"db-1-data ({volume})"]
        assert removed["security_groups"] == [f"{environment}-db ({group})"]
        assert removed["kept"] == []
        assert platform.ec2.describe_subnets(Filters=[
            {"Name": f"tag:{ENVIRONMENT_TAG}", "Values": [environment]}])["Subnets"] == []
        assert platform.ops.describe_instance(stranger).state == "running"
        assert platform.inventory(environment)["instances"] == []
    finally:
        platform.sweep_environment(other)


def test_an_unknown_profile_is_a_configuration_error(tmp_path, moto_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    platform = AwsPlatform.open(tmp_path, region=REGION, endpoint=moto_endpoint,
                                profile="nobody")
    with pytest.raises(ConfigError) as raised:
        platform.ensure_images(["etcd@1.0.0"])
    assert "nobody" in str(raised.value) and "profile" in raised.value.hint
