"""Parsing the JSON of a saved plan (shapes as printed by `terraform show -json` 1.15)."""

from pathlib import Path

from infrablocks.terraform.plan import Plan, ResourceChange


def change(address, actions, *, reason=None, replace_paths=None, index=None, **extra):
    entry = {
        "address": address, "mode": "managed", "type": address.split(".")[-2].split("]")[-1],
        "name": address.split(".")[-1].split("[")[0],
        "provider_name": "registry.terraform.io/x/y",
        "change": {"actions": actions, "before": None, "after": {"k": 1}},
    }
    if index is not None:
        entry["index"] = index
    if reason:
        entry["action_reason"] = reason
    if replace_paths is not None:
        entry["change"]["replace_paths"] = replace_paths
    entry.update(extra)
    return entry


PLAN = {
    "format_version": "1.2",
    "resource_changes": [
        change("localcloud_volume.data[0]", ["no-op"], index=0),
        change("localcloud_instance.member[1]", ["delete", "create"], index=1,
               reason="replace_because_cannot_update", replace_paths=[["image_id"]]),
        change("localcloud_instance.member[\"b\"]", ["create", "delete"], index="b"),
        change("terraform_data.new", ["create"]),
        change("terraform_data.tags", ["update"]),
        change("terraform_data.gone", ["delete"], reason="delete_because_no_resource_config"),
        change("terraform_data.old", ["delete"], deposed="00000001"),
        {"address": "data.localcloud_image.etcd", "mode": "data", "type": "localcloud_image",
         "name": "etcd", "change": {"actions": ["read"]}},
        change("module.net.terraform_data.x", ["create"], module_address="module.net"),
    ],
    "output_changes": {
        "endpoints": {"actions": ["update"]},
        "password": {"actions": ["no-op"]},
    },
    "errored": False,
}


def test_resource_changes_are_parsed_with_all_their_fields():
    plan = Plan.from_json(PLAN, plan_file=Path("p.tfplan"), has_changes=True)
    by_address = {rc.address: rc for rc in plan.resource_changes}
    member = by_address["localcloud_instance.member[1]"]
    assert member == ResourceChange(
        address="localcloud_instance.member[1]", actions=("delete", "create"),
        type="localcloud_instance", name="member", index=1,
        action_reason="replace_because_cannot_update", replace_paths=(("image_id",),),
        after={"k": 1})
    assert member.action == "replace" and member.is_replace
    assert not member.create_before_destroy
    cbd = by_address['localcloud_instance.member["b"]']
    assert cbd.index == "b" and cbd.is_replace and cbd.create_before_destroy
    assert by_address["terraform_data.old"].deposed == "00000001"
    assert by_address["module.net.terraform_data.x"].module_address == "module.net"
    assert by_address["data.localcloud_image.etcd"].mode == "data"
    assert plan.plan_file == Path("p.tfplan")


def test_changes_leave_out_no_ops_and_data_reads():
    plan = Plan.from_json(PLAN, has_changes=True)
    assert len(plan.resource_changes) == 9
    assert [rc.address for rc in plan.changes] == [
        "localcloud_instance.member[1]", 'localcloud_instance.member["b"]',
        "terraform_data.new", "terraform_data.tags", "terraform_data.gone",
        "terraform_data.old", "module.net.terraform_data.x"]
    assert plan.addresses("delete") == ["terraform_data.gone", "terraform_data.old"]


def test_counts_and_summary():
    plan = Plan.from_json(PLAN, has_changes=True)
    assert plan.counts() == {"replace": 2, "create": 2, "update": 1, "delete": 2}
    assert plan.summary() == "2 to create, 1 to update, 2 to replace, 2 to delete"


def test_output_changes():
    plan = Plan.from_json(PLAN)
    assert plan.output_changes == {"endpoints": ("update",), "password": ("no-op",)}


def test_has_changes_is_derived_when_the_exit_code_is_unknown():
    assert Plan.from_json(PLAN).has_changes
    quiet = {"resource_changes": [change("terraform_data.a", ["no-op"])],
             "output_changes": {"x": {"actions": ["no-op"]}}}
    plan = Plan.from_json(quiet)
    assert not plan.has_changes and plan.changes == []
    assert plan.summary() == "no resource changes"
    only_outputs = {"output_changes": {"x": {"actions": ["create"]}}}
    assert Plan.from_json(only_outputs).has_changes
    assert Plan.from_json(only_outputs).summary() == "no resource changes (outputs change)"


def test_an_empty_document_is_an_empty_plan():
    plan = Plan.from_json({}, has_changes=False)
    assert plan.resource_changes == [] and plan.output_changes == {} and not plan.errored


def test_unknown_action_lists_are_shown_raw():
    rc = ResourceChange.from_json(change("terraform_data.a", ["create", "forget"]))
    assert rc.action == "create+forget" and rc.changes_something
