"""`doit cloud`: what runs in the local cloud; `doit cloud --purge ENV` removes an environment's
leftovers (instances and volumes tagged ``environment=ENV``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infrablocks.tasks._command import command_task, flag, option

if TYPE_CHECKING:
    from infrablocks.cloud.local.control import LocalCloud


def task_cloud() -> dict[str, Any]:
    """Show the local cloud (instances, volumes, images), or purge an environment from it."""
    return command_task(
        "cloud", _cloud_command,
        doc="show the local cloud's instances, volumes and images; "
            "--purge ENV stops and removes what environment ENV left there",
        params=[
            flag("json", help="print the cloud as JSON"),
            option("env", help="show only instances and volumes tagged environment=ENV"),
            option("purge", help="terminate the instances and delete the volumes tagged "
                                 "environment=ENV"),
        ],
    )


def _cloud_command(json: bool, env: str | None, purge: str | None) -> int | None:
    from infrablocks.errors import UsageError

    cloud = open_cloud()
    if purge is not None:
        if not purge.strip():
            raise UsageError("doit cloud --purge: name the environment, e.g. --purge t-1a2b")
        removed = purge_environment(cloud, purge)
        _print_purge(purge, removed, as_json=json)
        return None
    snapshot = cloud_snapshot(cloud, env)
    if json:
        import json as json_module
        print(json_module.dumps(snapshot, indent=2, sort_keys=True))
    else:
        _print_tables(snapshot)
    return None


def open_cloud() -> LocalCloud:
    """The cloud at ``$LOCALCLOUD_ROOT``, else ``<repo>/.infrablocks/cloud``."""
    import os

    from infrablocks.cloud.local.control import ENV_ROOT, LocalCloud

    if os.environ.get(ENV_ROOT):
        return LocalCloud.from_env()
    from infrablocks.paths import find_repo_root, work_dir

    return LocalCloud(work_dir(find_repo_root()) / "cloud")


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
            removed["kept"].append(f"{volume.name} ({volume.id}): {exc.message}")
            continue
        removed["volumes"].append(f"{volume.name} ({volume.id})")
    return removed


def _print_purge(env: str, removed: dict[str, list[str]], as_json: bool) -> None:
    if as_json:
        import json

        print(json.dumps({"environment": env, **removed}, indent=2, sort_keys=True))
        return
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    if not any(removed.values()):
        console.print(f"nothing tagged environment={env} in the local cloud")
        return
    for what in removed["instances"]:
        console.print(f"[red]terminated[/] instance {what}")
    for what in removed["volumes"]:
        console.print(f"[red]deleted[/] volume {what}")
    for what in removed["kept"]:
        console.print(f"[yellow]kept[/] volume {what}")
    console.print(f"environment {env}: {len(removed['instances'])} instance(s) terminated, "
                  f"{len(removed['volumes'])} volume(s) deleted")


def _print_tables(snapshot: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(f"local cloud at [bold]{snapshot['root']}[/]")
    state_style = {"running": "green", "pending": "yellow", "stopping": "yellow",
                   "stopped": "red"}

    instances = Table(title="instances", title_justify="left")
    for column in ("name", "id", "image", "ip", "state", "ready", "volumes"):
        instances.add_column(column, no_wrap=column in ("id", "ip", "image"))
    for i in snapshot["instances"]:
        state = i["state"] + (f" ({i['state_reason']})" if i["state_reason"] else "")
        instances.add_row(
            i["name"], i["id"], i["image"], i["private_ip"],
            f"[{state_style.get(i['state'], 'white')}]{state}[/]",
            "[green]yes[/]" if i["ready"] else "no",
            ", ".join(f"{dev}: {name}" for dev, name in sorted(i["volumes"].items())) or "-")

    volumes = Table(title="volumes", title_justify="left")
    for column in ("name", "id", "size", "state", "attached to"):
        volumes.add_column(column, no_wrap=column in ("id", "size"))
    for v in snapshot["volumes"]:
        attached = v["attached_to"]
        volumes.add_row(
            v["name"], v["id"], f"{v['size_gb']} GB", v["state"],
            "-" if attached is None else
            f"{attached['instance'] or attached['instance_id']} as {attached['device']}")

    images = Table(title="images", title_justify="left")
    for column in ("image", "id", "tags", "digest", "registered"):
        images.add_column(column, no_wrap=column in ("image", "id", "digest"))
    for image in snapshot["images"]:
        images.add_row(f"{image['name']}@{image['version']}", image["id"],
                       ", ".join(image["tags"]) or "-", image["digest"][:19] + "…",
                       image["registered_at"][:16].replace("T", " "))

    for table, empty in ((instances, "no instances"), (volumes, "no volumes"),
                         (images, "no images")):
        if table.row_count:
            console.print(table)
        else:
            console.print(f"[dim]{empty}[/]")
