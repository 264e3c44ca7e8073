"""The cloud operations a rolling upgrade needs, independent of the platform.

The rolling engine (``infrablocks.rolling``) only ever talks to a :class:`CloudOps`; the local
cloud implements it in ``infrablocks.cloud.local.ops.LocalCloudOps`` and AWS (boto3 EC2) in
``infrablocks.cloud.aws.ops.AwsCloudOps``. Nothing platform-specific leaks past this interface:
states use EC2's vocabulary (instances ``pending | running | stopping | stopped | terminated``,
volumes ``available | in-use``) and failures raise the errors below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from infrablocks.errors import InfrablocksError

__all__ = [
    "INSTANCE_STATES", "VOLUME_STATES", "CloudOps", "InstanceInfo",
    "CloudOpsError", "CloudNotFoundError", "CloudTimeoutError",
]

INSTANCE_STATES = ("pending", "running", "stopping", "stopped", "terminated")
VOLUME_STATES = ("available", "in-use")


class CloudOpsError(InfrablocksError):
    """A cloud operation failed (exit 1); the message names the instance / volume."""


class CloudNotFoundError(CloudOpsError):
    """The instance or volume does not exist (any more)."""


class CloudTimeoutError(CloudOpsError):
    """A wait gave up; the message names the state wanted and the state last seen."""

    def __init__(self, message: str, *, wanted: str = "", last_seen: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.wanted = wanted
        self.last_seen = last_seen


@dataclass(frozen=True)
class InstanceInfo:
    """One instance as the platform describes it."""

    id: str
    state: str                                   # one of INSTANCE_STATES
    private_ip: str
    tags: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, str] = field(default_factory=dict)   # device name → volume id
    image_id: str = ""
    console_log: str | None = None               # a path to read when a gate fails, if any


@runtime_checkable
class CloudOps(Protocol):
    """Stop / start / describe / wait: the platform steps of a rolling upgrade.

    Every wait polls until the state is reached or ``timeout`` seconds pass, then raises
    :class:`CloudTimeoutError`. An unknown id raises :class:`CloudNotFoundError`.
    """

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        ...

    def stop_instance(self, instance_id: str, timeout: float) -> None:
        """Stop the instance; returns when it is ``stopped`` (no-op if already stopped)."""
        ...

    def start_instance(self, instance_id: str, timeout: float) -> None:
        """Start a stopped instance; returns when it is ``running``."""
        ...

    def wait_instance_state(self, instance_id: str, state: str, timeout: float) -> None:
        ...

    def volume_state(self, volume_id: str) -> str:
        """``"in-use"`` or ``"available"``."""
        ...

    def wait_volume_state(self, volume_id: str, state: str, timeout: float) -> None:
        ...

    def instance_ready(self, instance_id: str) -> bool:
        """The instance finished booting (local: the ready marker; AWS: status checks ok)."""
        ...
