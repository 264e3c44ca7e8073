"""EC2-level checks of a live nomad deployment on AWS: the scheduler node runs on its fixed
private IP with its data volume attached at /dev/xvdf, from this version's AMI, and the outputs
point at it."""

from __future__ import annotations

import ipaddress

IMAGE = "nomad@1.0.0"


def test_outputs_name_the_node(outputs):
    assert outputs["api_url"] == f"http://{outputs['node_ip']}:9001"
    assert outputs["jobs_dir"] == "/var/lib/infrablocks/devices/xvdf/nomad/jobs"


def test_the_node_runs_on_its_fixed_ip(instances, outputs):
    assert sorted(instances) == ["1"]
    assert instances["1"]["PrivateIpAddress"] == outputs["node_ip"]


def test_the_node_has_its_data_volume_in_use_at_xvdf(ec2, instances):
    mapped = {m["DeviceName"]: m["Ebs"]["VolumeId"]
              for m in instances["1"].get("BlockDeviceMappings", []) if "Ebs" in m}
    assert "/dev/xvdf" in mapped, mapped
    volume = ec2.describe_volumes(VolumeIds=[mapped["/dev/xvdf"]])["Volumes"][0]
    assert volume["State"] == "in-use"


def test_the_node_runs_this_versions_ami(ec2, instances):
    image = ec2.describe_images(ImageIds=[instances["1"]["ImageId"]])["Images"][0]
    assert {t["Key"]: t["Value"] for t in image.get("Tags", [])}["infrablocks:image"] == IMAGE


def test_the_node_sits_in_bases_subnet(ec2, instances, dependency_outputs):
    subnet = ec2.describe_subnets(SubnetIds=[instances["1"]["SubnetId"]])["Subnets"][0]
    network = ipaddress.ip_network(subnet["CidrBlock"])
    assert all(ipaddress.ip_address(ip) in network
               for ip in dependency_outputs["base"]["member_ips"])
