"""The block registry's model: blocks, their versions, environments, the registry itself.

Built by ``infrablocks.registry.loader`` from blocks.toml; read by every other part. Names follow
blocks.toml's keys. Nothing here reads files.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infrablocks.errors import UsageError
from infrablocks.versions import (
    Constraint,
    Version,
    VersionSyntaxError,
    format_versions,
    parse_constraint,
    parse_version,
)

__all__ = [
    "BLOCK_NAME",
    "BLOCK_NAME_HELP",
    "ENV_NAME",
    "ENV_NAME_HELP",
    "IMAGE_REF",
    "Block",
    "BlockVersion",
    "Environment",
    "Registry",
    "format_key_path",
    "suggest",
]

BLOCK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
BLOCK_NAME_HELP = ("a Terraform identifier (letters, digits, `_`, `-`, starting with a letter "
                   "or `_`), because dependents receive the block's outputs as a variable of "
                   "that name")
ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ENV_NAME_HELP = "letters, digits, `_`, `.`, `-`, starting with a letter or digit"
IMAGE_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)@(?P<version>.+)$")


class BlockVersion:
    """One immutable version of a block: a Terraform root module directory and its metadata.

    ``path`` is absolute. It is computed on first use when the version uses the default
    ``blocks/NAME/VERSION``, and ``requires`` is built from the constraint texts on first use
    (``raw_requires``): building 100,000 of each would dominate loading a large registry.
    Identity-hashed: one object per version per loaded registry.
    """

    __slots__ = ("block", "version", "_path", "_root", "_requires", "_raw_requires", "images",
                 "extra")

    def __init__(self, block: str, version: Version, path: Path | None = None,
                 requires: dict[str, Constraint] | None = None, images: list[str] | None = None,
                 extra: dict[str, Any] | None = None, *, root: Path | None = None,
                 raw_requires: dict[str, str] | None = None) -> None:
        if path is None and root is None:
            raise ValueError("BlockVersion needs a path or the repository root")
        self.block = block
        self.version = version
        self._path = path
        self._root = root
        self._raw_requires = raw_requires
        self._requires: dict[str, Constraint] | None = (
            requires if requires is not None else None if raw_requires else {})
        self.images: list[str] = images if images is not None else []
        self.extra: dict[str, Any] = extra if extra is not None else {}

    @property
    def requires(self) -> dict[str, Constraint]:
        """Required block → constraint."""
        if self._requires is None:
            self._requires = {dep: parse_constraint(text)
                              for dep, text in self._raw_requires.items()}  # type: ignore[union-attr]
        return self._requires

    @requires.setter
    def requires(self, value: dict[str, Constraint]) -> None:
        self._requires = value
        self._raw_requires = None

    def required_blocks(self) -> list[str]:
        """The names of the required blocks (without building the constraints)."""
        source = self._requires if self._requires is not None else self._raw_requires
        return list(source or ())

    def requirement_texts(self) -> dict[str, Any]:
        """Required block → the constraint as written in blocks.toml (a copy; not yet
        validated while the registry is being loaded)."""
        if self._requires is None:
            return dict(self._raw_requires or {})
        return {dep: constraint.text for dep, constraint in self._requires.items()}

    def drop_requirement(self, dep: str) -> None:
        """Forget the requirement on ``dep``: validation drops each one it reports, so that the
        rest of the validation can build the constraints left."""
        if self._raw_requires is not None:
            self._raw_requires.pop(dep, None)
        if self._requires is not None:
            self._requires.pop(dep, None)

    @property
    def path(self) -> Path:
        if self._path is None:
            assert self._root is not None   # __init__ wants a path or the repository root
            self._path = Path(self._root, "blocks", self.block, str(self.version))
        return self._path

    @path.setter
    def path(self, value: Path) -> None:
        self._path = value

    @property
    def label(self) -> str:
        return f"{self.block} {self.version}"

    def __repr__(self) -> str:
        return f"BlockVersion({self.block}@{self.version})"


@dataclass(eq=False)
class Block:
    name: str
    description: str = ""
    stateful: bool = False
    versions: dict[Version, BlockVersion] = field(default_factory=dict)  # ascending
    extra: dict[str, Any] = field(default_factory=dict)

    def newest_first(self) -> list[BlockVersion]:
        return list(reversed(self.versions.values()))  # ``versions`` is kept ascending

    def required_blocks(self) -> set[str]:
        """Every block that some version of this block requires."""
        return {dep for bv in self.versions.values() for dep in bv.required_blocks()}

    def version(self, version: Version | str) -> BlockVersion:
        """The block version ``version``; ``UsageError`` naming the existing ones otherwise."""
        try:
            wanted = version if isinstance(version, Version) else parse_version(version)
        except VersionSyntaxError as exc:
            raise UsageError(f"block `{self.name}`: {exc}") from None
        if wanted not in self.versions:
            raise UsageError(f"block `{self.name}` has no version {wanted}",
                             hint=f"versions of {self.name}: {format_versions(self.versions)}")
        return self.versions[wanted]


@dataclass(eq=False)
class Environment:
    name: str
    pins: dict[str, Version] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Registry:
    path: Path  # the blocks.toml file
    root: Path  # the repository root
    defaults: dict[str, Any]
    blocks: dict[str, Block]
    environments: dict[str, Environment]
    settings: dict[str, Any]

    @property
    def default_environment(self) -> str | None:
        return self.defaults.get("environment")

    def block(self, name: str) -> Block:
        """The block ``name``; ``UsageError`` with near names otherwise."""
        if name not in self.blocks:
            raise UsageError(f"unknown block `{name}`{suggest(name, self.blocks)}",
                             hint=f"blocks in {self.path.name}: {', '.join(sorted(self.blocks))}")
        return self.blocks[name]

    def environment(self, name: str | None) -> Environment:
        """The environment ``name`` (default: ``defaults.environment``).

        An environment not declared in blocks.toml (e.g. an ephemeral ``t-1234``) has no pins.
        """
        chosen = name or self.default_environment
        if not chosen:
            return Environment(name="")
        if chosen in self.environments:
            return self.environments[chosen]
        if not ENV_NAME.match(chosen):
            raise UsageError(f"invalid environment name `{chosen}`: expected {ENV_NAME_HELP}")
        return Environment(name=chosen)

    def block_version(self, name: str, version: Version | str) -> BlockVersion:
        return self.block(name).version(version)


def suggest(name: str, known: Any, *, quote: str = "`") -> str:
    """``"; did you mean `x`?"`` for the closest known names, or ``""``."""
    matches = difflib.get_close_matches(str(name), [str(k) for k in known], n=3, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(f"{quote}{m}{quote}" for m in matches) + "?"


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_key_path(*parts: str) -> str:
    """A TOML key path, quoting the parts that are not bare keys: ``versions."1.0.0"``."""
    return ".".join(p if _BARE_KEY.match(p) else '"' + p.replace('"', '\\"') + '"'
                    for p in parts)

