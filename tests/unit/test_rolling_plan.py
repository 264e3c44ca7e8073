"""Classifying a Terraform plan into rolling units and the rest; members from the state."""

from __future__ import annotations

from infrablocks.rolling.declaration import RollingDeclaration
from infrablocks.rolling.plan import classify, members_from_state, order_units
from infrablocks.terraform.plan import Plan

DECLARATION = RollingDeclaration(instances="localcloud_instance.member",
                                 attachments="localcloud_volume_attachment.member",
                                 check="etcd")


def change(rtype: str, index, actions, replace_paths=()) -> dict:
    address = f"{rtype}.member" + ("" if index is None else f"[{index}]")
    return {"address": address, "type": rtype, "name": "member", "index": index,
            "mode": "managed",
            "change": {"actions": list(actions), "replace_paths": [list(p) for p in replace_paths],
                       "before": {}, "after": {}}}


def plan_of(*changes: dict) -> Plan:
    return Plan.from_json({"resource_changes": list(changes)})


def test_replaced_instances_and_attachments_pair_up_by_index() -> None:
    plan = plan_of(
        change("localcloud_instance", 1, ["delete", "create"], [["image_id"]]),
        change("localcloud_volume_attachment", 1, ["delete", "create"], [["instance_id"]]),
        change("localcloud_instance", 0, ["delete", "create"], [["image_id"]]),
        change("localcloud_volume_attachment", 0, ["delete", "create"], [["instance_id"]]),
        change("localcloud_volume", 0, ["no-op"]),
    )
    rolling = classify(plan, DECLARATION)
    assert [u.index for u in rolling.units] == [0, 1]
    assert rolling.units[0].targets() == ["localcloud_instance.member[0]",
                                          "localcloud_volume_attachment.member[0]"]
    assert rolling.units[1].reasons == ["image_id", "instance_id"]
    assert rolling.rest == []


def test_everything_else_is_the_rest() -> None:
    plan = plan_of(
        change("localcloud_instance", 0, ["update"]),                   # tags in place
        change("localcloud_instance", 3, ["create"]),                   # scaled up
        change("localcloud_volume", 2, ["delete", "create"]),           # not the group
        change("localcloud_instance", None, ["delete", "create"]),      # no index
    )
    rolling = classify(plan, DECLARATION)
    assert rolling.units == []
    assert rolling.rest == ["localcloud_instance.member[0] (update)",
                            "localcloud_instance.member[3] (create)",
                            "localcloud_volume.member[2] (replace)",
                            "localcloud_instance.member (replace)"]


def test_an_attachment_replaced_alone_is_a_unit_too() -> None:
    rolling = classify(plan_of(change("localcloud_volume_attachment", 2, ["delete", "create"],
                                      [["device_name"]])), DECLARATION)
    assert [(u.index, u.reasons) for u in rolling.units] == [(2, ["device_name"])]


def test_leader_last_moves_only_the_leader() -> None:
    rolling = classify(plan_of(*[change("localcloud_instance", i, ["delete", "create"])
                                 for i in (2, 0, 1)]), DECLARATION)
    assert [u.index for u in order_units(rolling.units, 0, "leader-last")] == [1, 2, 0]
    assert [u.index for u in order_units(rolling.units, None, "leader-last")] == [0, 1, 2]
    assert [u.index for u in order_units(rolling.units, 0, "index")] == [0, 1, 2]


def state_resource(rtype: str, instances: list[tuple[int, dict]], module=None) -> dict:
    resource = {"mode": "managed", "type": rtype, "name": "member",
                "instances": [{"index_key": i, "attributes": a} for i, a in instances]}
    if module:
        resource["module"] = module
    return resource


def test_members_come_from_the_state_with_their_volumes() -> None:
    state = {"resources": [
        state_resource("localcloud_instance", [
            (1, {"id": "i-2", "name": "prod-base-2", "private_ip": "127.42.7.12"}),
            (0, {"id": "i-1", "name": "prod-base-1", "private_ip": "127.42.7.11"})]),
        state_resource("localcloud_volume_attachment", [(0, {"volume_id": "vol-1"})]),
        state_resource("localcloud_instance", [(0, {"id": "i-x"})], module="module.other"),
    ]}
    members = members_from_state(state, DECLARATION)
    assert [(m.index, m.name, m.instance_id, m.private_ip, m.volume_id) for m in members] == [
        (0, "prod-base-1", "i-1", "127.42.7.11", "vol-1"),
        (1, "prod-base-2", "i-2", "127.42.7.12", None)]
    assert members[1].attachment_address == "localcloud_volume_attachment.member[1]"
    assert members_from_state(None, DECLARATION) == []


def test_a_resumed_unit_whose_instance_is_gone_is_found_by_index() -> None:
    from infrablocks.rolling.plan import unit_for_index

    plan = plan_of(change("localcloud_instance", 1, ["create"]),
                   change("localcloud_volume_attachment", 1, ["create"]),
                   change("localcloud_instance", 2, ["update"]))
    assert classify(plan, DECLARATION).units == []               # a create is "the rest"...
    unit = unit_for_index(plan, DECLARATION, 1)                  # ...unless the journal says
    assert unit.targets() == ["localcloud_instance.member[1]",
                              "localcloud_volume_attachment.member[1]"]
    assert unit.actions == {"localcloud_instance.member[1]": "create",
                            "localcloud_volume_attachment.member[1]": "create"}
    assert unit_for_index(plan, DECLARATION, 0) is None
