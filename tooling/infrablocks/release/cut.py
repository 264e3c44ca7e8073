"""``doit new-version BLOCK``: cut a new version of a block from its newest one.

Released and deployed versions are frozen (:mod:`infrablocks.release.frozen`); a change goes
into a new version. This makes that the easy path: the newest version's folder is copied to
``blocks/NAME/NEW`` (its ``tests/`` included; Terraform's and Python's caches left out) and the
new version is registered in blocks.toml with the same ``requires``, ``images`` and any other
key of the source version (its ``path`` aside), right after it. blocks.toml keeps its layout and
comments (tomlkit), and is replaced atomically.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from infrablocks.registry import BlockVersion, Registry

BUMPS = ("major", "minor", "patch")
_IGNORED = shutil.ignore_patterns(".terraform*", "__pycache__", ".pytest_cache", "*.pyc",
                                  "terraform.tfstate*", "*.tfplan")


@dataclass(frozen=True)
class CutVersion:
    block: str
    source: str      # the version copied
    version: str     # the new one
    path: Path       # its folder


def next_version(registry: Registry, block: str, bump: str = "minor") -> str:
    """The newest version of ``block`` bumped (``major`` / ``minor`` / ``patch``)."""
    if bump not in BUMPS:
        raise UsageError(f"unknown bump {bump!r}", hint=f"one of: {', '.join(BUMPS)}")
    newest = registry.block(block).newest_first()[0].version
    return str(getattr(newest, f"bump_{bump}")())


def cut_version(registry: Registry, block: str, *, version: str | None = None,
                bump: str = "minor", source: str | None = None) -> CutVersion:
    """Copy ``source`` (default: the newest version) to a new ``version`` (default: the newest
    bumped by ``bump``) and register it in blocks.toml (see the module docstring)."""
    from infrablocks.versions import VersionSyntaxError, parse_version

    declared = registry.block(block)
    if not declared.versions:
        raise UsageError(f"block `{block}` has no version to cut a new one from")
    origin: BlockVersion = (declared.version(source) if source is not None
                            else declared.newest_first()[0])
    text = version if version is not None else next_version(registry, block, bump)
    try:
        new = parse_version(text)
    except VersionSyntaxError as exc:
        raise UsageError(f"--version: {exc}") from None
    if new in declared.versions:
        raise UsageError(f"block `{block}` already has version {new}",
                         hint=f"choose another, e.g. --version {next_version(registry, block)}")
    repo_root = registry.path.parent
    target = repo_root / "blocks" / block / str(new)
    if target.exists():
        raise UsageError(f"{target.relative_to(repo_root)} already exists",
                         hint="remove it, or choose another version with --version")
    if not origin.path.is_dir():
        raise ConfigError(f"{origin.label}: its folder {origin.path} does not exist")
    shutil.copytree(origin.path, target, ignore=_IGNORED, symlinks=True)
    try:
        _register(registry.path, block, str(origin.version), str(new))
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return CutVersion(block, str(origin.version), str(new), target)


def _register(registry_file: Path, block: str, source: str, new: str) -> None:
    """Add ``[blocks.BLOCK.versions."NEW"]`` after the last version table of the block, with
    the source version's keys (without ``path``)."""
    import tomlkit
    from tomlkit.items import InlineTable

    text = registry_file.read_text(encoding="utf-8")
    document = tomlkit.parse(text)
    try:
        versions = document["blocks"][block]["versions"]
        original = versions[source]
    except (KeyError, TypeError):
        raise ConfigError(f"{registry_file.name}: no blocks.{block}.versions.\"{source}\" "
                          "table to copy") from None
    inline = isinstance(versions, InlineTable) or isinstance(original, InlineTable)
    entry = tomlkit.inline_table() if inline else tomlkit.table()
    for key, value in original.items():
        if key != "path":
            entry[key] = copy.deepcopy(value)
    if not inline:
        entry.add(tomlkit.nl())
    versions[new] = entry
    tmp = registry_file.with_name(f".{registry_file.name}.{os.getpid()}.tmp")
    tmp.write_text(tomlkit.dumps(document), encoding="utf-8")
    os.replace(tmp, registry_file)
