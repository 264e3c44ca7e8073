"""EC2-level checks of a live base deployment on AWS: three running members with their fixed
private IPs (on their persistent network interfaces), their data volumes attached at /dev/xvdf,
and the AMI of this version's image."""

from __future__ import annotations

import ipaddress

IMAGE = "etcd@1.1.0"


def test_outputs_name_three_members_in_the_subnet(outputs):
    assert len(outputs["member_ips"]) == 3
    assert outputs["endpoints"] == [f"http://{ip}:2379" for ip in outputs["member_ips"]]
    assert len({ipaddress.ip_address(ip) for ip in outputs["member_ips"]}) == 3


def test_three_members_run_on_their_fixed_ips(instances, outputs):
    assert sorted(instances) == ["1", "2", "3"]
    assert [instances[m]["PrivateIpAddress"] for m in ("1", "2", "3")] == outputs["member_ips"]


def test_each_member_holds_its_ip_on_its_own_network_interface(instances):
    for member, instance in instances.items():
        primary = [i for i in instance["NetworkInterfaces"]
                   if i["Attachment"]["DeviceIndex"] == 0]
        assert len(primary) == 1, member
        assert primary[0]["PrivateIpAddress"] == instance["PrivateIpAddress"]


def test_each_member_has_its_data_volume_in_use_at_xvdf(ec2, instances):
    volumes = {}
    for member, instance in instances.items():
        mapped = {m["DeviceName"]: m["Ebs"]["VolumeId"]
                  for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m}
        assert "/dev/xvdf" in mapped, f"member {member}: {mapped}"
        volumes[member] = mapped["/dev/xvdf"]
    assert len(set(volumes.values())) == 3
    described = ec2.describe_volumes(VolumeIds=list(volumes.values()))["Volumes"]
    assert {v["State"] for v in described} == {"in-use"}


def test_members_run_this_versions_ami(ec2, instances):
    images = ec2.describe_images(ImageIds=sorted({i["ImageId"] for i in instances.values()}))
    tags = [{t["Key"]: t["Value"] for t in image.get("Tags", [])} for image in images["Images"]]
    assert [t.get("infrablocks:image") for t in tags] == [IMAGE]
