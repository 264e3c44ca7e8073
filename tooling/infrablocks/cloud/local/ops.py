"""``CloudOps`` on the local cloud (see ``infrablocks.cloud.ops``).

Besides the protocol, the local cloud can look inside a volume (its data directory), which the
rolling engine uses when available to prove a replaced member kept its data: a marker file
written before the upgrade must still be there afterwards, and the image's ``.mounted`` file
must name the new instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.cloud.ops import CloudNotFoundError, CloudOpsError, CloudTimeoutError, InstanceInfo
from infrablocks.private_files import write_atomic
from infrablocks.waiting import poll

if TYPE_CHECKING:
    from infrablocks.cloud.local.control import Instance, LocalCloud

POLL_SECONDS = 0.1


class LocalCloudOps:
    def __init__(self, cloud: LocalCloud, *, poll: float = POLL_SECONDS) -> None:
        self.cloud = cloud
        self.poll = poll

    def _instance(self, instance_id: str) -> Instance:
        from infrablocks.cloud.local.errors import NotFoundError

        try:
            return self.cloud.get_instance(instance_id)
        except NotFoundError as exc:
            raise CloudNotFoundError(f"instance {instance_id} does not exist") from exc

    def describe_instance(self, instance_id: str) -> InstanceInfo:
        instance = self._instance(instance_id)
        return InstanceInfo(id=instance.id, state=instance.state,
                            private_ip=instance.private_ip, tags=dict(instance.tags),
                            volumes=dict(instance.devices), image_id=instance.image_id,
                            console_log=str(Path(instance.path) / "console.log"))

    def stop_instance(self, instance_id: str, timeout: float) -> None:
        from infrablocks.cloud.local.errors import LocalCloudError

        self._instance(instance_id)
        try:
            # the grace before SIGKILL leaves a little of the timeout for the bookkeeping
            self.cloud.stop_instance(instance_id, grace=max(1.0, timeout - 2.0))
        except LocalCloudError as exc:
            raise CloudOpsError(f"stopping instance {instance_id}: {exc}") from exc
        self.wait_instance_state(instance_id, "stopped", timeout)

    def start_instance(self, instance_id: str, timeout: float) -> None:
        from infrablocks.cloud.local.errors import LocalCloudError

        self._instance(instance_id)
        try:
            self.cloud.start_instance(instance_id)
        except LocalCloudError as exc:
            raise CloudOpsError(f"starting instance {instance_id}: {exc}") from exc
        self.wait_instance_state(instance_id, "running", timeout)

    def wait_instance_state(self, instance_id: str, state: str, timeout: float) -> None:
        polled = poll(lambda: self._instance(instance_id).state, lambda current: current == state,
                      timeout=timeout, interval=self.poll)
        if not polled.ok:
            raise CloudTimeoutError(
                f"instance {instance_id} is {polled.value} after {timeout:g}s waiting for {state}",
                wanted=state, last_seen=polled.value)

    def volume_state(self, volume_id: str) -> str:
        from infrablocks.cloud.local.errors import NotFoundError

        try:
            return self.cloud.get_volume(volume_id).state
        except NotFoundError as exc:
            raise CloudNotFoundError(f"volume {volume_id} does not exist") from exc

    def wait_volume_state(self, volume_id: str, state: str, timeout: float) -> None:
        polled = poll(lambda: self.volume_state(volume_id), lambda current: current == state,
                      timeout=timeout, interval=self.poll)
        if not polled.ok:
            raise CloudTimeoutError(
                f"volume {volume_id} is {polled.value} after {timeout:g}s waiting for {state}",
                wanted=state, last_seen=polled.value)

    def instance_ready(self, instance_id: str) -> bool:
        return self._instance(instance_id).ready

    # -- volume inspection (local cloud only; the engine uses it when present) -----------------

    def _volume_dir(self, volume_id: str) -> Path:
        from infrablocks.cloud.local.errors import NotFoundError

        try:
            return Path(self.cloud.get_volume(volume_id).path)
        except NotFoundError as exc:
            raise CloudNotFoundError(f"volume {volume_id} does not exist") from exc

    def write_volume_marker(self, volume_id: str, name: str, text: str) -> None:
        write_atomic(self._volume_dir(volume_id) / name, text, mode=None)

    def read_volume_marker(self, volume_id: str, name: str) -> str | None:
        try:
            return (self._volume_dir(volume_id) / name).read_text()
        except FileNotFoundError:
            return None

    def volume_mounted_by(self, volume_id: str) -> str | None:
        """The instance id the image's entrypoint wrote into ``.mounted`` (None: not mounted)."""
        text = self.read_volume_marker(volume_id, ".mounted")
        return text.strip() if text else None
