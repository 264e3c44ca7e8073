"""The local cloud's objects as the API returns them, and their JSON records on disk."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infrablocks.private_files import write_atomic


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    version: str
    digest: str                 # "sha256:<hex>" over the artifact's names, modes and contents
    path: str                   # the artifact directory (LOCALCLOUD_IMAGE_DIR)
    tags: tuple[str, ...] = ()
    registered_at: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"] = list(self.tags)
        return data


@dataclass(frozen=True)
class Attachment:
    volume_id: str
    instance_id: str
    device: str
    attached_at: str = ""


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    image_id: str
    private_ip: str
    state: str                  # pending | running | stopping | stopped | terminated
    ready: bool                 # the entrypoint wrote INSTANCE_DIR/ready (and still runs)
    pid: int | None
    path: str                   # the instance directory
    user_data: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)   # device name → volume id
    state_reason: str = ""      # why it is stopped: "user" (stop_instance) or "process exited"
    launched_at: str = ""
    client_token: str = ""      # EC2's ClientToken of the launch ("" when none was given)

    @property
    def crashed(self) -> bool:
        """Stopped without anyone asking: the process died on its own."""
        return self.state == "stopped" and self.state_reason == "process exited"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Volume:
    id: str
    name: str
    size_gb: int
    state: str                  # available | in-use
    path: str                   # the data directory the instance sees
    tags: dict[str, str] = field(default_factory=dict)
    attachment: Attachment | None = None
    created_at: str = ""
    client_token: str = ""      # as Instance.client_token

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` so that readers see the old or the new record, never half of one."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None if it does not exist (e.g. removed concurrently)."""
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return record
