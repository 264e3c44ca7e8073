"""Platform gates of a rolling unit, through ``CloudOps``: the instance runs, its volume is back.

They do not know the service; the service's own gates are the ``ServiceCheck``. Volume contents
are checked only where the platform can look inside a volume (the local cloud's
``read_volume_marker`` / ``volume_mounted_by``); elsewhere the attachment is what is checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrablocks.cloud.ops import CloudOpsError
from infrablocks.health.base import GateResult, Member

if TYPE_CHECKING:
    from infrablocks.cloud.ops import CloudOps


def instance_running(ops: CloudOps, member: Member) -> GateResult:
    """The member's instance runs and finished booting."""
    try:
        info = ops.describe_instance(member.instance_id)
        ready = info.state == "running" and ops.instance_ready(member.instance_id)
    except CloudOpsError as exc:
        return GateResult.failed(f"{member.name}: {exc}", instance=member.instance_id)
    evidence = {"instance": member.instance_id, "state": info.state, "ready": ready,
                "console_log": info.console_log}
    if info.state != "running":
        return GateResult(False, f"{member.name} ({member.instance_id}) is {info.state}",
                          evidence)
    if not ready:
        return GateResult(False, f"{member.name} ({member.instance_id}) runs but has not "
                                 "finished booting", evidence)
    return GateResult(True, f"{member.name} ({member.instance_id}) running", evidence)


def volume_back(ops: CloudOps, member: Member, marker_name: str | None,
                marker_text: str | None) -> GateResult:
    """The same volume is attached to the new instance (and mounted, with its marker)."""
    if member.volume_id is None:
        return GateResult.passed(f"{member.name} has no volume attachment")
    try:
        state = ops.volume_state(member.volume_id)
        devices = ops.describe_instance(member.instance_id).volumes
    except CloudOpsError as exc:
        return GateResult.failed(f"{member.name}: {exc}", volume=member.volume_id)
    evidence: dict[str, object] = {"volume": member.volume_id, "state": state,
                                   "instance_devices": devices}
    if state != "in-use" or member.volume_id not in devices.values():
        return GateResult(False, f"volume {member.volume_id} is {state}, not attached to "
                                 f"{member.instance_id}", evidence)
    mounted_by = getattr(ops, "volume_mounted_by", None)
    if mounted_by is not None:
        evidence["mounted_by"] = owner = mounted_by(member.volume_id)
        if owner != member.instance_id:
            return GateResult(False, f"volume {member.volume_id} is not mounted by "
                                     f"{member.instance_id} (mounted by {owner})", evidence)
    read_marker = getattr(ops, "read_volume_marker", None)
    if read_marker is not None and marker_name and marker_text is not None:
        found = read_marker(member.volume_id, marker_name)
        evidence["marker"] = {"name": marker_name, "expected": marker_text, "found": found}
        if found != marker_text:
            return GateResult(False, f"volume {member.volume_id} lost its data: marker "
                                     f"{marker_name} is {found!r}", evidence)
    return GateResult(True, f"volume {member.volume_id} attached and mounted with its data",
                      evidence)
