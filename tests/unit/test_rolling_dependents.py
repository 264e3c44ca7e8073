"""Which instances a dependent's re-apply stops first: those replaced with their attachment."""

from __future__ import annotations

from infrablocks.deploy.replacements import instances_to_stop
from infrablocks.terraform.plan import Plan, ResourceChange

REPLACE = ("delete", "create")


def change(address: str, actions: tuple[str, ...], before: dict | None) -> ResourceChange:
    kind, name = address.split(".")[:2]
    return ResourceChange(address=address, actions=actions, type=kind, name=name, before=before)


def plan_of(*changes: ResourceChange) -> Plan:
    return Plan(plan_file=None, has_changes=True, resource_changes=list(changes))


def test_an_instance_replaced_with_its_attachment_is_stopped():
    plan = plan_of(
        change("localcloud_instance.node", REPLACE, {"id": "i-1", "name": "n"}),
        change("localcloud_volume_attachment.node", REPLACE,
               {"id": "a-1", "instance_id": "i-1", "volume_id": "vol-1"}),
        change("localcloud_volume.node", ("no-op",), {"id": "vol-1"}))
    assert instances_to_stop(plan) == ["i-1"]


def test_an_instance_without_attachment_or_kept_is_not_stopped():
    plan = plan_of(
        change("localcloud_instance.bare", REPLACE, {"id": "i-2"}),            # no volume
        change("localcloud_instance.kept", ("update",), {"id": "i-3"}),
        change("localcloud_volume_attachment.kept", REPLACE,                    # instance kept
               {"id": "a-3", "instance_id": "i-3", "volume_id": "vol-3"}),
        change("aws_instance.web", REPLACE, {"id": "i-4"}),
        change("aws_volume_attachment.web", REPLACE,
               {"instance_id": "i-4", "volume_id": "vol-4", "device_name": "/dev/xvdf"}))
    assert instances_to_stop(plan) == ["i-4"]


def test_created_resources_have_nothing_to_stop():
    plan = plan_of(change("localcloud_instance.node", ("create",), None),
                   change("localcloud_volume_attachment.node", ("create",), None))
    assert instances_to_stop(plan) == []
