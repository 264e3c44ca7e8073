"""The local cloud's control plane: the only code that touches ``LOCALCLOUD_ROOT``.

It is the local twin of the EC2 calls the blocks and the orchestrator need (images, instances,
volumes, attachments). Every mutation holds an exclusive ``fcntl`` lock on ``ROOT/.lock`` so that
several Terraform runs (each with its own provider processes) and the orchestrator can work on
the same cloud at once; records are JSON files replaced atomically, so reads need no lock.
Stopping an instance releases the lock while the process winds down (up to its grace period).

Layout::

    images/<img-id>/      the image artifact (entrypoint + files) and image.json
    instances/<i-id>/     instance.json, user_data.json, console.log, devices/<dev> → volume, ready
    volumes/<vol-id>/     volume.json and data/ (what the instance sees)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infrablocks.cloud.local import process
from infrablocks.cloud.local.digest import artifact_digest
from infrablocks.cloud.local.errors import (
    ImageConflictError,
    InvalidParameterError,
    InvalidStateError,
    LocalCloudError,
    NotFoundError,
    StateTimeoutError,
    VolumeInUseError,
)
from infrablocks.cloud.local.records import (
    Attachment,
    Image,
    Instance,
    Volume,
    read_json,
    write_json,
)
from infrablocks.errors import ConfigError
from infrablocks.waiting import poll

__all__ = [
    "ENV_ROOT", "LocalCloud", "Image", "Instance", "Volume", "Attachment",
    "NotFoundError", "ImageConflictError", "VolumeInUseError", "InvalidStateError",
    "InvalidParameterError", "StateTimeoutError", "LocalCloudError",
]

ENV_ROOT = "LOCALCLOUD_ROOT"
DEFAULT_ROOT_NAME = "cloud"   # <repo>/.infrablocks/cloud
IMAGE_RECORD = "image.json"
INSTANCE_RECORD = "instance.json"
VOLUME_RECORD = "volume.json"
READY_MARKER = "ready"
CONSOLE_LOG = "console.log"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_DEVICE_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_ID_RE = re.compile(r"^(img|i|vol)-[0-9a-f]{8,32}$")

# Environment variables of whoever starts an instance (Terraform, its plugin protocol, the tool)
# that an instance must not inherit.
_PRIVATE_ENV_PREFIXES = ("TF_", "PLUGIN_", "LOCALCLOUD_", "CHECKPOINT_", "INFRABLOCKS_")

_ALIVE_STATES = ("pending", "running", "stopping")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _version_key(version: str) -> tuple[Any, ...]:
    core, _, pre = version.partition("-")
    numbers = tuple(int(part) if part.isdigit() else 0 for part in core.split("+")[0].split("."))
    # a release sorts after its pre-releases
    return numbers, pre == "", pre


def _values(value: str | Iterable[str]) -> set[str]:
    return {value} if isinstance(value, str) else {str(v) for v in value}


def default_root(repo_root: Path) -> Path:
    """Where a repository's local cloud lives: ``$LOCALCLOUD_ROOT`` when set, else
    ``<repo>/.infrablocks/cloud``. The one definition (the platform, ``doit cloud``, ``doit image``
    and the Terraform toolchain all ask here)."""
    from infrablocks.paths import work_dir

    return Path(os.environ.get(ENV_ROOT) or work_dir(repo_root) / DEFAULT_ROOT_NAME)


class LocalCloud:
    """The local cloud rooted at ``root`` (created on first use)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"LocalCloud({str(self.root)!r})"

    @classmethod
    def for_repo(cls, repo_root: Path) -> LocalCloud:
        """The local cloud of the repository at ``repo_root``: :func:`default_root`."""
        return cls(default_root(repo_root))

    @classmethod
    def from_env(cls, default: Path | str | None = None) -> LocalCloud:
        """The cloud named by ``LOCALCLOUD_ROOT``, else ``default``; ConfigError if neither."""
        root = os.environ.get(ENV_ROOT) or default
        if not root:
            raise ConfigError(
                f"the local cloud's directory is not set: set {ENV_ROOT} "
                "(or the provider's `root` attribute)")
        return cls(root)

    # ------------------------------------------------------------------ layout and locking

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def instances_dir(self) -> Path:
        return self.root / "instances"

    @property
    def volumes_dir(self) -> Path:
        return self.root / "volumes"

    def _ensure_layout(self) -> None:
        try:
            for directory in (self.images_dir, self.instances_dir, self.volumes_dir):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"the local cloud's directory {self.root} is not usable: {exc.strerror}",
                hint=f"point {ENV_ROOT} at a writable directory") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cloud's exclusive lock (re-entrant within a thread)."""
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._ensure_layout()
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self._local.fd = fd
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            if self._local.depth == 0:
                os.close(self._local.fd)  # closing the descriptor releases the flock

    # ------------------------------------------------------------------ images

    def register_image(self, name: str, version: str, artifact_dir: Path | str,
                       tags: Iterable[str] = (),
                       metadata: Mapping[str, str] | None = None) -> Image:
        """Copy the artifact into the cloud and register it as ``name@version``.

        The id is content-addressed (``img-`` + 12 hex of a sha256 over name, version and the
        artifact's names, modes and contents): registering the same content again returns the
        same image (adding ``tags``); different content under a registered version raises
        ImageConflictError — a version is immutable.
        """
        _check_name("image name", name)
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise InvalidParameterError(
                f"image {name}: version {version!r} is not a semantic version (e.g. 1.0.0)")
        tags = [_check_tag(tag) for tag in tags]
        artifact = Path(artifact_dir)
        _check_artifact(artifact)
        digest = artifact_digest(artifact)
        image_id = "img-" + hashlib.sha256(f"{name}@{version}\0{digest}".encode()).hexdigest()[:12]

        self._ensure_layout()
        staging = self.images_dir / f".staging-{secrets.token_hex(6)}"
        try:
            shutil.copytree(artifact, staging, symlinks=True)
            with self.locked():
                existing = [i for i in self.list_images()
                            if i.name == name and i.version == version]
                if existing and existing[0].id != image_id:
                    old = existing[0]
                    raise ImageConflictError(
                        f"image {name}@{version} is already registered as {old.id} "
                        f"(digest sha256:{old.digest[7:19]}…) with different content "
                        f"(sha256:{digest[:12]}…); an image version is immutable",
                        hint=f"give the changed image a new version (images/{name}/NEW_VERSION/); "
                             "a registered version never changes")
                if not existing:
                    target = self.images_dir / image_id
                    if target.exists():  # a half-registered leftover without its record
                        shutil.rmtree(target)
                    os.rename(staging, target)
                    record = {
                        "id": image_id, "name": name, "version": version,
                        "digest": f"sha256:{digest}", "tags": [],
                        "registered_at": _now(), "metadata": dict(metadata or {}),
                    }
                    write_json(target / IMAGE_RECORD, record)
                for tag in tags:
                    self.tag_image(image_id, tag)
                return self.get_image(image_id)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def get_image(self, image_id: str) -> Image:
        image = self._load_image(self.images_dir / str(image_id))
        if image is None:
            known = ", ".join(f"{i.id} ({i.ref})" for i in self.list_images()) or "none"
            raise NotFoundError(f"image {image_id} is not registered; registered images: {known}")
        return image

    def list_images(self) -> list[Image]:
        """Every registered image, by name then version."""
        if not self.images_dir.is_dir():
            return []
        images = [img for d in self.images_dir.iterdir()
                  if not d.name.startswith(".") and (img := self._load_image(d)) is not None]
        return sorted(images, key=lambda i: (i.name, _version_key(i.version), i.id))

    def find_image(self, name: str, version: str | None = None,
                   tag: str | None = None) -> Image:
        """The image ``name`` at ``version`` and/or carrying ``tag`` (neither: the newest)."""
        images = self.list_images()
        same_name = [i for i in images if i.name == name]
        wanted = name + (f"@{version}" if version else "") + (f" tagged {tag!r}" if tag else "")
        if not same_name:
            names = sorted({i.ref for i in images})
            raise NotFoundError(
                f"no image {wanted} is registered; registered images: "
                f"{', '.join(names) or 'none'}",
                hint=f"build and keep it with `doit image {name}@{version or 'VERSION'} --keep`")
        matches = [i for i in same_name
                   if (version is None or i.version == version) and (tag is None or tag in i.tags)]
        if not matches:
            available = ", ".join(
                i.version + (f" (tags: {', '.join(i.tags)})" if i.tags else "") for i in same_name)
            raise NotFoundError(
                f"no image {wanted} is registered; {name} has: {available}",
                hint=f"build and keep it with `doit image {name}@{version or 'VERSION'} --keep`")
        return matches[-1]

    def tag_image(self, image_id: str, tag: str) -> Image:
        """Put ``tag`` on the image; a tag names one image per name, so it moves off others."""
        _check_tag(tag)
        with self.locked():
            image = self.get_image(image_id)
            for other in self.list_images():
                if other.name == image.name and other.id != image.id and tag in other.tags:
                    self._set_image_tags(other, [t for t in other.tags if t != tag])
            if tag not in image.tags:
                self._set_image_tags(image, [*image.tags, tag])
            return self.get_image(image_id)

    def untag_image(self, image_id: str, tag: str) -> Image:
        with self.locked():
            image = self.get_image(image_id)
            self._set_image_tags(image, [t for t in image.tags if t != tag])
            return self.get_image(image_id)

    def remove_image(self, image_id: str) -> None:
        """Deregister and delete the image; refused while instances use it."""
        with self.locked():
            image = self.get_image(image_id)
            users = [i.id for i in self.describe_instances() if i.image_id == image.id]
            if users:
                raise InvalidStateError(
                    f"image {image.id} ({image.ref}) is used by "
                    f"instance{'' if len(users) == 1 else 's'} {', '.join(users)}",
                    hint="terminate them first")
            # rename first so readers never see a half-deleted image
            doomed = self.images_dir / f".removing-{image.id}-{secrets.token_hex(4)}"
            os.rename(image.path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def _set_image_tags(self, image: Image, tags: list[str]) -> None:
        path = Path(image.path) / IMAGE_RECORD
        record = read_json(path) or {}
        record["tags"] = tags
        write_json(path, record)

    def _load_image(self, directory: Path) -> Image | None:
        record = read_json(directory / IMAGE_RECORD)
        if record is None:
            return None
        return Image(id=record["id"], name=record["name"], version=record["version"],
                     digest=record["digest"], path=str(directory), tags=tuple(record["tags"]),
                     registered_at=record.get("registered_at", ""),
                     metadata=dict(record.get("metadata") or {}))

    # ------------------------------------------------------------------ instances

    def run_instance(self, *, name: str, image_id: str, private_ip: str,
                     user_data: Mapping[str, str] | None = None,
                     tags: Mapping[str, str] | None = None,
                     client_token: str | None = None) -> Instance:
        """Create an instance and start its image's entrypoint (returns it ``running``).

        ``client_token`` makes the call idempotent, as EC2's ``ClientToken``: when an instance
        that is not terminated was launched with the same token, that instance is returned as
        it is (whatever its state) and nothing is launched.
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameterError("an instance needs a non-empty name")
        ip = _check_private_ip(private_ip)
        user_data = _string_map("user_data", user_data)
        tags = _string_map("tags", tags)
        with self.locked():
            if client_token:
                for earlier in self.describe_instances(filters={"client-token": client_token}):
                    return earlier
            image = self.get_image(image_id)
            for other in self.describe_instances():
                if other.private_ip == ip:
                    raise InvalidStateError(
                        f"private IP {ip} is already used by instance {other.id} "
                        f"({other.name}, {other.state})",
                        hint="terminate that instance first, or choose another address")
            instance_id = "i-" + secrets.token_hex(8)
            directory = self.instances_dir / instance_id
            (directory / "devices").mkdir(parents=True)
            (directory / CONSOLE_LOG).touch()
            write_json(directory / "user_data.json", user_data)
            record = {
                "id": instance_id, "name": name, "image_id": image.id, "private_ip": ip,
                "tags": tags, "status": "pending", "state_reason": "", "pid": None,
                "start_time": None, "launched_at": _now(), "devices": {},
                "client_token": client_token or "",
            }
            write_json(directory / INSTANCE_RECORD, record)
            try:
                self._launch(record, directory, image)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            return self.get_instance(instance_id)

    def get_instance(self, instance_id: str) -> Instance:
        found = self._load_instance(self.instances_dir / str(instance_id))
        if found is None:
            raise NotFoundError(f"instance {instance_id} does not exist (or was terminated)")
        return found[1]

    def describe_instances(self, ids: Iterable[str] | None = None,
                           filters: Mapping[str, str | Iterable[str]] | None = None
                           ) -> list[Instance]:
        """Instances (all, or those in ``ids``; ids that do not exist are left out) matching
        every filter: ``tag:KEY``, ``tag-key``, ``name``, ``instance-id``, ``image-id``,
        ``private-ip-address``, ``instance-state-name`` — each a value or a list of values."""
        tests = _instance_filters(filters or {})
        if ids is not None:
            directories = [self.instances_dir / str(i) for i in ids]
        elif self.instances_dir.is_dir():
            directories = list(self.instances_dir.iterdir())
        else:
            directories = []
        found = [loaded[1] for d in directories if (loaded := self._load_instance(d)) is not None]
        found = [i for i in found if all(test(i) for test in tests)]
        return sorted(found, key=lambda i: (i.name, i.id))

    def stop_instance(self, instance_id: str, grace: float = 10.0) -> Instance:
        """SIGTERM the instance's process group, SIGKILL after ``grace`` seconds; volumes stay
        attached. Stopping a stopped instance does nothing."""
        with self.locked():
            record, directory = self._instance_record(instance_id)
            if record["status"] == "stopped":
                return self.get_instance(instance_id)
            record["status"] = "stopping"
            write_json(directory / INSTANCE_RECORD, record)
        self._stop_process(record, grace)
        with self.locked():
            loaded = self._load_instance(directory)
            if loaded is None:  # terminated meanwhile
                raise NotFoundError(f"instance {instance_id} was terminated while stopping")
            record = loaded[0]
            record.update(status="stopped", state_reason="user", pid=None, start_time=None)
            write_json(directory / INSTANCE_RECORD, record)
            (directory / READY_MARKER).unlink(missing_ok=True)
            return self.get_instance(instance_id)

    def start_instance(self, instance_id: str) -> Instance:
        """Start a stopped instance again (same directory, volumes, IP). Running: no-op."""
        with self.locked():
            record, directory = self._instance_record(instance_id)
            state = self.get_instance(instance_id).state
            if state in ("pending", "running"):
                return self.get_instance(instance_id)
            if state == "stopping":
                raise InvalidStateError(f"instance {instance_id} is stopping; wait for it to stop")
            self._launch(record, directory, self.get_image(record["image_id"]))
            return self.get_instance(instance_id)

    def terminate_instance(self, instance_id: str, grace: float = 10.0) -> None:
        """Stop the instance's process, detach its volumes (they are kept) and remove it."""
        with self.locked():
            record, directory = self._instance_record(instance_id)
            record["status"] = "stopping"
            record["terminating"] = True
            write_json(directory / INSTANCE_RECORD, record)
        self._stop_process(record, grace)
        with self.locked():
            loaded = self._load_instance(directory)
            if loaded is None:
                return
            record = loaded[0]
            for device, volume_id in sorted(record.get("devices", {}).items()):
                self._clear_attachment(volume_id, instance_id, device)
            doomed = self.instances_dir / f".terminated-{instance_id}-{secrets.token_hex(4)}"
            os.rename(directory, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def wait_for_state(self, instance_id: str, state: str, timeout: float = 60.0) -> Instance:
        """Poll until the instance is in ``state`` (``running``, ``stopped``, ``terminated``…).
        Returns the instance (for ``terminated``, the last one seen before it went)."""
        valid = {"pending", "running", "stopping", "stopped", "terminated"}
        if state not in valid:
            raise InvalidParameterError(
                f"unknown instance state {state!r}; valid: {', '.join(sorted(valid))}")
        seen: list[Instance] = []   # the last instance seen, returned once it is gone

        def probe() -> tuple[Instance, bool]:
            found = self.describe_instances(ids=[instance_id])
            if found:
                seen[:] = found[:1]
                return found[0], found[0].state == state
            if state == "terminated":
                return (seen[0] if seen else self._gone_instance(instance_id)), True
            raise NotFoundError(f"instance {instance_id} does not exist (or was terminated)")

        polled = poll(probe, lambda outcome: outcome[1], timeout=timeout, interval=0.05)
        last, _ = polled.value
        if not polled.ok:
            raise StateTimeoutError(
                f"instance {instance_id} ({last.name}) is still {last.state} after "
                f"{timeout:g}s waiting for {state}")
        return last

    def wait_until_ready(self, instance_id: str, timeout: float = 60.0) -> Instance:
        """Poll until the entrypoint wrote its readiness marker; fail early if it died."""
        polled = poll(lambda: self.get_instance(instance_id),
                      lambda instance: instance.ready or instance.state not in _ALIVE_STATES,
                      timeout=timeout, interval=0.05)
        instance = polled.value
        if instance.ready:
            return instance
        if instance.state not in _ALIVE_STATES:
            raise InvalidStateError(
                f"instance {instance_id} ({instance.name}) is {instance.state} and never got "
                f"ready; console:\n{self.console_output(instance_id)}")
        raise StateTimeoutError(
            f"instance {instance_id} ({instance.name}) not ready after {timeout:g}s; "
            f"console:\n{self.console_output(instance_id)}")

    def console_output(self, instance_id: str, lines: int = 40) -> str:
        """The last ``lines`` lines of the instance's console.log."""
        path = self.instances_dir / instance_id / CONSOLE_LOG
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _instance_record(self, instance_id: str) -> tuple[dict[str, Any], Path]:
        directory = self.instances_dir / str(instance_id)
        loaded = self._load_instance(directory)
        if loaded is None:
            raise NotFoundError(f"instance {instance_id} does not exist (or was terminated)")
        return loaded[0], directory

    def _load_instance(self, directory: Path) -> tuple[dict[str, Any], Instance] | None:
        if directory.name.startswith(".") or not _ID_RE.match(directory.name):
            return None
        record = read_json(directory / INSTANCE_RECORD)
        if record is None:
            return None
        user_data = read_json(directory / "user_data.json") or {}
        alive = process.is_alive(record.get("pid"), record.get("start_time"))
        status, reason = record["status"], record.get("state_reason", "")
        if status in ("pending", "running"):
            state = status if alive else "stopped"
            if not alive:
                reason = "process exited"
        elif status == "stopping":
            state = "stopping" if alive else "stopped"
        else:
            state = "stopped"
        ready = alive and (directory / READY_MARKER).exists()
        instance = Instance(
            id=record["id"], name=record["name"], image_id=record["image_id"],
            private_ip=record["private_ip"], state=state, ready=ready,
            pid=record.get("pid") if alive else None, path=str(directory),
            user_data=dict(user_data), tags=dict(record.get("tags") or {}),
            devices=dict(record.get("devices") or {}), state_reason=reason,
            launched_at=record.get("launched_at", ""),
            client_token=record.get("client_token") or "")
        return record, instance

    def _gone_instance(self, instance_id: str) -> Instance:
        return Instance(id=instance_id, name="", image_id="", private_ip="", state="terminated",
                        ready=False, pid=None, path="")

    def _launch(self, record: dict[str, Any], directory: Path, image: Image) -> None:
        """Start the entrypoint (lock held) and record pid + start time."""
        (directory / READY_MARKER).unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV_PREFIXES)}
        env.update({
            "LOCALCLOUD_INSTANCE_ID": record["id"],
            "LOCALCLOUD_INSTANCE_DIR": str(directory),
            "LOCALCLOUD_PRIVATE_IP": record["private_ip"],
            "LOCALCLOUD_IMAGE_DIR": image.path,
            "LOCALCLOUD_USER_DATA": str(directory / "user_data.json"),
            "LOCALCLOUD_DEVICES_DIR": str(directory / "devices"),
            "PYTHONUNBUFFERED": "1",
        })
        with open(directory / CONSOLE_LOG, "ab") as log:
            log.write(f"--- localcloud: starting {image.ref} ({image.id}) at {_now()}\n".encode())
        try:
            pid, start_time = process.launch([str(Path(image.path) / "entrypoint")],
                                             cwd=directory, env=env,
                                             log_path=directory / CONSOLE_LOG)
        except OSError as exc:
            raise LocalCloudError(
                f"cannot start the entrypoint of image {image.ref} ({image.id}) for instance "
                f"{record['id']}: {exc.strerror or exc}",
                hint="the entrypoint must be an executable with a #! line") from None
        record.update(status="running", state_reason="", pid=pid, start_time=start_time)
        write_json(directory / INSTANCE_RECORD, record)

    def _stop_process(self, record: dict[str, Any], grace: float) -> None:
        if record.get("pid"):
            process.stop_group(record["pid"], record.get("start_time"), grace)

    # ------------------------------------------------------------------ volumes

    def create_volume(self, *, name: str, size_gb: int,
                      tags: Mapping[str, str] | None = None,
                      client_token: str | None = None) -> Volume:
        """A directory that outlives instances (``size_gb`` is recorded, not enforced).

        ``client_token``: as for :meth:`run_instance` (EC2's ``ClientToken``): the volume
        created earlier with the same token is returned instead of a new one.
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameterError("a volume needs a non-empty name")
        size_gb = _check_size(name, size_gb)
        tags = _string_map("tags", tags)
        with self.locked():
            if client_token:
                for earlier in self.describe_volumes(filters={"client-token": client_token}):
                    return earlier
            volume_id = "vol-" + secrets.token_hex(8)
            directory = self.volumes_dir / volume_id
            (directory / "data").mkdir(parents=True)
            write_json(directory / VOLUME_RECORD, {
                "id": volume_id, "name": name, "size_gb": size_gb, "tags": tags,
                "attachment": None, "created_at": _now(), "client_token": client_token or "",
            })
            return self.get_volume(volume_id)

    def get_volume(self, volume_id: str) -> Volume:
        volume = self._load_volume(self.volumes_dir / str(volume_id))
        if volume is None:
            raise NotFoundError(f"volume {volume_id} does not exist")
        return volume

    def describe_volumes(self, ids: Iterable[str] | None = None,
                         filters: Mapping[str, str | Iterable[str]] | None = None
                         ) -> list[Volume]:
        """Volumes (all, or those in ``ids`` that exist) matching every filter: ``tag:KEY``,
        ``tag-key``, ``name``, ``volume-id``, ``status`` (in-use/available),
        ``attachment.instance-id``."""
        tests = _volume_filters(filters or {})
        if ids is not None:
            directories = [self.volumes_dir / str(i) for i in ids]
        elif self.volumes_dir.is_dir():
            directories = list(self.volumes_dir.iterdir())
        else:
            directories = []
        found = [v for d in directories if (v := self._load_volume(d)) is not None]
        return sorted((v for v in found if all(t(v) for t in tests)), key=lambda v: (v.name, v.id))

    def update_tags(self, resource_id: str, tags: Mapping[str, str]) -> None:
        """Replace the tags of an instance or a volume (in place, like EC2's CreateTags)."""
        if resource_id.startswith("vol-"):
            self.modify_volume(resource_id, tags=tags)
        else:
            self.modify_instance(resource_id, tags=tags)

    def modify_instance(self, instance_id: str, *, name: str | None = None,
                        tags: Mapping[str, str] | None = None) -> Instance:
        """Change an instance's name and/or tags in place (the process keeps running)."""
        changes: dict[str, Any] = {}
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise InvalidParameterError("an instance needs a non-empty name")
            changes["name"] = name
        if tags is not None:
            changes["tags"] = _string_map("tags", tags)
        with self.locked():
            record, directory = self._instance_record(instance_id)
            record.update(changes)
            write_json(directory / INSTANCE_RECORD, record)
            return self.get_instance(instance_id)

    def modify_volume(self, volume_id: str, *, name: str | None = None,
                      size_gb: int | None = None,
                      tags: Mapping[str, str] | None = None) -> Volume:
        """Change a volume's name, recorded size and/or tags in place (data untouched)."""
        changes: dict[str, Any] = {}
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise InvalidParameterError("a volume needs a non-empty name")
            changes["name"] = name
        if size_gb is not None:
            changes["size_gb"] = _check_size(name or volume_id, size_gb)
        if tags is not None:
            changes["tags"] = _string_map("tags", tags)
        with self.locked():
            self.get_volume(volume_id)
            path = self.volumes_dir / volume_id / VOLUME_RECORD
            record = read_json(path) or {}
            record.update(changes)
            write_json(path, record)
            return self.get_volume(volume_id)

    def delete_volume(self, volume_id: str) -> None:
        """Delete the volume and its data; refused while it is attached."""
        with self.locked():
            volume = self.get_volume(volume_id)
            if volume.attachment is not None:
                raise VolumeInUseError(
                    f"volume {volume_id} ({volume.name}) is attached to instance "
                    f"{volume.attachment.instance_id} as {volume.attachment.device}; "
                    "detach it first")
            directory = self.volumes_dir / volume_id
            doomed = self.volumes_dir / f".deleted-{volume_id}-{secrets.token_hex(4)}"
            os.rename(directory, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> Attachment:
        """Make the volume appear as ``DEVICES_DIR/<device>`` of the instance. Attaching the
        same volume to the same instance and device again does nothing."""
        if not isinstance(device, str) or not _DEVICE_RE.match(device):
            raise InvalidParameterError(
                f"device name {device!r} is not valid: use lower-case letters and digits "
                "starting with a letter (e.g. xvdf)")
        with self.locked():
            volume = self.get_volume(volume_id)
            record, directory = self._instance_record(instance_id)
            current = volume.attachment
            if current is not None:
                if current.instance_id == instance_id and current.device == device:
                    return current
                raise VolumeInUseError(
                    f"volume {volume_id} ({volume.name}) is already attached to instance "
                    f"{current.instance_id} as {current.device}; detach it first")
            devices = record.setdefault("devices", {})
            if device in devices:
                raise InvalidStateError(
                    f"instance {instance_id} already has volume {devices[device]} at {device}; "
                    "choose another device name")
            if record.get("terminating"):
                raise InvalidStateError(f"instance {instance_id} is being terminated")
            attachment = Attachment(volume_id=volume_id, instance_id=instance_id,
                                    device=device, attached_at=_now())
            link = directory / "devices" / device
            link.unlink(missing_ok=True)
            link.symlink_to(volume.path, target_is_directory=True)
            devices[device] = volume_id
            write_json(directory / INSTANCE_RECORD, record)
            self._set_volume_attachment(volume_id, attachment)
            return attachment

    def detach_volume(self, volume_id: str, instance_id: str) -> None:
        """Detach the volume from a stopped instance; refused while the instance runs (as a
        mounted EBS volume). Detaching a volume not attached to that instance does nothing."""
        with self.locked():
            volume = self.get_volume(volume_id)
            current = volume.attachment
            if current is None or current.instance_id != instance_id:
                return
            instance = self.describe_instances(ids=[instance_id])
            if instance and instance[0].state in _ALIVE_STATES:
                raise VolumeInUseError(
                    f"volume {volume_id} ({volume.name}) is in use by running instance "
                    f"{instance_id} ({instance[0].name}); stop the instance first")
            self._clear_attachment(volume_id, instance_id, current.device)

    def _clear_attachment(self, volume_id: str, instance_id: str, device: str) -> None:
        """Remove both sides of an attachment (lock held, instance not running)."""
        directory = self.instances_dir / instance_id
        record = read_json(directory / INSTANCE_RECORD)
        if record is not None:
            record.get("devices", {}).pop(device, None)
            write_json(directory / INSTANCE_RECORD, record)
            (directory / "devices" / device).unlink(missing_ok=True)
        volume_record = read_json(self.volumes_dir / volume_id / VOLUME_RECORD)
        if volume_record is not None:
            attached = volume_record.get("attachment") or {}
            if attached.get("instance_id") == instance_id:
                self._set_volume_attachment(volume_id, None)

    def _set_volume_attachment(self, volume_id: str, attachment: Attachment | None) -> None:
        path = self.volumes_dir / volume_id / VOLUME_RECORD
        record = read_json(path) or {}
        record["attachment"] = None if attachment is None else {
            "instance_id": attachment.instance_id, "device": attachment.device,
            "attached_at": attachment.attached_at}
        write_json(path, record)

    def _load_volume(self, directory: Path) -> Volume | None:
        if directory.name.startswith(".") or not _ID_RE.match(directory.name):
            return None
        record = read_json(directory / VOLUME_RECORD)
        if record is None:
            return None
        attached = record.get("attachment")
        attachment = None if not attached else Attachment(
            volume_id=record["id"], instance_id=attached["instance_id"],
            device=attached["device"], attached_at=attached.get("attached_at", ""))
        return Volume(id=record["id"], name=record["name"], size_gb=int(record["size_gb"]),
                      state="in-use" if attachment else "available",
                      path=str(directory / "data"), tags=dict(record.get("tags") or {}),
                      attachment=attachment, created_at=record.get("created_at", ""),
                      client_token=record.get("client_token") or "")


# ---------------------------------------------------------------------- validation, filters

def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidParameterError(
            f"{what} {name!r} is not valid: use lower-case letters, digits, '-', '_' or '.'")


def _check_size(volume: str, size_gb: Any) -> int:
    if isinstance(size_gb, float) and size_gb.is_integer():
        size_gb = int(size_gb)
    if isinstance(size_gb, bool) or not isinstance(size_gb, int) or size_gb < 1:
        raise InvalidParameterError(
            f"volume {volume}: size_gb must be a whole number ≥ 1, not {size_gb!r}")
    return size_gb


def _check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise InvalidParameterError(
            f"image tag {tag!r} is not valid: letters, digits, '.', '_' or '-'")
    return tag


def _check_artifact(artifact: Path) -> None:
    if not artifact.is_dir():
        raise InvalidParameterError(f"image artifact {artifact} is not a directory")
    entrypoint = artifact / "entrypoint"
    if not entrypoint.is_file() or not os.access(entrypoint, os.X_OK):
        raise InvalidParameterError(
            f"image artifact {artifact} has no executable `entrypoint` file",
            hint="an image artifact is a directory with an executable entrypoint script")
    if (artifact / IMAGE_RECORD).exists():
        raise InvalidParameterError(
            f"image artifact {artifact} contains {IMAGE_RECORD}, a name the registry reserves")


def _check_private_ip(value: str) -> str:
    try:
        ip = ipaddress.IPv4Address(value)
    except (ipaddress.AddressValueError, ValueError):
        raise InvalidParameterError(
            f"private_ip {value!r} is not an IPv4 address (use one in 127.0.0.0/8)") from None
    if not ip.is_loopback or str(ip).endswith((".0", ".255")):
        raise InvalidParameterError(
            f"private_ip {value} is not a usable loopback address: the local cloud's instances "
            "bind 127.x.y.z (z from 1 to 254), e.g. 127.42.7.11")
    return str(ip)


def _string_map(what: str, values: Mapping[str, str] | None) -> dict[str, str]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise InvalidParameterError(f"{what} must be a map of strings, not {values!r}")
    result = {}
    for key, value in values.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidParameterError(
                f"{what}: {key!r} = {value!r} — keys and values must be strings")
        result[key] = value
    return result


def _tag_filters(key: str, value: str | Iterable[str]) -> Any:
    if key.startswith("tag:"):
        tag, wanted = key[4:], _values(value)
        return lambda obj: obj.tags.get(tag) in wanted
    if key == "tag-key":
        keys = _values(value)
        return lambda obj: bool(keys & set(obj.tags))
    return None


def _instance_filters(filters: Mapping[str, str | Iterable[str]]) -> list[Any]:
    fields = {"name": "name", "instance-id": "id", "image-id": "image_id",
              "private-ip-address": "private_ip", "instance-state-name": "state",
              "client-token": "client_token"}
    return _build_filters("describe_instances", filters, fields)


def _volume_filters(filters: Mapping[str, str | Iterable[str]]) -> list[Any]:
    fields = {"name": "name", "volume-id": "id", "status": "state",
              "client-token": "client_token"}
    tests = _build_filters("describe_volumes", dict(
        (k, v) for k, v in filters.items() if k != "attachment.instance-id"), fields)
    if "attachment.instance-id" in filters:
        wanted = _values(filters["attachment.instance-id"])
        tests.append(lambda v: v.attachment is not None and v.attachment.instance_id in wanted)
    return tests


def _build_filters(call: str, filters: Mapping[str, str | Iterable[str]],
                   fields: dict[str, str]) -> list[Any]:
    tests = []
    for key, value in filters.items():
        test = _tag_filters(key, value)
        if test is None and key in fields:
            attr, wanted = fields[key], _values(value)
            test = (lambda a, w: lambda obj: getattr(obj, a) in w)(attr, wanted)
        if test is None:
            valid = ["tag:KEY", "tag-key", *fields]
            if call == "describe_volumes":
                valid.append("attachment.instance-id")
            raise InvalidParameterError(
                f"{call}: unknown filter {key!r}; valid filters: {', '.join(valid)}")
        tests.append(test)
    return tests
