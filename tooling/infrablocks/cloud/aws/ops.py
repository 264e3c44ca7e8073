"""The rolling-upgrade platform steps on AWS: EC2 instances and EBS volumes through boto3.

:class:`AwsCloudOps` implements :class:`infrablocks.cloud.ops.CloudOps` with the EC2 API the
same way an operator would by hand: ``StopInstances`` then the ``instance_stopped`` waiter,
``StartInstances`` then ``instance_running``, the ``volume_available`` / ``volume_in_use``
waiters, and ``DescribeInstanceStatus`` (both status checks ``ok``) for readiness.

It takes an EC2 *client* (``boto3.client("ec2", ...)``), so the caller chooses the session,
region, credentials and endpoint; the tests point it at moto server on 127.0.0.1.

Conventions shared with the local cloud (so the rolling engine compares like with like):

- device names are reported without ``/dev/`` (``/dev/xvdf`` → ``xvdf``), as the local cloud
  names them;
- every wait takes a ``timeout`` in seconds; it becomes the waiter's ``MaxAttempts`` at the
  client's ``poll_interval`` (AWS's own waiters poll every 15 s; 5 s is the default here);
- failures raise :mod:`infrablocks.cloud.ops` errors naming the instance or volume and the
  state last seen — never a botocore traceback;
- stopping or starting a *terminated* instance raises ``CloudNotFoundError``: EC2 still
  describes it for about an hour, but like a terminated local-cloud instance it is gone (the
  engine relies on that when it resumes after a crash in the middle of a replacement).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from infrablocks.cloud.ops import (
    INSTANCE_STATES,
    VOLUME_STATES,
    CloudNotFoundError,
    CloudOpsError,
    CloudTimeoutError,
    InstanceInfo,
)
from infrablocks.waiting import poll

__all__ = ["AwsCloudOps", "botocore_error", "device_name", "instance_info", "translated",
           "waiter_config"]

DEFAULT_POLL_INTERVAL = 5.0

# wanted instance state → the boto3 waiter that reaches it
_INSTANCE_WAITERS = {
    "running": "instance_running",
    "stopped": "instance_stopped",
    "terminated": "instance_terminated",
}
_VOLUME_WAITERS = {"available": "volume_available", "in-use": "volume_in_use"}

T = TypeVar("T")


def waiter_config(timeout: float, poll_interval: float) -> dict[str, float | int]:
    """The ``WaiterConfig`` that polls every ``poll_interval`` s for about ``timeout`` s.

    A waiter checks at once, then after each delay: ``n`` attempts span ``(n-1)·delay``.
    """
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be positive, not {poll_interval!r}")
    attempts = math.floor(max(timeout, 0.0) / poll_interval) + 1
    return {"Delay": poll_interval, "MaxAttempts": max(1, attempts)}


def device_name(aws_device: str) -> str:
    """``/dev/xvdf`` → ``xvdf``: the name the local cloud uses for the same attachment."""
    return aws_device.removeprefix("/dev/")


def instance_info(description: Mapping[str, Any]) -> InstanceInfo:
    """An :class:`InstanceInfo` from one instance of ``DescribeInstances``."""
    volumes = {
        device_name(mapping["DeviceName"]): mapping["Ebs"]["VolumeId"]
        for mapping in description.get("BlockDeviceMappings", [])
        if "Ebs" in mapping and "DeviceName" in mapping
    }
    return InstanceInfo(
        id=description["InstanceId"],
        state=description.get("State", {}).get("Name", "unknown"),
        private_ip=description.get("PrivateIpAddress", ""),
        tags={tag["Key"]: tag["Value"] for tag in description.get("Tags", [])},
        volumes=volumes,
        image_id=description.get("ImageId", ""),
        console_log=None,   # on AWS: `aws ec2 get-console-output --instance-id ID`
    )


class AwsCloudOps:
    """:class:`~infrablocks.cloud.ops.CloudOps` on EC2/EBS through a boto3 EC2 client."""

    def __init__(self, ec2_client: Any, *, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        waiter_config(0, poll_interval)  # validates poll_interval
        self.ec2 = ec2_client
        self.poll_interval = poll_interval

    @classmethod
    def connect(cls, *, region: str, endpoint_url: str | None = None,
                profile: str | None = None,
                poll_interval: float = DEFAULT_POLL_INTERVAL) -> AwsCloudOps:
        """Build the EC2 client from a boto3 session (profile / environment credentials)."""
        import boto3

        session = boto3.session.Session(profile_name=profile, region_name=region)
        return cls(session.client("ec2", endpoint_url=endpoint_url),
                   poll_interval=poll_interval)

    # ------------------------------------------------------------------ instances

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        with translated(f"instance {instance_id}"):
            response = self.ec2.describe_instances(InstanceIds=[instance_id])
        for reservation in response.get("Reservations", []):
            for description in reservation.get("Instances", []):
                if description.get("InstanceId") == instance_id:
                    return instance_info(description)
        raise CloudNotFoundError(f"instance {instance_id} does not exist")

    def stop_instance(self, instance_id: str, timeout: float) -> None:
        """``StopInstances``, then wait until ``stopped`` (a no-op for a stopped instance)."""
        current = self.describe_instance(instance_id).state
        if current == "stopped":
            return
        if current == "terminated":   # EC2 shows it for a while; for the engine it is gone
            raise CloudNotFoundError(f"cannot stop instance {instance_id}: it is terminated")
        with translated(f"instance {instance_id}"):
            self.ec2.stop_instances(InstanceIds=[instance_id])
        self.wait_instance_state(instance_id, "stopped", timeout)

    def start_instance(self, instance_id: str, timeout: float) -> None:
        """``StartInstances``, then wait until ``running`` (status checks: instance_ready)."""
        current = self.describe_instance(instance_id).state
        if current == "terminated":
            raise CloudNotFoundError(f"cannot start instance {instance_id}: it is terminated")
        if current != "running":
            if current == "stopping":   # StartInstances refuses a stopping instance
                self.wait_instance_state(instance_id, "stopped", timeout)
            with translated(f"instance {instance_id}"):
                self.ec2.start_instances(InstanceIds=[instance_id])
        self.wait_instance_state(instance_id, "running", timeout)

    def wait_instance_state(self, instance_id: str, state: str, timeout: float) -> None:
        if state not in INSTANCE_STATES:
            raise CloudOpsError(f"unknown instance state {state!r} for instance {instance_id}; "
                                f"valid: {', '.join(INSTANCE_STATES)}")
        waiter = _INSTANCE_WAITERS.get(state)
        if waiter is None:   # pending / stopping: transitional, no EC2 waiter
            self._poll(f"instance {instance_id}", state, timeout,
                       lambda: self.describe_instance(instance_id).state)
            return
        self._wait(waiter, f"instance {instance_id}", state, timeout,
                   lambda: self.describe_instance(instance_id).state,
                   InstanceIds=[instance_id])

    def instance_ready(self, instance_id: str) -> bool:
        """Running with both EC2 status checks (system and instance) ``ok``."""
        checks = self.status_checks(instance_id)
        return checks["state"] == "running" and checks["system"] == checks["instance"] == "ok"

    def status_checks(self, instance_id: str) -> dict[str, str]:
        """``{"state": ..., "system": ..., "instance": ...}`` from ``DescribeInstanceStatus``
        (``not-applicable`` while not running) — the evidence when readiness fails."""
        with translated(f"instance {instance_id}"):
            response = self.ec2.describe_instance_status(InstanceIds=[instance_id],
                                                         IncludeAllInstances=True)
        for status in response.get("InstanceStatuses", []):
            if status.get("InstanceId") == instance_id:
                return {"state": status.get("InstanceState", {}).get("Name", "unknown"),
                        "system": status.get("SystemStatus", {}).get("Status", "unknown"),
                        "instance": status.get("InstanceStatus", {}).get("Status", "unknown")}
        raise CloudNotFoundError(f"instance {instance_id} has no status (does it exist?)")

    def wait_instance_ready(self, instance_id: str, timeout: float) -> None:
        """Wait (``instance_status_ok``) until both status checks pass."""
        self._wait("instance_status_ok", f"instance {instance_id}", "status checks ok",
                   timeout, lambda: _format_checks(self.status_checks(instance_id)),
                   InstanceIds=[instance_id], IncludeAllInstances=True)

    # ------------------------------------------------------------------ volumes

    def volume_state(self, volume_id: str) -> str:
        """The EBS state: ``available`` or ``in-use`` (also ``creating``, ``deleting`` …)."""
        with translated(f"volume {volume_id}"):
            response = self.ec2.describe_volumes(VolumeIds=[volume_id])
        for volume in response.get("Volumes", []):
            if volume.get("VolumeId") == volume_id:
                return str(volume.get("State", "unknown"))
        raise CloudNotFoundError(f"volume {volume_id} does not exist")

    def wait_volume_state(self, volume_id: str, state: str, timeout: float) -> None:
        if state not in VOLUME_STATES:
            raise CloudOpsError(f"unknown volume state {state!r} for volume {volume_id}; "
                                f"valid: {', '.join(VOLUME_STATES)}")
        self._wait(_VOLUME_WAITERS[state], f"volume {volume_id}", state, timeout,
                   lambda: self.volume_state(volume_id), VolumeIds=[volume_id])

    # ------------------------------------------------------------------ waiting

    def _wait(self, waiter_name: str, subject: str, wanted: str, timeout: float,
              last_seen: Callable[[], str], **request: Any) -> None:
        """Run a boto3 waiter; translate its failure into a CloudOps error naming ``subject``,
        the state wanted and the state it was last seen in."""
        from botocore.exceptions import BotoCoreError, ClientError, WaiterError

        waiter = self.ec2.get_waiter(waiter_name)
        try:
            waiter.wait(**request, WaiterConfig=waiter_config(timeout, self.poll_interval))
        except WaiterError as error:  # a BotoCoreError: caught before the general case
            response = error.last_response or {}
            code = response.get("Error", {}).get("Code", "")
            if code.endswith((".NotFound", ".Malformed")):
                raise CloudNotFoundError(f"{subject} does not exist ({code})") from None
            seen = _describe_quietly(last_seen)   # raises CloudNotFoundError if gone
            if "Max attempts exceeded" in str(error):
                raise CloudTimeoutError(
                    f"{subject} is still {seen} after {timeout:g}s waiting for {wanted}",
                    wanted=wanted, last_seen=seen) from None
            reason = response.get("Error", {}).get("Message") or str(error)
            raise CloudOpsError(f"{subject} can no longer become {wanted}: it is {seen} "
                                f"({reason})") from None
        except (ClientError, BotoCoreError) as error:
            raise botocore_error(subject, error) from None

    def _poll(self, subject: str, wanted: str, timeout: float,
              current: Callable[[], str]) -> None:
        polled = poll(current, lambda seen: seen == wanted, timeout=timeout,
                      interval=self.poll_interval)
        if not polled.ok:
            raise CloudTimeoutError(
                f"{subject} is still {polled.value} after {timeout:g}s waiting for {wanted}",
                wanted=wanted, last_seen=polled.value)


def _format_checks(checks: Mapping[str, str]) -> str:
    return (f"{checks['state']} (system status {checks['system']}, "
            f"instance status {checks['instance']})")


def _describe_quietly(last_seen: Callable[[], str]) -> str:
    """The state now, for a message; a vanished object raises CloudNotFoundError."""
    try:
        return last_seen()
    except CloudNotFoundError:
        raise
    except CloudOpsError as error:
        return f"unknown ({error.message})"


@contextmanager
def translated(subject: str) -> Iterator[None]:
    """botocore errors raised inside → CloudOps errors naming ``subject``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise botocore_error(subject, error) from None


def botocore_error(subject: str, error: Exception) -> CloudOpsError:
    """The CloudOps error for a botocore error about ``subject`` (an instance or volume)."""
    from botocore.exceptions import ClientError

    if not isinstance(error, ClientError):   # no credentials, endpoint unreachable, ...
        return CloudOpsError(f"{subject}: the EC2 API could not be reached: {error}",
                             hint="check the region, credentials and endpoint")
    details = error.response.get("Error", {})
    code = details.get("Code", "Unknown")
    text = f"{subject}: {code}: {details.get('Message', str(error))}"
    if code.endswith((".NotFound", ".Malformed")):
        return CloudNotFoundError(text)
    if code in ("AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId"):
        return CloudOpsError(text, hint="the credentials in use may not call this EC2 API")
    return CloudOpsError(text)
