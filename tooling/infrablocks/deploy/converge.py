"""What `create` does with one block: the decision, apart from doing it.

`create` converges: it decides from what Terraform would do, not from the recorded version
alone (docs/environments.md, "What `create` does"). Per block, in order:

1. :func:`first_step`: a block with neither record nor state is **fresh** (one
   ``terraform apply``, nothing to plan); a stateful block deployed at another version is
   **refused** (that is ``doit upgrade``); anything else is **planned** (one ``terraform plan``).
2. :func:`after_plan`: an empty plan is **unchanged**; a plan that replaces (or re-creates)
   members of a deployed block with a rolling declaration **rolls** them one at a time; any
   other plan is **applied** (the saved plan, not a second one).
3. :func:`reasons` says why a block was planned or applied: not deployed yet, an unfinished
   operation, a version change, edited code, changed inputs (dependency outputs), else drift
   of the infrastructure itself.

A deployed block outside the run whose dependency's outputs changed is re-applied in the same
run when :func:`stale_inputs` says its inputs differ from what its record says it was applied
with (no plan when they do not). Pure functions: unit-tested without Terraform; `doit apply`'s
reviewed plans can share them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infrablocks.release.digest import ModuleDigest
    from infrablocks.rolling.declaration import RollingDeclaration
    from infrablocks.state import DeploymentRecord
    from infrablocks.terraform.plan import Plan

FRESH = "fresh"          # nothing deployed: one apply
PLAN = "plan"            # something deployed: plan, then decide
REFUSE = "refuse"        # a stateful block at another version: `doit upgrade`

UNCHANGED = "unchanged"  # the plan is empty
APPLY = "apply"          # apply the saved plan
ROLL = "roll"            # replace members one at a time (the rolling procedure)


def first_step(record: DeploymentRecord | None, has_state: bool, target: str,
               stateful: bool) -> str:
    """:data:`FRESH`, :data:`PLAN` or :data:`REFUSE` (see the module docstring)."""
    from infrablocks.state import DEPLOYED

    if record is None and not has_state:
        return FRESH
    if (record is not None and record.status == DEPLOYED and stateful
            and record.version != target):
        return REFUSE
    return PLAN


def after_plan(plan: Plan, units: list[int]) -> str:
    """:data:`UNCHANGED`, :data:`ROLL` (``units`` are the member indexes to roll) or
    :data:`APPLY`."""
    if not plan.has_changes:
        return UNCHANGED
    return ROLL if units else APPLY


def rolling_units(plan: Plan, declaration: RollingDeclaration | None,
                  record: DeploymentRecord | None, target: str,
                  state_members: list[int]) -> list[int]:
    """Member indexes whose instance or volume attachment the plan replaces or creates again,
    in a block deployed at ``target`` with a rolling declaration: each is rolled as a unit.

    ``state_members``: the indexes of the instance group in the state (a crashed member is
    still there; Terraform plans to create it again). A new index (scale-up, volume created
    too) is not a unit: the rest of the plan creates it.
    """
    from infrablocks.state import DEPLOYED

    if declaration is None or record is None or record.status != DEPLOYED \
            or record.version != target:
        return []
    bases = {declaration.instances, declaration.attachments} - {None}
    units = set()
    for change in plan.changes:
        if change.deposed or not isinstance(change.index, int):
            continue
        base = change.address.rsplit("[", 1)[0]
        if base in bases and change.action in ("replace", "create") \
                and change.index in state_members:
            units.add(change.index)
    return sorted(units)


def reasons(record: DeploymentRecord | None, has_state: bool, target: str,
            code: ModuleDigest, inputs: Mapping[str, str]) -> list[str]:
    """Why the block may need an apply, known before planning (empty: only Terraform's plan
    can tell — drift of the infrastructure itself)."""
    from infrablocks.release.digest import ModuleDigest, changed_inputs
    from infrablocks.state import DEPLOYED

    if record is None:
        return ["not deployed yet" if not has_state else
                "state without a deployment record (an interrupted first create)"]
    found = []
    if record.status != DEPLOYED:
        found.append(f"the last operation did not finish (record `{record.status}`)")
    if record.version != target:
        found.append(f"version {record.version} → {target}")
        return found
    recorded = ModuleDigest.from_json(record.code_digest)
    if recorded is not None and recorded.digest != code.digest:
        found.append("code edited since applied: " + ", ".join(code.differences(recorded)))
    applied_inputs = record.input_digests
    if applied_inputs is not None:
        changed = changed_inputs(inputs, applied_inputs)
        if changed:
            found.append("inputs changed: " + ", ".join(changed))
    return found


def unchanged_reasons(record: DeploymentRecord | None, found: list[str]) -> list[str]:
    """What to say of a block whose plan is empty: nothing for a ``deployed`` record; for a
    record the last operation left unfinished (``failed``, ``creating``) or state without a
    record, those reasons (``found``, from :func:`reasons`) and that the record is completed
    once the block is ready — Terraform had nothing left to do."""
    from infrablocks.state import DEPLOYED

    if record is not None and record.status == DEPLOYED:
        return []
    unfinished = [r for r in found if r.startswith(("the last operation", "state without"))]
    return [*unfinished, "nothing left for Terraform to do: recorded `deployed` once ready"]


def stale_inputs(record: DeploymentRecord | None, inputs: Mapping[str, str],
                 changed_upstream: set[str], requires: set[str]) -> bool:
    """Whether a deployed block outside the run must be re-applied: its inputs now differ from
    those it was applied with. A record older than input digests knows only that a
    dependency's outputs changed in this run (``changed_upstream``)."""
    from infrablocks.release.digest import changed_inputs

    if record is None:
        return False
    applied = record.input_digests
    if applied is None:
        return bool(changed_upstream & requires)
    return bool(changed_inputs(inputs, applied))


def plan_counts(plan: Plan | None) -> dict[str, int]:
    """``{"add": n, "change": n, "replace": n, "destroy": n}`` of a plan (Terraform's words)."""
    counts = {"add": 0, "change": 0, "replace": 0, "destroy": 0}
    if plan is None:
        return counts
    words = {"create": "add", "update": "change", "replace": "replace", "delete": "destroy"}
    for action, count in plan.counts().items():
        if action in words:
            counts[words[action]] += count
    return counts


def record_extra(code: ModuleDigest, inputs: Mapping[str, str],
                 requires: Mapping[str, str], source: str | None,
                 previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``extra`` of a deployment record: what the deployment was made from."""
    from infrablocks.release.digest import inputs_digest
    from infrablocks.state.records import EXTRA_CODE, EXTRA_INPUTS, EXTRA_REQUIRES, EXTRA_SOURCE

    extra = dict(previous or {})
    extra[EXTRA_CODE] = code.to_json()
    extra[EXTRA_INPUTS] = {"digest": inputs_digest(inputs), "variables": dict(inputs)}
    extra[EXTRA_REQUIRES] = dict(sorted(requires.items()))
    if source:
        extra[EXTRA_SOURCE] = source
    return extra
