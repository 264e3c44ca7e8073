"""`doit release` and `doit new-version`: released block versions are frozen; changes go into
a new version (docs/environments.md, "Released versions are frozen")."""

from __future__ import annotations

from typing import Any

from infrablocks.tasks._command import command_task, option


def task_release() -> dict[str, Any]:
    return command_task(
        "release", _release, positional="targets",
        doc="record block versions as released in blocks.lock (their code is frozen from then)")


def task_new_version() -> dict[str, Any]:
    return {"basename": "new-version", **command_task(
        "new-version", _new_version, positional="targets",
        doc="cut a new version of a block from its newest one (folder copied, blocks.toml entry "
            "with the same requires and images)",
        params=[option("version", help="the new version (default: the newest, bumped)"),
                option("bump", help="which part to bump when --version is not given "
                                    "(default minor)",
                       default="minor", choices=["major", "minor", "patch"]),
                option("from_version", help="copy this version instead of the newest")])}


def _release(targets: list[str]) -> int | None:
    from rich.console import Console

    from infrablocks.errors import UsageError
    from infrablocks.paths import find_repo_root
    from infrablocks.registry import load_registry
    from infrablocks.release.lockfile import LOCK_FILE, record_release
    from infrablocks.resolve import parse_target

    if not targets:
        raise UsageError("name the versions to release", hint="e.g. doit release base@1.1.0")
    root = find_repo_root()
    registry = load_registry(root)
    versions = []
    for target in targets:
        name, version = parse_target(registry, target)
        if version is None:
            raise UsageError(f"`{target}`: name the version to release",
                             hint=f"e.g. doit release {name}@"
                                  f"{registry.block(name).newest_first()[0].version}")
        versions.append(registry.block_version(name, version))
    console = Console(highlight=False, soft_wrap=True)
    for chosen in versions:
        release, new = record_release(root, chosen)
        console.print(f"{chosen.label}: " + (f"released ({release.code.digest[:19]}…)"
                                              if new else "already released, same code"))
    console.print(f"commit {LOCK_FILE} with the repository")
    return None


def _new_version(targets: list[str], version: str | None, bump: str,
                 from_version: str | None) -> int | None:
    from rich.console import Console

    from infrablocks.errors import UsageError
    from infrablocks.paths import find_repo_root
    from infrablocks.registry import load_registry
    from infrablocks.release.cut import cut_version

    if len(targets) != 1:
        raise UsageError("doit new-version takes exactly one block",
                         hint="e.g. doit new-version base")
    registry = load_registry(find_repo_root())
    cut = cut_version(registry, targets[0], version=version, bump=bump,
                      source=from_version)
    root = registry.path.parent
    deploy = (f"doit upgrade {cut.block} --env ENV --to {cut.version}"
              if registry.blocks[cut.block].stateful
              else f"doit create {cut.block}@{cut.version} --env ENV")
    Console(highlight=False, soft_wrap=True).print(
        f"{cut.block} {cut.version}: {cut.path.relative_to(root)}/ copied from {cut.source}, "
        f"registered in {registry.path.name} (same requires and images). Edit it, try it with "
        f"`doit env {cut.block}@{cut.version}`, then deploy it: `{deploy}`")
    return None
