"""Service health checks: the gates a rolling upgrade passes between units.

A check knows one service (etcd, Patroni, an HTTP endpoint …) and answers, for the members of an
instance group, whether the cluster is healthy, who leads, whether a replaced member rejoined,
and can move leadership off a member. The rolling engine never knows which service it upgrades.

A check is built by a *factory* ``factory(context: CheckContext) -> ServiceCheck``; built-ins are
registered by name (see ``infrablocks.health.BUILTIN_CHECKS``), a block may name its own factory
as ``"package.module:function"`` or a command (``infrablocks.health.command.CommandCheck``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["CheckContext", "GateResult", "Member", "ServiceCheck", "CheckFactory"]


@dataclass
class Member:
    """One instance of the instance group, read from the block's Terraform state."""

    index: int
    name: str
    instance_address: str            # e.g. 'localcloud_instance.member[0]'
    attachment_address: str | None   # e.g. 'localcloud_volume_attachment.member[0]'
    instance_id: str
    private_ip: str
    volume_id: str | None = None
    console_log: str | None = None   # where the instance's output goes, for evidence

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "name": self.name,
            "instance_address": self.instance_address,
            "attachment_address": self.attachment_address,
            "instance_id": self.instance_id, "private_ip": self.private_ip,
            "volume_id": self.volume_id, "console_log": self.console_log,
        }


@dataclass
class GateResult:
    """The answer of one gate. ``evidence`` is printed (as JSON) when a gate fails."""

    ok: bool
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def passed(cls, summary: str, **evidence: Any) -> GateResult:
        return cls(True, summary, dict(evidence))

    @classmethod
    def failed(cls, summary: str, **evidence: Any) -> GateResult:
        return cls(False, summary, dict(evidence))


@dataclass
class CheckContext:
    """What a check factory gets: which block it guards and the declaration's options.

    ``options`` is the ``check_options`` table of the rolling declaration (ports, bounds …);
    ``outputs`` are the block's Terraform outputs (sensitive ones included, e.g. passwords);
    ``block_dir`` is the block version's directory (for command checks given relative paths);
    ``ops`` the environment's platform steps (``cloud.ops.CloudOps``), for instance-level checks.
    """

    block: str
    environment: str
    options: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    block_dir: str | None = None
    ops: Any = None


@runtime_checkable
class ServiceCheck(Protocol):
    def cluster_health(self, members: list[Member]) -> GateResult:
        """All members up and in the cluster, quorum, exactly one leader, replicas caught up."""
        ...

    def leader(self, members: list[Member]) -> Member | None:
        """The member that leads now, or None (no leader, or the service has none)."""
        ...

    def member_healthy(self, member: Member, members: list[Member]) -> GateResult:
        """``member`` serves and has rejoined the cluster formed by ``members``."""
        ...

    def move_leader_off(self, member: Member, members: list[Member]) -> None:
        """Hand leadership to another healthy member if ``member`` leads; may no-op."""
        ...


class CheckFactory(Protocol):
    def __call__(self, context: CheckContext) -> ServiceCheck:
        ...
