"""`doit images [--json] [--prune]`: the images there are, and who uses them.

Also registers the `doit check` check "every block version's images exist as templates".
"""

from __future__ import annotations

from typing import Any

from infrablocks.checks_registry import register_check
from infrablocks.tasks._command import command_task, flag

register_check("images", "infrablocks.images.inventory:check_block_images")


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

    from rich.console import Console
    from rich.table import Table

    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.errors import UsageError
    from infrablocks.images.inventory import format_size, list_images, prune_images
    from infrablocks.paths import find_repo_root, work_dir
    from infrablocks.registry import load_registry

    if dry_run and not prune:
        raise UsageError("doit images: --dry-run goes with --prune")
    repo_root = find_repo_root()
    registry = load_registry(repo_root)
    cloud = LocalCloud.from_env(default=work_dir(repo_root) / "cloud")
    console = Console(highlight=False, soft_wrap=True)
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
            console.print(f"[yellow]kept[/] [bold]{row.ref}[/] ({row.id}): {why}")
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
