"""`doit image NAME@VERSION`: build an image with packer and register it in the local cloud."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infrablocks.errors import UsageError
from infrablocks.tasks._command import command_task, flag, option


def task_image() -> dict[str, Any]:
    """Build images/NAME/VERSION with packer and register it in the local cloud."""
    return command_task(
        "image", _image, positional="refs",
        doc="build images/NAME/VERSION with packer and register it in the local cloud "
            "(doit image etcd@1.0.0 [etcd@1.1.0 ...])",
        params=[option("tag", help="also tag the registered image(s) with TAG"),
                flag("remove", help="deregister NAME@VERSION from the local cloud instead of "
                                    "building it (refused while instances use it)"),
                flag("verify", help="check registered images instead of building them: "
                                    "artifact intact and same content as a fresh build "
                                    "(all images in images/ when none is named)")],
    )


def _image(refs: list[str], tag: str | None, remove: bool = False,
           verify: bool = False) -> int | None:
    import tempfile
    import time

    from rich.console import Console

    from infrablocks.images import (
        build_artifact,
        find_template_dir,
        parse_image_ref,
        register_artifact,
    )
    from infrablocks.paths import find_repo_root

    if remove and verify:
        raise UsageError("doit image: --remove and --verify exclude each other")
    if not refs and not verify:
        raise UsageError("doit image: name an image to build, e.g. `doit image etcd@1.0.0`")
    parsed = [parse_image_ref(ref) for ref in refs]
    repo_root = find_repo_root()
    if verify:
        return _verify(repo_root, parsed)
    if remove:
        return _remove(repo_root, parsed)
    for ref in parsed:  # every reference checked before the first (slow) build
        find_template_dir(repo_root, ref)

    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.paths import work_dir

    cloud = LocalCloud.from_env(default=work_dir(repo_root) / "cloud")
    console = Console(highlight=False, soft_wrap=True)
    for ref in parsed:
        known = {image.id for image in cloud.list_images() if image.ref == str(ref)}
        with console.status(f"building {ref} with packer"), \
                tempfile.TemporaryDirectory(prefix="infrablocks-artifact-") as tmp:
            artifact = build_artifact(repo_root, ref, Path(tmp) / "artifact")
            started = time.monotonic()
            image = register_artifact(cloud, artifact, [tag] if tag else [])
            seconds = artifact.build_seconds + time.monotonic() - started
        outcome = ("[yellow]unchanged[/] (same content, same id)" if image.id in known
                   else "[green]registered[/]")
        console.print(f"[bold]{ref}[/] {outcome}")
        console.print(f"  id          {image.id}")
        console.print(f"  digest      {image.digest}")
        console.print(f"  build time  {seconds:.2f} s")
        if image.tags:
            console.print(f"  tags        {', '.join(image.tags)}")
        console.print(f"  packer log  {_relative(artifact.log_path, repo_root)}")
    return None


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _remove(repo_root: Path, refs: list[Any]) -> int | None:
    from rich.console import Console

    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.images import lookup_image
    from infrablocks.paths import work_dir

    cloud = LocalCloud.from_env(default=work_dir(repo_root) / "cloud")
    images = [lookup_image(cloud, ref) for ref in refs]  # all found before removing any
    console = Console(highlight=False, soft_wrap=True)
    for image in images:
        cloud.remove_image(image.id)
        console.print(f"[bold]{image.ref}[/] removed ({image.id})")
    return None


def _verify(repo_root: Path, refs: list[Any]) -> int | None:
    from rich.console import Console

    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.images import ImageRef, available_images, find_template_dir, verify_image
    from infrablocks.paths import work_dir

    if not refs:
        refs = [ImageRef(name, version)
                for name, versions in available_images(repo_root).items() for version in versions]
    for ref in refs:
        find_template_dir(repo_root, ref)
    cloud = LocalCloud.from_env(default=work_dir(repo_root) / "cloud")
    console = Console(highlight=False, soft_wrap=True)
    failed = 0
    for ref in refs:
        with console.status(f"verifying {ref}"):
            result = verify_image(repo_root, ref, cloud)
        if not result.registered:
            console.print(f"[bold]{ref}[/] [dim]not registered (nothing to verify)[/]")
        elif result.ok:
            console.print(f"[bold]{ref}[/] [green]ok[/] ({result.image.id}, intact, same "
                          f"content as images/{ref.name}/{ref.version}/)")
        else:
            failed += 1
            for problem in result.problems():
                console.print(f"[bold red]✗[/] {problem}")
    return 1 if failed else None
