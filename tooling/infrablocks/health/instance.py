"""Platform gates of a rolling unit, through ``CloudOps``: the instance runs, its volume is back.

They do not know the service; the service's own gates are the ``ServiceCheck``. Volume contents
are checked only where the platform can look inside a volume (the local cloud's
``read_volume_marker`` / ``volume_mounted_by``); elsewhere the attachment is what is checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrablocks.cloud.ops import CloudOpsError
from infrablocks.errors import ConfigError
from infrablocks.health.base import CheckContext, GateResult, Member

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


class InstancesCheck:
    """``check = "instances"``: the service check of a platform whose instances run no service
    (an EC2 emulator such as moto): instance-level gates only, through the platform's
    ``CloudOps``. The cluster is healthy when every member's instance runs and finished booting
    (with its volume attached); a member has rejoined when its instance has; there is no leader
    to move. It proves nothing about the service: declare the service's own check wherever the
    instances really run it.
    """

    def __init__(self, context: CheckContext) -> None:
        if context.ops is None:
            raise ConfigError(f"check 'instances' of block {context.block!r} needs the "
                              "platform's steps (CheckContext.ops)")
        self.ops = context.ops

    def _member(self, member: Member) -> GateResult:
        running = instance_running(self.ops, member)
        if not running.ok:
            return running
        volume = volume_back(self.ops, member, None, None)
        if not volume.ok:
            return volume
        return GateResult(True, running.summary, {**running.evidence, **volume.evidence})

    def cluster_health(self, members: list[Member]) -> GateResult:
        results = {m.name: self._member(m) for m in members}
        bad = [r.summary for r in results.values() if not r.ok]
        evidence = {name: r.evidence for name, r in results.items()}
        if not members:
            return GateResult(False, "no members", evidence)
        if bad:
            return GateResult(False, "; ".join(bad), evidence)
        running = f"{len(members)} instance{'' if len(members) == 1 else 's'} running"
        return GateResult(True, f"{running} (instance-level gates only)", evidence)

    def leader(self, members: list[Member]) -> Member | None:
        return None

    def member_healthy(self, member: Member, members: list[Member]) -> GateResult:
        return self._member(member)

    def move_leader_off(self, member: Member, members: list[Member]) -> None:
        return None
