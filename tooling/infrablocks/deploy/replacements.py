"""Replacements that need a stopped instance first.

Replacing an instance that has a volume attached means detaching the volume, which a running
instance refuses (as a mounted EBS volume does). Whoever applies such a plan — an update by
`doit create`, a dependent's re-apply after an upgrade — stops those instances first: the same
pre-operation the rolling engine does per unit.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infrablocks.cloud.ops import CloudOps
    from infrablocks.terraform.plan import Plan

STOP_TIMEOUT = 60.0  # seconds for an instance to stop before its volume is detached


def instances_to_stop(plan: Plan) -> list[str]:
    """Ids of the instances the plan replaces together with a volume attachment of theirs.

    Platform-neutral: an attachment is a replaced resource whose prior state names both an
    ``instance_id`` and a ``volume_id`` (``localcloud_volume_attachment``,
    ``aws_volume_attachment``); its instance is stopped when the plan replaces it too.
    """
    replaced = [c for c in plan.resource_changes if c.action == "replace" and not c.deposed]
    replaced_ids = {_attr(c.before, "id") for c in replaced} - {None}
    wanted: list[str] = []
    for change in replaced:
        instance_id = _attr(change.before, "instance_id")
        if (instance_id and _attr(change.before, "volume_id") and instance_id in replaced_ids
                and instance_id not in wanted):
            wanted.append(instance_id)
    return wanted


def _attr(values: Any, key: str) -> str | None:
    value = values.get(key) if isinstance(values, dict) else None
    return str(value) if value else None


def stop_for_replacement(ops: CloudOps, instance_id: str) -> None:
    """Stop an instance Terraform is about to replace together with its volume attachment."""
    from infrablocks.cloud.ops import CloudNotFoundError

    with contextlib.suppress(CloudNotFoundError):   # already gone: Terraform creates it anew
        if ops.describe_instance(instance_id).state not in ("stopped", "terminated"):
            ops.stop_instance(instance_id, STOP_TIMEOUT)
