"""The rolling declaration in blocks.toml: merging block and version tables, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrablocks.errors import ConfigError
from infrablocks.registry import load_registry
from infrablocks.rolling.declaration import DEFAULT_TIMEOUTS, declaration_for, rolling_check
from tests.support.registry_repo import make_repo

MAIN_REPO = Path(__file__).resolve().parents[2]

BASE = """
[blocks.db]
stateful = true

[blocks.db.rolling]
instances = "localcloud_instance.member"
attachments = "localcloud_volume_attachment.member"
check = "etcd"
timeouts = { stop = 5, rejoin = 30 }
check_options = { client_port = 2379 }

[blocks.db.versions."1.0.0"]

[blocks.db.versions."2.0.0"]
rolling = { check = "http", timeouts = { rejoin = 99 }, check_options = { port = 8080 } }

[blocks.web.versions."1.0.0"]
"""


def test_the_projects_base_block_declares_etcd_leader_last() -> None:
    registry = load_registry(MAIN_REPO)
    declaration = declaration_for(registry, registry.block_version("base", "1.1.0"))
    assert declaration is not None
    assert declaration.instances == "localcloud_instance.member"
    assert declaration.attachments == "localcloud_volume_attachment.member"
    assert (declaration.check, declaration.order) == ("etcd", "leader-last")
    assert declaration.instance_address(2) == "localcloud_instance.member[2]"
    assert rolling_check(registry) == []


def test_version_tables_override_keys_and_merge_timeouts_and_options(tmp_path) -> None:
    registry = load_registry(make_repo(tmp_path, BASE))
    first = declaration_for(registry, registry.block_version("db", "1.0.0"))
    second = declaration_for(registry, registry.block_version("db", "2.0.0"))
    assert first.check == "etcd" and second.check == "http"
    assert first.timeouts == {**DEFAULT_TIMEOUTS, "stop": 5.0, "rejoin": 30.0}
    assert second.timeouts == {**DEFAULT_TIMEOUTS, "stop": 5.0, "rejoin": 99.0}
    assert second.check_options == {"client_port": 2379, "port": 8080}
    assert declaration_for(registry, registry.block_version("web", "1.0.0")) is None


BAD = """
[blocks.db]
stateful = true

[blocks.db.rolling]
instances = "localcloud_instance.member[0]"
check = "etdc"
order = "random"
timeouts = { stop = -1, reboot = 3 }
colour = "blue"

[blocks.db.versions."1.0.0"]
"""


def test_every_problem_is_reported_with_its_key_path(tmp_path) -> None:
    registry = load_registry(make_repo(tmp_path, BAD))
    with pytest.raises(ConfigError) as caught:
        declaration_for(registry, registry.block_version("db", "1.0.0"))
    text = str(caught.value)
    assert "invalid rolling declaration of db 1.0.0" in text
    for expected in ('blocks.db.rolling.instances: must be a resource address without index',
                     "blocks.db.rolling.check: unknown check 'etdc': valid are etcd, http, "
                     "instances, patroni",
                     "blocks.db.rolling.order: 'random' is not one of leader-last, index",
                     "blocks.db.rolling.timeouts.stop: must be a positive number",
                     "blocks.db.rolling.timeouts.reboot: unknown timeout",
                     "blocks.db.rolling.colour: unknown key"):
        assert expected in text
    assert len(rolling_check(registry)) == 6


def test_a_version_override_is_located_at_the_version(tmp_path) -> None:
    toml = BASE.replace('rolling = { check = "http"', 'rolling = { check = 7')
    registry = load_registry(make_repo(tmp_path, toml))
    problems = rolling_check(registry)
    assert problems == ['blocks.toml:15: blocks.db.versions."2.0.0".rolling.check: check must '
                        'be a '
                        "name, 'package.module:function' or { command = [...] }, not int"]


def test_a_command_check_and_a_callable_are_accepted(tmp_path) -> None:
    toml = BASE.replace('check = "etcd"', 'check = { command = ["./health.sh", "-v"] }') \
        .replace('check = "http"', 'check = "mypkg.checks:make_check"')
    registry = load_registry(make_repo(tmp_path, toml))
    assert rolling_check(registry) == []
    assert declaration_for(registry, registry.block_version("db", "1.0.0")).check == \
        {"command": ["./health.sh", "-v"]}


# -- per platform --------------------------------------------------------------------------------

PLATFORMS = """
[blocks.db]
stateful = true

