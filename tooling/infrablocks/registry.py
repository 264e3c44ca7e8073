"""blocks.toml: loading and validation into a typed ``Registry``.

Validation runs before anything else and reports every problem at once (``ConfigError``, exit 2),
each naming the file, the key path (``blocks.nomad.versions."1.0.0".requires.base``), what is
wrong and what would be valid, with "did you mean" suggestions for near names.

Other parts of infrablocks add keys by extending ``ALLOWED_KEYS`` (one entry per kind of table)
and read them from the ``extra`` dicts; top-level tables they own are in ``Registry.settings``.
"""

from __future__ import annotations

import difflib
import gc
import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import ConfigError, UsageError
from infrablocks.paths import REGISTRY_FILE
from infrablocks.versions import _PARSED as _parsed_versions
from infrablocks.versions import (
    CONSTRAINT_HELP,
    Constraint,
    ConstraintSyntaxError,
    Version,
    VersionSyntaxError,
    format_versions,
    parse_constraint,
    parse_version,
)

if TYPE_CHECKING:
    from infrablocks.registry_cache import DirectoryListings

__all__ = [
    "ALLOWED_KEYS",
    "Block",
    "BlockVersion",
    "Environment",
    "Registry",
    "format_key_path",
    "load_registry",
    "suggest",
]

# Allowed keys per kind of table. Keys not interpreted here land in the ``extra`` dicts.
ALLOWED_KEYS: dict[str, set[str]] = {
    "top": {"defaults", "blocks", "environments", "terraform", "state", "ci"},
    "defaults": {"environment"},
    "block": {"description", "stateful", "versions", "rolling"},
    "version": {"path", "requires", "images", "rolling"},
    "environment": {"pins", "subnet", "auto_create"},
}
# Top-level tables whose content other parts validate; kept in ``Registry.settings``.
SETTINGS_TABLES = ("terraform", "state", "ci")
# Keys whose value must be a table when present (their content is validated elsewhere).
TABLE_VALUED_KEYS = {"rolling"}

_FAST_VERSION_KEYS = frozenset({"requires", "images"})

# Keys of a block version handled without the generic unknown-key/extra machinery.
_PLAIN_VERSION_KEYS = frozenset({"path", "requires", "images"})
_INTERPRETED = {"block": frozenset({"description", "stateful", "versions"}),
                "version": _PLAIN_VERSION_KEYS,
                "environment": frozenset({"pins"})}

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

    @property
    def path(self) -> Path:
        if self._path is None:
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


