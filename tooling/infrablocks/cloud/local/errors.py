"""Errors of the local cloud, named after their EC2 counterparts where there is one."""

from __future__ import annotations

from infrablocks.errors import ConfigError, InfrablocksError


class LocalCloudError(InfrablocksError):
    """An operation on the local cloud failed (exit 1)."""


class NotFoundError(LocalCloudError):
    """No image / instance / volume matches; the message names what exists."""


NotFound = NotFoundError  # the name the architecture page uses


class ImageConflictError(LocalCloudError):
    """name@version is already registered with different content: versions are immutable."""


class VolumeInUseError(LocalCloudError):
    """The volume is attached (to a running instance, for a detach) — as EBS's VolumeInUse."""


class InvalidStateError(LocalCloudError):
    """The object is not in a state that allows the operation (e.g. start a terminated one)."""


class InvalidParameterError(ConfigError):
    """A bad argument (IP outside loopback, device name, tag, ...): exit 2."""


class StateTimeoutError(LocalCloudError):
    """wait_for_state gave up; the message names the state reached."""