[blocks.db.rolling]
instances = "localcloud_instance.member"
attachments = "localcloud_volume_attachment.member"
check = "etcd"
timeouts = { stop = 5, rejoin = 30 }

[blocks.db.rolling.aws]
instances = "aws_instance.member"
attachments = "aws_volume_attachment.member"
interfaces = "aws_network_interface.member"
timeouts = { stop = 300 }

[blocks.db.versions."1.0.0"]

[blocks.db.versions."2.0.0"]
rolling = { instances = "localcloud_instance.node", aws = { check = "instances" } }
"""


def test_a_platform_table_overrides_the_block_and_version_tables(tmp_path) -> None:
    registry = load_registry(make_repo(tmp_path, PLATFORMS))
    one, two = (registry.block_version("db", v) for v in ("1.0.0", "2.0.0"))
    local = declaration_for(registry, one)
    aws = declaration_for(registry, one, "aws")
    assert (local.instances, local.interfaces) == ("localcloud_instance.member", None)
    assert (aws.instances, aws.attachments, aws.interfaces) == (
        "aws_instance.member", "aws_volume_attachment.member", "aws_network_interface.member")
    assert aws.timeouts["stop"] == 300 and aws.timeouts["rejoin"] == 30   # merged
    assert aws.check == "etcd"
    assert aws.interface_address(1) == "aws_network_interface.member[1]"
    # a version's generic key never reaches another platform's addresses
    assert declaration_for(registry, two).instances == "localcloud_instance.node"
    second_aws = declaration_for(registry, two, "aws")
    assert (second_aws.instances, second_aws.check) == ("aws_instance.member", "instances")
    assert rolling_check(registry) == []


def test_a_platform_tables_problems_are_named(tmp_path) -> None:
    registry = load_registry(make_repo(tmp_path, PLATFORMS.replace(
        'interfaces = "aws_network_interface.member"',
        'interfaces = "aws network interface"\ncolour = "red"')))
    problems = rolling_check(registry)
    assert any("blocks.db.rolling.aws.colour: unknown key" in p for p in problems), problems
    assert any("(platform aws).interfaces: must be a resource address" in p
               for p in problems), problems
    with pytest.raises(ConfigError):
        declaration_for(registry, registry.block_version("db", "1.0.0"), "aws")


def test_a_unit_on_aws_applies_its_interface_too(tmp_path) -> None:
    from infrablocks.rolling.plan import RollingUnit

    registry = load_registry(make_repo(tmp_path, PLATFORMS))
    aws = declaration_for(registry, registry.block_version("db", "1.0.0"), "aws")
    unit = RollingUnit(0, aws.instance_address(0), aws.attachment_address(0),
                       interface_address=aws.interface_address(0))
    assert unit.targets() == ["aws_instance.member[0]", "aws_volume_attachment.member[0]",
                              "aws_network_interface.member[0]"]


def test_the_projects_base_block_rolls_its_aws_resources_on_aws() -> None:
    registry = load_registry(MAIN_REPO)
    declaration = declaration_for(registry, registry.block_version("base", "1.1.0"), "aws")
    assert declaration.instances == "aws_instance.member"
    assert declaration.interfaces == "aws_network_interface.member"
    assert declaration.check == "etcd"     # the service check, on the members' private IPs


# -- the addresses name resources of the version's module ----------------------------------------

MODULE = {
    "blocks/db/1.0.0/main.tf": """
        resource "localcloud_instance" "member" {
          count = 3
        }
        resource "localcloud_volume_attachment" "member" {
          count = 3
        }
    """,
    "blocks/db/1.0.0/aws/main.tf": """
        resource "aws_instance" "member" {
          count = 3
        }
        resource "aws_volume_attachment" "member" {
          count = 3
        }
        resource "aws_network_interface" "member" {
          count = 3
        }
    """,
}


def test_addresses_must_name_resources_of_the_module(tmp_path) -> None:
    toml = PLATFORMS.replace('[blocks.db.versions."2.0.0"]\n', "").replace(
        'rolling = { instances = "localcloud_instance.node", aws = { check = "instances" } }\n',
        "")
    registry = load_registry(make_repo(tmp_path, toml, files=MODULE))
    assert rolling_check(registry) == []
    version = registry.block_version("db", "1.0.0")
    assert declaration_for(registry, version, module=version.path) is not None

    bad = toml.replace('instances = "localcloud_instance.member"',
                       'instances = "localcloud_instance.members"').replace(
        'interfaces = "aws_network_interface.member"', 'interfaces = "aws_eni.member"')
    registry = load_registry(make_repo(tmp_path, bad, files=MODULE))
    problems = rolling_check(registry)
    assert len(problems) == 2, problems
    assert problems[0].startswith(
        "blocks.toml:6: blocks.db.rolling.instances: 'localcloud_instance.members' is not a "
        "resource of db 1.0.0's module blocks/db/1.0.0/, which declares "
        "localcloud_instance.member; did you mean `localcloud_instance.member`"), problems
    assert problems[1].startswith(
        "blocks.toml:14: blocks.db.rolling.aws.interfaces: 'aws_eni.member' is not a resource "
        "of db 1.0.0's module blocks/db/1.0.0/aws/ (platform aws), which declares "
        "aws_instance.member, aws_network_interface.member, aws_volume_attachment.member"
    ), problems
    version = registry.block_version("db", "1.0.0")
    with pytest.raises(ConfigError) as caught:    # what create, plan and upgrade call
        declaration_for(registry, version, module=version.path)
    assert caught.value.problems == [problems[0]]
    with pytest.raises(ConfigError) as caught:
        declaration_for(registry, version, "aws", module=version.path / "aws")
    assert caught.value.problems == [problems[1]]
    # without a module (a declaration read for display only) nothing is parsed
    assert declaration_for(registry, version).instances == "localcloud_instance.members"


CHILD = {
    "blocks/db/1.0.0/main.tf": """
        module "cluster" {
          source = "./modules/cluster"
        }
        module "remote" {
          source  = "terraform-aws-modules/ec2-instance/aws"
          version = "5.0.0"
        }
    """,
    "blocks/db/1.0.0/modules/cluster/main.tf": """
        resource "localcloud_instance" "member" {
          count = 3
        }
        module "disks" {
          source = "../disks"
        }
    """,
    "blocks/db/1.0.0/modules/disks/main.tf": """
        resource "localcloud_volume_attachment" "member" {
          count = 3
        }
    """,
}


def _child_registry(tmp_path: Path, instances: str, attachments: str):
    toml = f"""
