"""Each environment's subnet in the AWS platform's VPC.

The blocks of an environment put their instances in one subnet, found by its CIDR (the
``subnet_cidr`` every block receives) and the tag ``infrablocks:environment``. The platform
creates it when the environment is first used, in the VPC of its settings (default: the region's
default VPC, where a runner inside the VPC reaches the members' private IPs), taking the first
/24 of its ``subnets`` range (default: the VPC's CIDR) that no subnet of the VPC overlaps. The
VPC itself is the allocation table, so runners on several machines never take the same /24: a
concurrent ``CreateSubnet`` of the same CIDR fails (``InvalidSubnet.Conflict``) and the next one
is tried. The sweep of the environment deletes it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from infrablocks.cloud.aws.ops import translated
from infrablocks.errors import ConfigError, InfrablocksError

__all__ = ["ENVIRONMENT_TAG", "choose_vpc", "delete_environment_subnet",
           "ensure_environment_subnet", "find_environment_subnet"]

ENVIRONMENT_TAG = "infrablocks:environment"
_ATTEMPTS = 8


def choose_vpc(ec2: Any, vpc_id: str | None) -> dict[str, Any]:
    """The VPC named by the settings, else the region's default VPC."""
    vpcs: list[dict[str, Any]]
    with translated(f"VPC {vpc_id or '(default)'}"):
        if vpc_id:
            vpcs = ec2.describe_vpcs(VpcIds=[vpc_id]).get("Vpcs", [])
        else:
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}]
                                     ).get("Vpcs", [])
    if not vpcs:
        raise ConfigError("the AWS platform's region has no default VPC" if not vpc_id
                          else f"VPC {vpc_id} does not exist",
                          hint="set vpc_id in the platform's blocks.toml table to the VPC the "
                               "runner sits in")
    return vpcs[0]


def find_environment_subnet(ec2: Any, vpc_id: str, environment: str) -> dict[str, Any] | None:
    with translated(f"subnet of environment {environment}"):
        subnets = ec2.describe_subnets(Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": f"tag:{ENVIRONMENT_TAG}", "Values": [environment]},
        ]).get("Subnets", [])
    return subnets[0] if subnets else None


def _candidates(pool: ipaddress.IPv4Network,
                taken: list[ipaddress.IPv4Network]) -> Iterator[ipaddress.IPv4Network]:
    for candidate in pool.subnets(new_prefix=24):
        if not any(candidate.overlaps(other) for other in taken):
            yield candidate


def ensure_environment_subnet(ec2: Any, vpc: dict[str, Any], environment: str, *,
                              pool: str | None = None, configured: str | None = None,
                              create: bool = True) -> str:
    """The CIDR of ``environment``'s subnet in ``vpc``, creating the subnet when missing.

    ``configured``: blocks.toml's ``environments.NAME.subnet`` (must lie in the VPC);
    ``pool``: the platform's ``subnets`` range (default: the VPC's CIDR); ``create=False``
    (read-only commands): a missing subnet is not created, its would-be CIDR is returned.
    """
    from botocore.exceptions import ClientError

    vpc_id = vpc["VpcId"]
    existing = find_environment_subnet(ec2, vpc_id, environment)
    if existing is not None:
        if configured and existing["CidrBlock"] != configured:
            raise ConfigError(
                f"environment {environment}: its subnet {existing['SubnetId']} in {vpc_id} is "
                f"{existing['CidrBlock']}, but blocks.toml says {configured}",
                hint="an environment's subnet cannot move while it exists: destroy the "
                     "environment first, or put its CIDR in blocks.toml")
        return str(existing["CidrBlock"])
    # a VPC's CidrBlock associations are IPv4 (IPv6 ones are a separate set)
    vpc_networks = [ipaddress.IPv4Network(a["CidrBlock"])
                    for a in vpc.get("CidrBlockAssociationSet", [{"CidrBlock": vpc["CidrBlock"]}])]
    network = ipaddress.IPv4Network(configured or pool or vpc["CidrBlock"])
    if not any(network.subnet_of(v) for v in vpc_networks):
        what = "subnet" if configured else "subnets range"
        raise ConfigError(f"environment {environment}: the {what} {network} is not inside VPC "
                          f"{vpc_id} ({', '.join(map(str, vpc_networks))})")
    for _ in range(_ATTEMPTS):
        with translated(f"subnets of {vpc_id}"):
            taken = [ipaddress.IPv4Network(s["CidrBlock"]) for s in ec2.describe_subnets(
                Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]).get("Subnets", [])]
        cidr: ipaddress.IPv4Network | None
        if configured:
            if any(network.overlaps(t) for t in taken):
                raise ConfigError(f"environment {environment}: subnet {network} overlaps a "
                                  f"subnet that exists in {vpc_id}",
                                  hint="choose a free CIDR in blocks.toml")
            cidr = network
        else:
            cidr = next(_candidates(network, taken), None)
            if cidr is None:
                raise InfrablocksError(f"no free /24 left in {network} of {vpc_id} for "
                                       f"environment {environment}",
                                       hint="destroy unused environments or widen `subnets`")
        if not create:
            return str(cidr)
        try:
            created = ec2.create_subnet(VpcId=vpc_id, CidrBlock=str(cidr), TagSpecifications=[{
                "ResourceType": "subnet", "Tags": [
                    {"Key": "Name", "Value": f"infrablocks-{environment}"},
                    {"Key": ENVIRONMENT_TAG, "Value": environment},
                    {"Key": "environment", "Value": environment}]}])["Subnet"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidSubnet.Conflict" \
                    and not configured:
                continue  # another runner took it a moment ago
            from infrablocks.cloud.aws.ops import botocore_error

            raise botocore_error(f"subnet {cidr} of environment {environment}", error) from None
        return str(created["CidrBlock"])
    raise InfrablocksError(f"could not create a subnet for environment {environment} in "
                           f"{vpc_id}: every candidate was taken concurrently")


def delete_environment_subnet(ec2: Any, vpc_id: str, environment: str) -> str | None:
    """Delete the environment's subnet; the reason it stays (``DependencyViolation``), or None."""
    from botocore.exceptions import ClientError

    subnet = find_environment_subnet(ec2, vpc_id, environment)
    if subnet is None:
        return None
    try:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    except ClientError as error:
        details = error.response.get("Error", {})
        return (f"subnet {subnet['SubnetId']} ({subnet['CidrBlock']}): {details.get('Code')}: "
                f"{details.get('Message')}")
    return None
