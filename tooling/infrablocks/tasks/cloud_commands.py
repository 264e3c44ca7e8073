"""`doit cloud`: what runs on a platform (the local cloud, an AWS region); `doit cloud --purge ENV`
removes an environment's leftovers (instances, volumes and, on AWS, network interfaces, security
groups and the environment's subnet, all tagged ``environment=ENV``).

Both go through the environment's platform (``Workspace.platform``): ``inventory`` and
``sweep_environment``. An environment with deployments is purged only when confirmed (``--yes``,
or a question on a terminal; ``infrablocks.deploy.purge``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infrablocks.tasks._command import command_task, flag, option
from infrablocks.validators import register_validator

if TYPE_CHECKING:
    from infrablocks.deploy.purge import PurgePreview

# `doit check`: blocks.toml's platform keys; the blocks' AWS modules (contract, terraform validate)
register_validator("platforms", "infrablocks.platforms.choice:platform_check")
register_validator("aws-modules", "infrablocks.platforms.aws_check:aws_module_check")


def task_cloud() -> dict[str, Any]:
    """Show a platform (instances, volumes, images), or purge an environment from it."""
    return command_task(
        "cloud", _cloud_command,
        doc="show the platform's instances, volumes and images (the local cloud, AWS); "
            "--purge ENV stops and removes what environment ENV left there",
        params=[
            flag("json", help="print the cloud as JSON"),
            option("env", help="show only instances and volumes tagged environment=ENV"),
            option("purge", help="terminate the instances and delete the volumes tagged "
                                 "environment=ENV (leftovers; a deployed environment only with "
                                 "--yes or when confirmed: `doit destroy` is its way)"),
            flag("yes", help="--purge: do not ask before purging an environment that has "
                             "deployments"),
            option("platform", help="the platform to show (a name from blocks.toml "
                                    "[platforms], or local; default: the environment's, else "
                                    "defaults.platform)"),
        ],
    )


def _cloud_command(json: bool, env: str | None, purge: str | None, yes: bool,
                   platform: str | None) -> int | None:
    from infrablocks.errors import UsageError
    from infrablocks.tasks._workspace import command_workspace

    if purge is not None and not purge.strip():
        raise UsageError("doit cloud --purge: name the environment, e.g. --purge t-1a2b")
    workspace = command_workspace()
    workspace.choose_platform(platform)
    if purge is not None:
        _check_environment_name(workspace, purge, "--purge")
        from infrablocks.deploy.purge import purge_environment

        removed = purge_environment(workspace, purge,
                                    confirm=lambda preview: _confirm_purge(preview, yes))
        if removed is None:
            from infrablocks.tasks._console import make_console

            make_console(stderr=True).print("nothing purged")
            return 1
        _print_purge(purge, removed, as_json=json)
        return None
    if env is not None:
        _check_environment_name(workspace, env, "--env")
    snapshot = workspace.platform(env).inventory(env)
    if json:
        import json as json_module
        print(json_module.dumps(snapshot, indent=2, sort_keys=True))
    else:
        _print_tables(snapshot)
    return None


def _check_environment_name(workspace: Any, env: str, flag: str) -> None:
    """A name that is not declared, has no state and tags nothing on the platform is a typo:
    a usage error, not a successful purge of nothing or an empty listing."""
    from infrablocks.errors import UsageError

    if env in workspace.registry.environments or env in workspace.backend.list_environments():
        return
    left = workspace.platform(env).inventory(env)
    if left.get("instances") or left.get("volumes"):
        return
    known = sorted(set(workspace.registry.environments)
                   | set(workspace.backend.list_environments()))
    raise UsageError(f"doit cloud {flag}: unknown environment `{env}`: not declared in "
                     f"blocks.toml, no state, no instances or volumes tagged environment={env}",
                     hint=f"known environments: {', '.join(known) or '(none)'}")


def _confirm_purge(preview: PurgePreview, yes: bool) -> bool:
    """Whether to purge an environment that has deployments: ``--yes``, else asked on a
    terminal; refused (``UsageError``, exit 2) elsewhere."""
    import sys

    from infrablocks.errors import UsageError
    from infrablocks.tasks._console import make_console

    env = preview.environment
    what = (f"{len(preview.instances)} instance(s)"
            + (f" ({', '.join(preview.instances)})" if preview.instances else "")
            + f" and {len(preview.volumes)} volume(s)"
            + (f" ({', '.join(preview.volumes)}: their data is lost)" if preview.volumes else ""))
    blocks = ", ".join(preview.deployed)
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            f"environment {env} has deployments ({blocks}): `doit cloud --purge` is for "
            f"leftovers; it would terminate and delete {what} behind Terraform's back",
            hint=f"destroy a deployed environment with `doit destroy {' '.join(preview.deployed)}"
                 f" --env {env}`; pass --yes to purge it anyway (its records are then marked "
                 "purged)")
    from rich.prompt import Confirm

    console = make_console(stderr=True)
    console.print(f"[bold]environment {env} has deployments[/] ({blocks}); `doit destroy "
                  f"{' '.join(preview.deployed)} --env {env}` is the way to remove it.\n"
                  f"purge would terminate and delete {what}; its records would say purged.")
    return Confirm.ask("purge anyway?", default=False, console=console)


def _print_purge(env: str, removed: dict[str, list[str]], as_json: bool) -> None:
    if as_json:
        import json

        print(json.dumps({"environment": env, **removed}, indent=2, sort_keys=True))
        return
    from infrablocks.tasks._console import counted, make_console

    console = make_console()
    if not any(removed.values()):
        console.print(f"nothing tagged environment={env} left on the platform")
        return
    for what in removed["instances"]:
        console.print(f"[red]terminated[/] instance {what}")
    for what in removed["volumes"]:
        console.print(f"[red]deleted[/] volume {what}")
    for kind, items in removed.items():   # AWS: network_interfaces, security_groups
        if kind not in ("instances", "volumes", "kept"):
            for what in items:
                console.print(f"[red]deleted[/] {kind.replace('_', ' ')[:-1]} {what}")
    for what in removed["kept"]:
        console.print(f"[yellow]kept[/] {what}")
    console.print(f"environment {env}: "
                  f"{counted(len(removed['instances']), 'instance')} terminated, "
                  f"{counted(len(removed['volumes']), 'volume')} deleted")


def _print_tables(snapshot: dict[str, Any]) -> None:
    from rich.table import Table

    from infrablocks.tasks._console import make_console, stream_is_terminal

    console = make_console(soft_wrap=False)
    # On a terminal a digest is shortened to fit; elsewhere every value is whole.
    digest_length = 19 if stream_is_terminal(console.file) else None
    what = "local cloud" if snapshot["platform"] == "local" else f"platform {snapshot['platform']}"
    console.print(f"{what} at [bold]{snapshot['where']}[/]")
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
                       ", ".join(image["tags"]) or "-",
                       image["digest"] if digest_length is None
                       else image["digest"][:digest_length] + "…",
                       image["registered_at"][:16].replace("T", " "))

    for table, empty in ((instances, "no instances"), (volumes, "no volumes"),
                         (images, "no images")):
        if table.row_count:
            console.print(table)
        else:
            console.print(f"[dim]{empty}[/]")
