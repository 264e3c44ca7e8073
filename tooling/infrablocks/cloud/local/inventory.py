"""The local cloud as a whole: open it for a repository, list it, purge an environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infrablocks.cloud.local.control import LocalCloud


def open_cloud(repo_root: Path | None = None) -> LocalCloud:
    """The cloud at ``$LOCALCLOUD_ROOT``, else ``<repo>/.infrablocks/cloud``."""
    from infrablocks.paths import find_repo_root

    return LocalCloud.for_repo(repo_root or find_repo_root())


def cloud_snapshot(cloud: LocalCloud, env: str | None = None) -> dict[str, Any]:
    """Everything in the cloud as plain data (what ``--json`` prints)."""
    filters = {"tag:environment": env} if env else None
    images = cloud.list_images()
    refs = {image.id: image.ref for image in images}
    instances = cloud.describe_instances(filters=filters)
    names = {i.id: i.name for i in cloud.describe_instances()}
    volumes = cloud.describe_volumes(filters=filters)
    volume_names = {v.id: v.name for v in cloud.describe_volumes()}
    return {
        "root": str(cloud.root),
        "instances": [
            {**i.to_dict(), "image": refs.get(i.image_id, "(removed)"),
             "volumes": {dev: volume_names.get(vol, vol) for dev, vol in i.devices.items()}}
            for i in instances],
        "volumes": [
            {**v.to_dict(), "attached_to": None if v.attachment is None else {
                "instance_id": v.attachment.instance_id,
                "instance": names.get(v.attachment.instance_id, ""),
                "device": v.attachment.device}}
            for v in volumes],
        "images": [image.to_dict() for image in images],
    }


def purge_every_environment(cloud: LocalCloud, grace: float = 10.0) -> list[str]:
    """:func:`purge_environment` for every environment tagged on an instance or a volume of
    ``cloud`` (a throwaway cloud's clean-up); the environments purged, sorted."""
    tags = {i.tags.get("environment") for i in cloud.describe_instances()}
    tags |= {v.tags.get("environment") for v in cloud.describe_volumes()}
    environments = sorted(t for t in tags if t)
    for environment in environments:
        purge_environment(cloud, environment, grace=grace)
    return environments


def purge_environment(cloud: LocalCloud, env: str, grace: float = 10.0) -> dict[str, list[str]]:
    """Terminate the instances and delete the volumes tagged ``environment=env``.

    Instances stop in parallel (SIGTERM, SIGKILL after ``grace``). A tagged volume still
    attached to an instance of another environment is kept and reported.
    """
    from concurrent.futures import ThreadPoolExecutor

    from infrablocks.cloud.local.errors import NotFoundError, VolumeInUseError

    filters = {"tag:environment": env}
    instances = cloud.describe_instances(filters=filters)
    removed: dict[str, list[str]] = {"instances": [], "volumes": [], "kept": []}

    def terminate(instance: Any) -> str | None:
        try:
            cloud.terminate_instance(instance.id, grace=grace)
        except NotFoundError:
            return None
        return f"{instance.name} ({instance.id})"

    with ThreadPoolExecutor(max_workers=8) as pool:
        removed["instances"] = [r for r in pool.map(terminate, instances) if r]
    for volume in cloud.describe_volumes(filters=filters):
        try:
            cloud.delete_volume(volume.id)
        except NotFoundError:
            continue
        except VolumeInUseError as exc:
            removed["kept"].append(f"volume {volume.name} ({volume.id}): {exc.message}")
            continue
        removed["volumes"].append(f"{volume.name} ({volume.id})")
    return removed