def _type_name(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a float",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _precedence(bv: BlockVersion) -> Any:
    """Sort key: the cached semver precedence tuple (C-level comparisons)."""
    return getattr(bv.version, "_key", None) or bv.version.to_tuple()


class _Problems:
    """Collects problems as (key path parts, message); formats them with file and line."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.items: list[tuple[tuple[str, ...], str]] = []

    def add(self, path: tuple[str, ...], message: str) -> None:
        self.items.append((path, message))

    def unknown_keys(self, table: dict[str, Any], kind: str, path: tuple[str, ...]) -> None:
        allowed = ALLOWED_KEYS[kind]
        for key in table:
            if key not in allowed:
                self.add((*path, key),
                         f"unknown key{suggest(key, allowed)} (allowed here: "
                         f"{', '.join(sorted(allowed))})")

    def formatted(self) -> list[str]:
        try:
            text = self.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        locator = _LineLocator(text)
        located = [(locator.line_of(path), path, message) for path, message in self.items]
        located.sort(key=lambda item: item[0] or 0)  # stable: discovery order within a line
        return [f"{self.file.name}:{line}: {format_key_path(*path)}: {message}" if line
                else f"{self.file.name}: {format_key_path(*path)}: {message}"
                for line, path, message in located]


class _LineLocator:
    """Best-effort line numbers for key paths (tomllib keeps no positions).

    Finds the deepest ``[table]`` header that is a prefix of the path, then the line of the next
    key inside that table. Only used when there are problems to report.
    """

    _HEADER = re.compile(r"^\s*\[(?!\[)(?P<key>[^\]]+)\]")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[tuple[str, ...], int]] = []
        for number, line in enumerate(self.lines, 1):
            match = self._HEADER.match(line)
            if match:
                self.headers.append((_split_key(match.group("key")), number))

    def line_of(self, path: tuple[str, ...]) -> int | None:
        best: tuple[int, int] | None = None  # (prefix length, line)
        for key, number in self.headers:
            if len(key) <= len(path) and path[: len(key)] == key and (
                    best is None or len(key) > best[0]):
                best = (len(key), number)
        if best is None:
            return None
        depth, header_line = best
        if depth == len(path):
            return header_line
        wanted = path[depth]
        key_re = re.compile(r"^\s*(?:\"" + re.escape(wanted) + r"\"|" + re.escape(wanted)
                            + r")\s*[=.]")
        for number in range(header_line + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if self._HEADER.match(line):
                break
            if key_re.match(line):
                return number
        return header_line


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*(?:\.|$)',
                       text.strip())
    return tuple(a or b or c for a, b, c in parts)


def load_registry(repo_root: Path, *, freeze_gc: bool = False) -> Registry:
    """Load and validate ``repo_root/blocks.toml``. Raises ``ConfigError`` listing all problems.

    ``freeze_gc``: for short-lived command-line processes. Moves everything allocated so far out
    of the cyclic collector's reach (``gc.freeze``), which spares a full pass over a large
    registry's objects at exit (~0.1 s for 100,000 versions). Not for long-lived processes:
    frozen garbage cycles are never collected.
    """
    with gc_paused():
        registry = _load_registry(Path(repo_root).resolve())
    if freeze_gc:
        gc.freeze()
    return registry


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building large acyclic structures.

    Loading a 100,000-version registry allocates millions of containers; the collector's
    repeated full passes over them took ~40 % of the load time. Nothing built here is cyclic.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_registry(root: Path) -> Registry:
    from infrablocks import registry_cache

    file = root / REGISTRY_FILE
    try:
        data = registry_cache.cached_document(root, file)
        if data is None:
            text = file.read_text(encoding="utf-8")
            data = parse_toml(file, text)
            registry_cache.store_document(root, file, data)
    except FileNotFoundError:
        raise ConfigError(f"{file}: not found",
                          hint="a blocks monorepo has blocks.toml at its root") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    listings = registry_cache.DirectoryListings(root, use_cache=registry_cache.wanted(file))
    try:
        return _Loader(file, root, listings).load(data)
    finally:
        listings.save()


def parse_toml(file: Path, text: str) -> dict[str, Any]:
    """Parse TOML; syntax errors become ``ConfigError`` at ``file:line:col``.

    Uses rtoml (Rust, ~6x faster on a 10 MB registry) when it is installed; the standard
    library's tomllib otherwise, and always for the error message.
    """
    try:
        import rtoml
    except ImportError:
        rtoml = None
    if rtoml is not None:
        try:
            return rtoml.loads(text)
        except Exception:  # noqa: BLE001 - any rtoml failure: let tomllib decide and explain
            pass
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_error_message(file, str(exc))) from None


def _toml_error_message(file: Path, message: str) -> str:
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        reason = message[: match.start()].strip()
        return f"{file}:{match.group(1)}:{match.group(2)}: TOML syntax error: {reason}"
    return f"{file}: TOML syntax error: {message}"


class _Loader:
    def __init__(self, file: Path, root: Path, listings: DirectoryListings | None = None) -> None:
        from infrablocks.registry_cache import DirectoryListings

        self.file = file
        self.root = root
        self.problems = _Problems(file)
        self._listings = listings or DirectoryListings(root, use_cache=False)
        self._dir_listings: dict[str, frozenset[str] | set[str] | None] = {}
        # every distinct (required block, constraint text), checked once after loading
        self._requirement_pairs: set[tuple[str, str]] = set()
        self._self_requirements = False
        self._block_deps: dict[str, set[str]] = {}
        self._dropped_requirements = False

    def load(self, data: dict[str, Any]) -> Registry:
        p = self.problems
        p.unknown_keys(data, "top", ())
        defaults = self._table(data, "defaults", ())
        p.unknown_keys(defaults, "defaults", ("defaults",))
        default_env = defaults.get("environment")
        if default_env is not None and not isinstance(default_env, str):
            p.add(("defaults", "environment"),
                  f"must be a string naming an environment, not {_type_name(default_env)}")

        blocks = self._load_blocks(self._table(data, "blocks", ()))
        self._check_requirements(blocks)
        environments = self._load_environments(self._table(data, "environments", ()), blocks)
        if isinstance(default_env, str) and environments and default_env not in environments:
            p.add(("defaults", "environment"),
                  f"environment `{default_env}` is not defined{suggest(default_env, environments)}"
                  f" (defined: {', '.join(environments)})")
        settings = {}
        for name in SETTINGS_TABLES:
            if name in data:
                settings[name] = self._table(data, name, ())
        self._check_cycles(blocks)
        if p.items:
            count = len(p.items)
            raise ConfigError(
                f"{self.file}: {count} problem{'s' if count != 1 else ''} in the block registry",
                problems=p.formatted())
        return Registry(path=self.file, root=self.root, defaults=dict(defaults), blocks=blocks,
                        environments=environments, settings=settings)

    def _table(self, parent: dict[str, Any], key: str, path: tuple[str, ...]) -> dict[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            self.problems.add((*path, key), f"must be a table, not {_type_name(value)}")
            return {}
        return value

    # blocks -------------------------------------------------------------------------------

    def _load_blocks(self, table: dict[str, Any]) -> dict[str, Block]:
        blocks: dict[str, Block] = {}
        for name, spec in table.items():
            path = ("blocks", name)
            if not BLOCK_NAME.match(name):
                self.problems.add(path, f"invalid block name: expected {BLOCK_NAME_HELP}")
                continue
            if not isinstance(spec, dict):
                self.problems.add(path, f"must be a table, not {_type_name(spec)}")
                continue
            blocks[name] = self._load_block(name, spec, path)
        return blocks

    def _load_block(self, name: str, spec: dict[str, Any], path: tuple[str, ...]) -> Block:
        p = self.problems
        p.unknown_keys(spec, "block", path)
        description = spec.get("description", "")
        if not isinstance(description, str):
            p.add((*path, "description"), f"must be a string, not {_type_name(description)}")
            description = ""
        stateful = spec.get("stateful", False)
        if not isinstance(stateful, bool):
            p.add((*path, "stateful"), f"must be true or false, not {_type_name(stateful)}")
            stateful = False
        extra = self._extra(spec, "block", path)
        block = Block(name=name, description=description, stateful=stateful, extra=extra)
        versions = self._table(spec, "versions", path)
        if not versions and isinstance(spec.get("versions", {}), dict):
            p.add((*path, "versions"),
                  f"block has no versions: add a table [blocks.{name}.versions.\"1.0.0\"] "
                  f"(its Terraform code goes in blocks/{name}/1.0.0/)")
        loaded: list[BlockVersion] = []
        listing = self._listing(name)
        remember_pairs = self._requirement_pairs.update
        root = self.root
        deps: set[str] = set()  # every block any version requires (for the cycle check)
        self._block_deps[name] = deps
        for text, vspec in versions.items():
            try:
                version = _parsed_versions.get(text) or parse_version(text)
            except VersionSyntaxError as exc:
                p.add((*path, "versions", text), f"invalid version: {exc}")
                continue
            raw = vspec.get("requires") if type(vspec) is dict else None
            if type(vspec) is dict and listing is not None and text in listing \
                    and vspec.keys() <= _FAST_VERSION_KEYS and (raw is None or type(raw) is dict):
                # Fast path for the common shape (requires + images, default directory).
                try:
                    if raw:  # constraints are checked once per distinct text, after loading
                        remember_pairs(raw.items())
                        deps.update(raw)
                        if name in raw:
                            self._self_requirements = True
                except (TypeError, AttributeError):
                    pass  # not a table of strings: the general path says what is wrong
                else:
                    images = vspec.get("images")
                    loaded.append(BlockVersion(
                        name, version, None, None,
                        [] if images is None else self._images(
                            images, (*path, "versions", text, "images")),
                        {}, root=root, raw_requires=raw or None))
                    continue
            if not isinstance(vspec, dict):
                p.add((*path, "versions", text), f"must be a table, not {_type_name(vspec)}")
                continue
            loaded.append(self._load_version(name, version, text, vspec, path))
            deps.update(loaded[-1].required_blocks())
        loaded.sort(key=_precedence)
        block.versions = {bv.version: bv for bv in loaded}
        if len(block.versions) != len(loaded):
            seen: set[Version] = set()
            for bv in loaded:
                if bv.version in seen:
                    p.add((*path, "versions", str(bv.version)),
                          f"version {bv.version} is declared twice (as different spellings)")
                seen.add(bv.version)
        return block

    def _load_version(self, block: str, version: Version, text: str, spec: dict[str, Any],
                      block_path: tuple[str, ...]) -> BlockVersion:
        """One block version. The hot path of loading (100,000 calls for a big registry):
        key paths are only built when there is a problem to report."""
        p = self.problems
        if spec.keys() - _PLAIN_VERSION_KEYS:
            p.unknown_keys(spec, "version", (*block_path, "versions", text))
        directory = self._version_directory(block, version, spec.get("path"),
                                            (*block_path, "versions", text))
        requires: dict[str, str] = {}
        raw_requires = spec.get("requires")
        if raw_requires is not None and not isinstance(raw_requires, dict):
            p.add((*block_path, "versions", text, "requires"),
                  f"must be a table of block = \"constraint\", not {_type_name(raw_requires)}")
            raw_requires = None
        for dep, constraint_text in (raw_requires or {}).items():
            if isinstance(constraint_text, str):
                requires[dep] = constraint_text
            else:
                p.add((*block_path, "versions", text, "requires", dep),
                      f"must be a constraint string ({CONSTRAINT_HELP}), "
                      f"not {_type_name(constraint_text)}")
        self._requirement_pairs.update(requires.items())
        if block in requires:
            self._self_requirements = True
        raw_images = spec.get("images")
        images = [] if raw_images is None else self._images(
            raw_images, (*block_path, "versions", text, "images"))
        extra = self._extra(spec, "version", (*block_path, "versions", text)) \
            if len(spec) > len(spec.keys() & _INTERPRETED["version"]) else {}
        return BlockVersion(block, version, directory, None, images, extra, root=self.root,
                            raw_requires=requires or None)

    def _version_directory(self, block: str, version: Version, raw: Any,
                           path: tuple[str, ...]) -> Path | None:
        """The version's directory; None for the default one (computed lazily)."""
        if raw is None:
            if not self._listed(block, path[-1]):
                self.problems.add(path, f"directory blocks/{block}/{path[-1]}/ does not exist "
                                        f"(a block version is a Terraform root module there; "
                                        f"or set `path`)")
            return None
        if not isinstance(raw, str):
            self.problems.add((*path, "path"),
                              f"must be a string (a directory relative to the repository "
                              f"root), not {_type_name(raw)}")
            return None
        directory = Path(os.path.normpath(self.root / raw))
        resolved = directory.resolve()
        if not (resolved == self.root or self.root in resolved.parents):
            self.problems.add((*path, "path"),
                              f"`{raw}` lies outside the repository {self.root}: block code "
                              f"must live in the monorepo (e.g. blocks/{block}/{version})")
        elif not directory.is_dir():
            self.problems.add((*path, "path"), f"directory `{raw}` does not exist "
                                               f"(relative to {self.root})")
        return directory

    def _listed(self, block: str, name: str) -> bool:
        """Whether ``blocks/BLOCK/NAME`` is a directory."""
        listing = self._listing(block)
        return listing is not None and name in listing

    def _listing(self, block: str) -> frozenset[str] | set[str] | None:
        """The entries of ``blocks/BLOCK``: one listing per block instead of a stat per version
        (registries with 100,000 versions). Names only: a plain file named like a version would
        pass here; Terraform reports that one when it runs."""
        if block not in self._dir_listings:
            self._dir_listings[block] = self._listings.names(block)
        return self._dir_listings[block]

    def _images(self, raw: Any, path: tuple[str, ...]) -> list[str]:
        if not isinstance(raw, list):
            self.problems.add(path, f"must be an array of \"name@version\" strings, "
                                    f"not {_type_name(raw)}")
            return []
        images = []
        for index, ref in enumerate(raw):
            match = IMAGE_REF.match(ref) if isinstance(ref, str) else None
            if not match:
                self.problems.add(path, f"item {index + 1} ({ref!r}) is not \"name@version\" "
                                        f"(e.g. \"etcd@1.0.0\")")
                continue
            try:
                parse_version(match.group("version"))
            except VersionSyntaxError as exc:
                self.problems.add(path, f"item {index + 1} ({ref!r}): {exc}")
                continue
            images.append(ref)
        return images

    def _extra(self, spec: dict[str, Any], kind: str, path: tuple[str, ...]) -> dict[str, Any]:
        interpreted = _INTERPRETED[kind]
        extra = {}
        for key, value in spec.items():
            if key in interpreted or key not in ALLOWED_KEYS[kind]:
                continue
            if key in TABLE_VALUED_KEYS and not isinstance(value, dict):
                self.problems.add((*path, key), f"must be a table, not {_type_name(value)}")
                continue
            extra[key] = value
        return extra

    def _check_requirements(self, blocks: dict[str, Block]) -> None:
        """Invalid constraints, unknown blocks, self-requirements and requirements no version
        satisfies.

        Each distinct (block, constraint text) is checked once, against the block's set of
        versions (cached per constraint and set: blocks mostly share the same few version sets).
        Only when something is wrong are the versions walked again to say where; the offending
        entries are dropped so that every ``requires`` left builds.
        """
        interned: dict[tuple[Version, ...], int] = {}
        set_of: dict[str, int] = {}  # block → id of its set of versions
        for name, block in blocks.items():
            set_of[name] = interned.setdefault(tuple(block.versions), len(interned))
        members = {number: versions for versions, number in interned.items()}
        satisfiable: dict[tuple[str, int], bool] = {}
        bad: dict[tuple[str, Any], str] = {}  # (block, constraint text) → what is wrong
        for dep, text in self._requirement_pairs:
            try:
                constraint = parse_constraint(text)
            except ConstraintSyntaxError as exc:
                bad[(dep, text)] = (f"invalid constraint: {exc}" if isinstance(text, str) else
                                    f"must be a constraint string ({CONSTRAINT_HELP}), "
                                    f"not {_type_name(text)}")
                continue
            number = set_of.get(dep)
            if number is None:
                bad[(dep, text)] = (f"requires unknown block `{dep}`{suggest(dep, blocks)} "
                                    f"(known blocks: {_short_list(blocks)})")
                continue
            key = (constraint.text, number)
            ok = satisfiable.get(key)
            if ok is None:
                versions = members[number]
                ok = satisfiable[key] = not versions or any(
                    constraint.allows(v) for v in versions)
            if not ok:
                bad[(dep, text)] = (f"no version of `{dep}` satisfies `{constraint}` "
                                    f"(versions of {dep}: "
                                    f"{format_versions(blocks[dep].versions)})")
        if not bad and not self._self_requirements:
            return
        for name, block in blocks.items():
            for bv in block.versions.values():
                raw = bv._raw_requires
                if not raw:
                    continue
                for dep, text in list(raw.items()):
                    rpath = ("blocks", name, "versions", str(bv.version), "requires", dep)
                    if dep == name:
                        self.problems.add(rpath, f"block `{dep}` requires itself: a block "
                                                 f"cannot depend on its own outputs")
                        del raw[dep]
                        self._dropped_requirements = True
                    elif (dep, text) in bad:
                        self.problems.add(rpath, bad[(dep, text)])
                        del raw[dep]
                        self._dropped_requirements = True

    # environments -------------------------------------------------------------------------

    def _load_environments(self, table: dict[str, Any],
                           blocks: dict[str, Block]) -> dict[str, Environment]:
        p = self.problems
        environments: dict[str, Environment] = {}
        for name, spec in table.items():
            path = ("environments", name)
            if not ENV_NAME.match(name):
                p.add(path, f"invalid environment name: expected {ENV_NAME_HELP}")
                continue
            if not isinstance(spec, dict):
                p.add(path, f"must be a table, not {_type_name(spec)}")
                continue
            p.unknown_keys(spec, "environment", path)
            pins: dict[str, Version] = {}
            for block, text in self._table(spec, "pins", path).items():
                ppath = (*path, "pins", block)
                if block not in blocks:
                    p.add(ppath, f"pin of unknown block `{block}`{suggest(block, blocks)} "
                                 f"(known blocks: {_short_list(blocks)})")
                    continue
                try:
                    version = parse_version(text)
                except VersionSyntaxError as exc:
                    p.add(ppath, f"a pin is an exact version: {exc}")
                    continue
                if version not in blocks[block].versions:
                    near = suggest(str(version), [str(v) for v in blocks[block].versions])
                    p.add(ppath, f"pin to version {version}, which `{block}` does not have"
                                 f"{near} (versions of {block}: "
                                 f"{format_versions(blocks[block].versions)})")
                    continue
                pins[block] = version
            subnet = spec.get("subnet")
            if subnet is not None and not isinstance(subnet, str):
                p.add((*path, "subnet"), f"must be a string such as \"127.42.7.0/24\", "
                                         f"not {_type_name(subnet)}")
            auto_create = spec.get("auto_create")
            if auto_create is not None and not isinstance(auto_create, bool):
                p.add((*path, "auto_create"),
                      f"must be true or false, not {_type_name(auto_create)}")
            environments[name] = Environment(name=name, pins=pins,
                                             extra=self._extra(spec, "environment", path))
        return environments

    # cycles -------------------------------------------------------------------------------

    def _check_cycles(self, blocks: dict[str, Block]) -> None:
        if self._dropped_requirements:  # the dependency sets gathered while loading are stale
            edges = {name: sorted({dep for bv in block.versions.values()
                                   for dep in bv.required_blocks()})
                     for name, block in blocks.items()}
        else:
            edges = {name: sorted(self._block_deps.get(name, ())) for name in blocks}
        for cycle in find_block_cycles(edges):
            first = cycle[0]
            self.problems.add(
                ("blocks", first),
                f"dependency cycle: {describe_cycle(blocks, cycle)} (blocks must form a "
                f"directed acyclic graph: a block is created after the blocks it requires)")


def _short_list(names: Any, limit: int = 12) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def find_block_cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with a cycle (iterative Tarjan).

    ``edges`` maps a block to the blocks it requires. Each cycle starts at its smallest name.
    Kept free of networkx: it runs on every load.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(edges.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    cycles = []
    for component in components:
        members = set(component)
        cycles.append(_cycle_in(min(members), members, edges))
    return sorted(cycles)


def _cycle_in(start: str, members: set[str], edges: dict[str, list[str]]) -> list[str]:
    """A shortest cycle through ``start`` inside a strongly connected component (BFS)."""
    previous: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        following = []
        for node in frontier:
            for child in edges.get(node, ()):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return list(reversed(path))
                if child not in seen:
                    seen.add(child)
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start]


def describe_cycle(blocks: dict[str, Block], cycle: list[str]) -> str:
    """``a 1.0.0 → b 2.0.0 → a``: each block with a version that requires the next one,
    preferring versions the previous requirement allows."""
    parts = []
    allowed: Constraint | None = None
    for position, name in enumerate(cycle):
        following = cycle[(position + 1) % len(cycle)]
        candidates = [bv for bv in blocks[name].newest_first() if following in bv.requires]
        preferred = [bv for bv in candidates if allowed is None or allowed.allows(bv.version)]
        if not candidates:
            parts.append(name)
            allowed = None
            continue
        chosen = (preferred or candidates)[0]
        parts.append(f"{name} {chosen.version}")
        allowed = chosen.requires[following]
    return " → ".join([*parts, cycle[0]])