[blocks.db]
stateful = true

[blocks.db.rolling]
instances = "{instances}"
attachments = "{attachments}"
check = "etcd"

[blocks.db.versions."1.0.0"]
"""
    return load_registry(make_repo(tmp_path, toml, files=CHILD))


def test_addresses_in_child_modules_are_followed_through_local_sources(tmp_path) -> None:
    good = _child_registry(tmp_path / "good", "module.cluster.localcloud_instance.member",
                           "module.cluster.module.disks.localcloud_volume_attachment.member")
    assert rolling_check(good) == []

    bad = _child_registry(tmp_path / "bad", "module.cluster.localcloud_instance.members",
                          "module.clustr.module.disks.localcloud_volume_attachment.member")
    problems = rolling_check(bad)
    assert problems == [
        "blocks.toml:6: blocks.db.rolling.instances: "
        "'module.cluster.localcloud_instance.members' is not a resource of db 1.0.0's module "
        "blocks/db/1.0.0/ → module.cluster (blocks/db/1.0.0/modules/cluster/), which declares "
        "localcloud_instance.member; did you mean `localcloud_instance.member`?",
        "blocks.toml:7: blocks.db.rolling.attachments: "
        "'module.clustr.module.disks.localcloud_volume_attachment.member' is not a resource of "
        "db 1.0.0's module blocks/db/1.0.0/: it calls module.cluster, module.remote, not "
        "module.clustr; did you mean `cluster`?"], problems

    disks = _child_registry(tmp_path / "disks", "module.cluster.localcloud_instance.member",
                            "module.cluster.module.disks.module.x.localcloud_volume_attachment.m")
    assert rolling_check(disks) == [
        "blocks.toml:7: blocks.db.rolling.attachments: "
        "'module.cluster.module.disks.module.x.localcloud_volume_attachment.m' is not a resource "
        "of db 1.0.0's module blocks/db/1.0.0/ → module.cluster (blocks/db/1.0.0/modules/cluster/)"
        " → module.disks (blocks/db/1.0.0/modules/disks/): it calls no module (there is no "
        "module.x)"]

    # a registry source is not in the repository: not followed, not reported
    remote = _child_registry(tmp_path / "remote", "module.remote.aws_instance.this",
                             "module.cluster.module.disks.localcloud_volume_attachment.member")
    assert rolling_check(remote) == []
