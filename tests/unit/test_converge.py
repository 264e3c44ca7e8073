"""What `create` decides per block (``deploy.converge``): pure functions, no Terraform."""

from __future__ import annotations

from typing import Any

import pytest

from infrablocks.deploy import converge
from infrablocks.release.digest import ModuleDigest, input_digests
from infrablocks.rolling.declaration import RollingDeclaration
from infrablocks.state import new_record
from infrablocks.terraform.plan import Plan

CODE = ModuleDigest("sha256:aaa", {"main.tf": "1", "outputs.tf": "2"})
INPUTS = input_digests({"environment": "prod", "subnet_cidr": "127.42.5.0/24",
                        "base": {"endpoints": ["a"]}})
DECLARATION = RollingDeclaration(instances="localcloud_instance.member",
                                 attachments="localcloud_volume_attachment.member",
                                 check="etcd")


def record(version: str = "1.0.0", status: str = "deployed", *, code: ModuleDigest = CODE,
           inputs: dict[str, str] | None = INPUTS) -> Any:
    extra = converge.record_extra(code, inputs or {}, {"base": "1.1.0"}, "source") \
        if inputs is not None else {}
    return new_record("prod", "nomad", version, outputs=None, terraform_version="1.15.5",
                      status=status, extra=extra)


def plan(*changes: tuple[str, str, list[str]], outputs: bool = False) -> Plan:
    entries = []
    for address, action, actions in changes:
        base, _, index = address.partition("[")
        rtype, name = base.split(".")
        entries.append({"address": address, "type": rtype, "name": name,
                        "index": int(index.rstrip("]")) if index else None,
                        "change": {"actions": actions}})
        assert action
    data = {"resource_changes": entries,
            "output_changes": {"x": {"actions": ["update"]}} if outputs else {}}
    return Plan.from_json(data)


REPLACE = ["delete", "create"]


def test_first_step() -> None:
    assert converge.first_step(None, False, "1.0.0", True) == converge.FRESH
    assert converge.first_step(None, True, "1.0.0", True) == converge.PLAN   # partial state
    assert converge.first_step(record(), True, "1.0.0", True) == converge.PLAN
    assert converge.first_step(record("0.9.0"), True, "1.0.0", True) == converge.REFUSE
    assert converge.first_step(record("0.9.0"), True, "1.0.0", False) == converge.PLAN
    # a failed update of a stateful block is planned again (no deployed version to protect)
    assert converge.first_step(record("0.9.0", "failed"), True, "1.0.0", True) == converge.PLAN


def test_after_plan_unchanged_only_when_the_plan_is_empty() -> None:
    assert converge.after_plan(plan(), []) == converge.UNCHANGED
    assert converge.after_plan(plan(outputs=True), []) == converge.APPLY
    assert converge.after_plan(plan(("terraform_data.x", "update", ["update"])), []) \
        == converge.APPLY
    assert converge.after_plan(plan(("a.b[0]", "replace", REPLACE)), [0]) == converge.ROLL


@pytest.mark.parametrize("changes, members, expected", [
    # a crashed member: its instance and attachment are created again
    ([("localcloud_instance.member[1]", "c", ["create"]),
      ("localcloud_volume_attachment.member[1]", "c", ["create"])], [0, 1, 2], [1]),
    # a new image: every member replaced
    ([(f"localcloud_instance.member[{i}]", "r", REPLACE) for i in range(3)], [0, 1, 2],
     [0, 1, 2]),
    # a scale-up: member 3 is new (not in the state), not a unit
    ([("localcloud_instance.member[3]", "c", ["create"]),
      ("localcloud_volume.member[3]", "c", ["create"])], [0, 1, 2], []),
    # in-place changes are not units
    ([("localcloud_instance.member[0]", "u", ["update"])], [0, 1, 2], []),
])
def test_rolling_units(changes, members, expected) -> None:
    assert converge.rolling_units(plan(*changes), DECLARATION, record(), "1.0.0",
                                  members) == expected


