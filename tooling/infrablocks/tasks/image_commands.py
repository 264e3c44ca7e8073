"""`doit image NAME@VERSION [--tag TAG]`: build with packer, verify by booting, tag or remove;
`doit images [--json] [--prune]`: the images there are, and who uses them.

Also registers the `doit check` validator "every block version's images exist as templates".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from infrablocks.errors import UsageError
from infrablocks.tasks._command import command_task, flag, option
from infrablocks.validators import register_validator

register_validator("images", "infrablocks.images.inventory:check_block_images")


def task_image() -> dict[str, Any]:
    """Build images/NAME/VERSION with packer, verify it by booting it, keep it if tagged."""
    return command_task(
        "image", _image, positional="refs",
        doc="build images/NAME/VERSION with packer, boot it on the local cloud and run its "
            "checks (checks.toml), then keep it if tagged, else remove it "
            "(doit image etcd@1.1.0 [--tag stable])",
        params=[option("tag", help="tag the verified image(s) with TAG and keep them "
                                   "(found by tag: data \"localcloud_image\" { tag = … })"),
                flag("keep", help="keep a verified image even without a tag"),
                flag("remove", help="deregister NAME@VERSION from the local cloud instead of "
                                    "building it (refused while instances use it)"),
                flag("verify", help="check registered images instead of building them: "
                                    "artifact intact and same content as a fresh build "
                                    "(all images in images/ when none is named)")],
    )


def _image(refs: list[str], tag: str | None, keep: bool = False, remove: bool = False,
           verify: bool = False) -> int | None:
    from infrablocks.images import find_template_dir, parse_image_ref
    from infrablocks.images.acceptance import load_verify_spec
    from infrablocks.paths import find_repo_root

    if remove and verify:
        raise UsageError("doit image: --remove and --verify exclude each other")
    if (remove or verify) and (tag or keep):
        raise UsageError("doit image: --tag and --keep go with a build, not with "
                         f"--{'remove' if remove else 'verify'}")
    if not refs and not verify:
        raise UsageError("doit image: name an image to build, e.g. `doit image etcd@1.0.0`")
    parsed = [parse_image_ref(ref) for ref in refs]
    repo_root = find_repo_root()
    if verify:
        return _verify(repo_root, parsed)
    if remove:
        return _remove(repo_root, parsed)
    for ref in parsed:  # every reference (and its checks) checked before the first slow build
        find_template_dir(repo_root, ref)
        load_verify_spec(repo_root, ref)
    return _release(repo_root, parsed, tag, keep)


def _release(repo_root: Path, refs: list[Any], tag: str | None, keep: bool) -> int | None:
    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.images.release import release_image
    from infrablocks.tasks._console import counted, make_console

    cloud = LocalCloud.for_repo(repo_root)
    console = make_console()
    for ref in refs:
        with console.status(f"{ref}: building") as status:
            def progress(text: str, ref: Any = ref, status: Any = status) -> None:
                status.update(f"{ref}: {text}")

            release = release_image(repo_root, ref, cloud, tag=tag, keep=keep, progress=progress)
        verification = release.verification
        how = "[green]registered[/]" if release.new else \
            "[yellow]unchanged[/] (same content, same id)"
        console.print(f"[bold]{ref}[/] {how}, [green]verified[/] "
                      f"({counted(len(verification.checks), 'check')} passed in "
                      f"{verification.seconds:.1f} s), {release.outcome}")
        console.print(f"  id          {release.image.id}")
        console.print(f"  digest      {release.image.digest}")
        console.print(f"  build time  {release.artifact.build_seconds:.2f} s")
        for check in verification.checks:
            console.print(f"  [green]✓[/] {check.name} [dim]({check.seconds:.1f} s: "
                          f"{check.detail})[/]")
        if release.image.tags and release.outcome != "removed (untagged)":
            console.print(f"  tags        {', '.join(release.image.tags)}")
        console.print(f"  packer log  {_relative(release.artifact.log_path, repo_root)}")
    return None


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _remove(repo_root: Path, refs: list[Any]) -> int | None:
    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.images import lookup_image
    from infrablocks.tasks._console import make_console

    cloud = LocalCloud.for_repo(repo_root)
    images = [lookup_image(cloud, ref) for ref in refs]  # all found before removing any
    console = make_console()
    for image in images:
        cloud.remove_image(image.id)
        console.print(f"[bold]{image.ref}[/] removed ({image.id})")
    return None


def _verify(repo_root: Path, refs: list[Any]) -> int | None:
    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.images import ImageRef, available_images, find_template_dir, verify_image
    from infrablocks.tasks._console import make_console

    if not refs:
        refs = [ImageRef(name, version)
                for name, versions in available_images(repo_root).items() for version in versions]
    for ref in refs:
        find_template_dir(repo_root, ref)
    cloud = LocalCloud.for_repo(repo_root)
    console = make_console()
    failed = 0
    for ref in refs:
        with console.status(f"verifying {ref}"):
            result = verify_image(repo_root, ref, cloud)
        if not result.registered:
            console.print(f"[bold]{ref}[/] [dim]not registered (nothing to verify)[/]")
        elif result.ok:
            assert result.image is not None   # registered
            console.print(f"[bold]{ref}[/] [green]ok[/] ({result.image.id}, intact, same "
                          f"content as images/{ref.name}/{ref.version}/)")
        else:
            failed += 1
            for problem in result.problems():
                console.print(f"[bold red]✗[/] {escape(str(problem))}")
    return 1 if failed else None




def task_images() -> dict[str, Any]:
    return command_task(
        "images", _images,
        doc="images: name, version, id, tags, built, size, which block versions use them "
            "(--prune removes untagged images no block version uses)",
        params=[flag("json", help="print the list as JSON"),
                flag("prune", help="remove registered images that have no tag and that no "
                                   "block version uses"),
                flag("dry_run", help="with --prune: only say what would be removed")])


def _images(json: bool, prune: bool, dry_run: bool = False) -> int | None:
    import json as json_module

    from rich.table import Table

    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.errors import UsageError
    from infrablocks.images.inventory import format_size, list_images, prune_images
    from infrablocks.paths import find_repo_root
    from infrablocks.registry import load_registry
    from infrablocks.tasks._console import make_console

    if dry_run and not prune:
        raise UsageError("doit images: --dry-run goes with --prune")
    repo_root = find_repo_root()
    registry = load_registry(repo_root)
    cloud = LocalCloud.for_repo(repo_root)
    console = make_console()
    if prune:
        result = prune_images(repo_root, cloud, registry, dry_run=dry_run)
        if json:
            print(json_module.dumps({
                "removed": [r.to_json() for r in result.removed], "dry_run": dry_run,
                "kept": [{**r.to_json(), "reason": why} for r, why in result.kept_in_use]},
                indent=2))
            return None
        verb = "would remove" if dry_run else "removed"
        for row in result.removed:
            console.print(f"{verb} [bold]{row.ref}[/] ({row.id}, {format_size(row.size_bytes)})")
        for row, why in result.kept_in_use:
            console.print(f"[yellow]kept[/] [bold]{row.ref}[/] ({row.id}): {escape(why)}")
        if not result.removed and not result.kept_in_use:
            console.print("nothing to prune (every registered image is tagged or used by a "
                          "block version)")
        return None
    rows = list_images(repo_root, cloud, registry)
    if json:
        print(json_module.dumps([r.to_json() for r in rows], indent=2))
        return None
    table = Table(box=None, pad_edge=False)
    for column in ("image", "id", "tags", "built", "size", "used by"):
        table.add_column(column, no_wrap=column in ("image", "id"))
    for row in rows:
        table.add_row(row.ref + ("" if row.template else " [red](no template)[/]"),
                      row.id or "[dim]not built[/]", ", ".join(row.tags) or "-",
                      row.built[:16].replace("T", " ") or "-", format_size(row.size_bytes),
                      ", ".join(row.used_by) or "[dim]no block version[/]")
    console.print(table)
    return None
