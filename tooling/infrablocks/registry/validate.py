"""blocks.toml's parsed document → a validated ``Registry``, every problem at once.

Validation runs before anything else and reports every problem at once (``ConfigError``, exit 2),
each naming the file, the line, the key path (``blocks.nomad.versions."1.0.0".requires.base``),
what is wrong and what would be valid, with "did you mean" suggestions for near names.

Other parts of infrablocks add keys by extending ``ALLOWED_KEYS`` (one entry per kind of table)
and read them from the ``extra`` dicts; top-level tables they own are in ``Registry.settings``.

Built for registries of 100,000 block versions: a version's key paths are only built when there
is a problem to report, and each distinct (block, constraint text) is checked once.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import ConfigError
from infrablocks.registry.cycles import describe_cycle, find_block_cycles
from infrablocks.registry.locate import format_problems
from infrablocks.registry.model import (
    BLOCK_NAME,
    BLOCK_NAME_HELP,
    ENV_NAME,
    ENV_NAME_HELP,
    IMAGE_REF,
    Block,
    BlockVersion,
    Environment,
    Registry,
    suggest,
)
from infrablocks.versions import (
    CONSTRAINT_HELP,
    ConstraintSyntaxError,
    Version,
    VersionSyntaxError,
    format_versions,
    parse_constraint,
    parse_version,
    precedence_key,
)

if TYPE_CHECKING:
    from infrablocks.registry_cache import DirectoryListings

__all__ = ["ALLOWED_KEYS", "SETTINGS_TABLES", "SUBNET_SUPERNET", "TABLE_VALUED_KEYS", "Validator",
           "subnet_problem"]

# Every local-cloud environment's addresses lie in this network (the subnet allocator's pool).
SUBNET_SUPERNET = ipaddress.IPv4Network("127.42.0.0/16")


# Allowed keys per kind of table. Keys not interpreted here land in the ``extra`` dicts.
ALLOWED_KEYS: dict[str, set[str]] = {
    "top": {"defaults", "blocks", "environments", "terraform", "state", "ci", "platforms"},
    "defaults": {"environment", "platform"},
    "block": {"description", "stateful", "versions", "rolling"},
    "version": {"path", "requires", "images", "rolling"},
    "environment": {"pins", "subnet", "auto_create", "platform"},
}
# Top-level tables whose content other parts validate; kept in ``Registry.settings``.
SETTINGS_TABLES = ("terraform", "state", "ci", "platforms")  # platforms: platforms/choice.py
# Keys whose value must be a table when present (their content is validated elsewhere).
TABLE_VALUED_KEYS = {"rolling"}


# Keys of a block version handled without the generic unknown-key/extra machinery.
_PLAIN_VERSION_KEYS = frozenset({"path", "requires", "images"})
_INTERPRETED = {"block": frozenset({"description", "stateful", "versions"}),
                "version": _PLAIN_VERSION_KEYS,
                "environment": frozenset({"pins"})}


def _type_name(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a float",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


class Problems:
    """Collects problems as (key path parts, message); ``formatted`` adds file and line."""

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
        return format_problems(self.file, self.items)



class Validator:
    """Validates one parsed blocks.toml document and builds the ``Registry`` from it."""

    def __init__(self, file: Path, root: Path, listings: DirectoryListings | None = None) -> None:
        from infrablocks.registry_cache import DirectoryListings

        self.file = file
        self.root = root
        self.problems = Problems(file)
        self._listings = listings or DirectoryListings(root, use_cache=False)
        self._dir_listings: dict[str, frozenset[str] | set[str] | None] = {}
        # every distinct (required block, constraint text), checked once after loading
        self._requirement_pairs: set[tuple[str, str]] = set()
        self._self_requirements = False
        self._block_deps: dict[str, set[str]] = {}
        self._dropped_requirements = False
        # version text → Version: a registry repeats a few texts in every block (a dict lookup
        # is cheaper than a call per version, 100,000 times)
        self._version_texts: dict[str, Version] = {}

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
        environments = self._load_environments(self._table(data, "environments", ()), blocks,
                                               data)
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
        deps: set[str] = set()  # every block any version requires (for the cycle check)
        self._block_deps[name] = deps
        listing = self._listing(name)
        seen = self._version_texts
        for text, vspec in versions.items():
            version = seen.get(text)
            if version is None:
                try:
                    version = seen[text] = parse_version(text)
                except VersionSyntaxError as exc:
                    p.add((*path, "versions", text), f"invalid version: {exc}")
                    continue
            if type(vspec) is not dict:
                p.add((*path, "versions", text), f"must be a table, not {_type_name(vspec)}")
                continue
            loaded.append(self._load_version(name, version, text, vspec, path, listing, deps))
        loaded.sort(key=lambda bv: precedence_key(bv.version))
        block.versions = {bv.version: bv for bv in loaded}
        if len(block.versions) != len(loaded):
            declared: set[Version] = set()
            for bv in loaded:
                if bv.version in declared:
                    p.add((*path, "versions", str(bv.version)),
                          f"version {bv.version} is declared twice (as different spellings)")
                declared.add(bv.version)
        return block

    def _load_version(self, block: str, version: Version, text: str, spec: dict[str, Any],
                      block_path: tuple[str, ...], listing: frozenset[str] | set[str] | None,
                      deps: set[str]) -> BlockVersion:
        """One block version; adds the blocks it requires to ``deps``. ``listing``: the entries
        of ``blocks/BLOCK`` (None when it is not a directory).

        The hot path of loading (100,000 calls for a big registry): key paths are only built
        when there is a problem to report, and the constraint texts are checked after loading,
        once per distinct (block, text) (``_check_requirements``)."""
        p = self.problems
        if spec.keys() <= _PLAIN_VERSION_KEYS:
            extra: dict[str, Any] = {}
        else:
            p.unknown_keys(spec, "version", (*block_path, "versions", text))
            extra = self._extra(spec, "version", (*block_path, "versions", text))
        raw_path = spec.get("path")
        if raw_path is None and listing is not None and text in listing:
            directory = None  # the default blocks/BLOCK/VERSION, computed on first use
        else:
            directory = self._version_directory(block, version, raw_path,
                                                (*block_path, "versions", text))
        requires = spec.get("requires")
        if requires is not None and type(requires) is not dict:
            p.add((*block_path, "versions", text, "requires"),
                  f"must be a table of block = \"constraint\", not {_type_name(requires)}")
            requires = None
        elif requires:
            try:
                self._requirement_pairs.update(requires.items())
            except TypeError:  # an array or table as a constraint: not hashable
                requires = self._string_requirements(requires, (*block_path, "versions", text))
            if block in requires:
                self._self_requirements = True
            deps.update(requires)
        raw_images = spec.get("images")
        images = [] if raw_images is None else self._images(
            raw_images, (*block_path, "versions", text, "images"))
        return BlockVersion(block, version, directory, None, images, extra, root=self.root,
                            raw_requires=requires or None)

    def _string_requirements(self, requires: dict[str, Any],
                             path: tuple[str, ...]) -> dict[str, str]:
        """The requirements whose constraint is a string; a problem for each other one."""
        kept = {}
        for dep, constraint_text in requires.items():
            if isinstance(constraint_text, str):
                kept[dep] = constraint_text
            else:
                self.problems.add((*path, "requires", dep),
                                  f"must be a constraint string ({CONSTRAINT_HELP}), "
                                  f"not {_type_name(constraint_text)}")
        self._requirement_pairs.update(kept.items())
        return kept

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
                for dep, text in bv.requirement_texts().items():
                    rpath = ("blocks", name, "versions", str(bv.version), "requires", dep)
                    if dep == name:
                        self.problems.add(rpath, f"block `{dep}` requires itself: a block "
                                                 f"cannot depend on its own outputs")
                        bv.drop_requirement(dep)
                        self._dropped_requirements = True
                    elif (dep, text) in bad:
                        self.problems.add(rpath, bad[(dep, text)])
                        bv.drop_requirement(dep)
                        self._dropped_requirements = True

    # environments -------------------------------------------------------------------------

    @staticmethod
    def _platform_kinds(data: dict[str, Any]) -> tuple[Any, dict[Any, Any]]:
        """The default platform's name, and each declared platform's kind by name (``local``
        built in), as far as the document says (``platforms.choice`` validates those keys)."""
        defaults = data.get("defaults")
        default = (defaults.get("platform") if isinstance(defaults, dict) else None) or "local"
        kinds: dict[Any, Any] = {"local": "local"}
        declared = data.get("platforms")
        for name, spec in (declared.items() if isinstance(declared, dict) else ()):
            if isinstance(spec, dict):
                kinds[name] = spec.get("kind", name)
        return default, kinds

    def _load_environments(self, table: dict[str, Any], blocks: dict[str, Block],
                           data: dict[str, Any]) -> dict[str, Environment]:
        p = self.problems
        environments: dict[str, Environment] = {}
        subnets: dict[tuple[str, str], str] = {}  # (platform, pinned network) → environment
        default_platform, platform_kinds = self._platform_kinds(data)
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
            if subnet is not None:
                platform = spec.get("platform") or default_platform
                problem = subnet_problem(subnet, local=platform_kinds.get(platform) == "local")
                if problem:
                    p.add((*path, "subnet"), problem)
                elif (key := (str(platform), str(ipaddress.ip_network(subnet)))) in subnets:
                    p.add((*path, "subnet"),
                          f"{key[1]} is also the subnet of environment `{subnets[key]}`"
                          f"{'' if platform == 'local' else f' on platform {platform!r}'}: "
                          f"each environment needs its own /24")
                else:
                    subnets[key] = name
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


def subnet_problem(value: Any, *, local: bool = True) -> str | None:
    """What is wrong with an environment's ``subnet`` pin (None when it is valid). On the local
    cloud (``local``) an environment's addresses are a /24 inside :data:`SUBNET_SUPERNET`
    (``infrablocks.environments`` allocates the others from the same range); on another
    platform a /24 IPv4 network (the platform checks that it lies in its VPC)."""
    example = '(e.g. "127.42.7.0/24")' if local else '(e.g. "10.42.5.0/24")'
    if not isinstance(value, str):
        return f"must be a string {example}, not {_type_name(value)}"
    try:
        network = ipaddress.ip_network(value)
    except ValueError as exc:
        return f"{value!r} is not a network ({exc}) {example}"
    if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen != 24:
        return (f"{value!r} must be a /24 " + (f"inside {SUBNET_SUPERNET} " if local else "")
                + example)
    if local and not network.subnet_of(SUBNET_SUPERNET):
        return (f"{value!r} is outside {SUBNET_SUPERNET}, where the local cloud's "
                f"environments live {example}")
    return None


def _short_list(names: Any, limit: int = 12) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")