def test_rolling_units_only_for_a_deployed_block_at_its_version() -> None:
    crashed = plan(("localcloud_instance.member[1]", "c", ["create"]))
    assert converge.rolling_units(crashed, None, record(), "1.0.0", [0, 1, 2]) == []
    assert converge.rolling_units(crashed, DECLARATION, None, "1.0.0", [0, 1, 2]) == []
    assert converge.rolling_units(crashed, DECLARATION, record(status="creating"), "1.0.0",
                                  [0, 1, 2]) == []   # never deployed: completed in one apply
    assert converge.rolling_units(crashed, DECLARATION, record("0.9.0"), "1.0.0",
                                  [0, 1, 2]) == []


def test_reasons() -> None:
    assert converge.reasons(None, False, "1.0.0", CODE, INPUTS) == ["not deployed yet"]
    assert converge.reasons(record(), True, "1.0.0", CODE, INPUTS) == []    # only drift is left
    assert converge.reasons(record("0.9.0"), True, "1.0.0", CODE, INPUTS) == [
        "version 0.9.0 → 1.0.0"]
    edited = ModuleDigest("sha256:bbb", {"main.tf": "9", "outputs.tf": "2", "extra.tf": "3"})
    assert converge.reasons(record(), True, "1.0.0", edited, INPUTS) == [
        "code edited since applied: extra.tf (added), main.tf (changed)"]
    moved = dict(INPUTS, base="other")
    assert converge.reasons(record(), True, "1.0.0", CODE, moved) == ["inputs changed: base"]
    assert converge.reasons(record(status="creating"), True, "1.0.0", CODE, INPUTS) == [
        "the last operation did not finish (record `creating`)"]
    # an older record without digests: nothing to compare
    assert converge.reasons(record(inputs=None), True, "1.0.0", CODE, moved) == []


def test_an_empty_plan_over_an_unfinished_record_says_so_rather_than_a_bare_unchanged() -> None:
    assert converge.unchanged_reasons(record(), ["inputs changed: base"]) == []
    failed = record(status="failed")
    found = converge.reasons(failed, True, "1.0.0", CODE, dict(INPUTS, base="other"))
    assert converge.unchanged_reasons(failed, found) == [
        "the last operation did not finish (record `failed`)",
        "nothing left for Terraform to do: recorded `deployed` once ready"]
    orphan = converge.reasons(None, True, "1.0.0", CODE, INPUTS)
    assert converge.unchanged_reasons(None, orphan) == [
        "state without a deployment record (an interrupted first create)",
        "nothing left for Terraform to do: recorded `deployed` once ready"]


def test_stale_inputs() -> None:
    assert not converge.stale_inputs(record(), INPUTS, {"base"}, {"base"})
    assert converge.stale_inputs(record(), dict(INPUTS, base="x"), set(), {"base"})
    # older records: stale when a dependency's outputs changed in this run
    assert converge.stale_inputs(record(inputs=None), INPUTS, {"base"}, {"base"})
    assert not converge.stale_inputs(record(inputs=None), INPUTS, {"stolon"}, {"base"})
    assert not converge.stale_inputs(None, INPUTS, {"base"}, {"base"})


def test_plan_counts_in_terraforms_words() -> None:
    counts = converge.plan_counts(plan(("a.b[0]", "r", REPLACE), ("a.c", "c", ["create"]),
                                       ("a.d", "u", ["update"]), ("a.e", "d", ["delete"])))
    assert counts == {"add": 1, "change": 1, "replace": 1, "destroy": 1}
    assert converge.plan_counts(None) == {"add": 0, "change": 0, "replace": 0, "destroy": 0}


def test_record_extra_round_trips_through_the_record() -> None:
    saved = record()
    assert saved.code_digest == CODE.to_json()
    assert saved.input_digests == INPUTS
    assert saved.applied_requires == {"base": "1.1.0"}
    assert saved.extra["source"] == "source"
    assert record(inputs=None).input_digests is None
