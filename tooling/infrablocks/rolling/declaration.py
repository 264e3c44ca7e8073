"""The rolling declaration of a stateful block: which resources roll, which gates apply.

Declared in blocks.toml under the block, and overridable per version and per platform kind
(the ``timeouts`` and ``check_options`` tables merge key by key)::

    [blocks.base.rolling]
    instances = "localcloud_instance.member"
    attachments = "localcloud_volume_attachment.member"
    check = "etcd"
    order = "leader-last"
    timeouts = { stop = 60, running = 60, volume = 60, rejoin = 120, healthy = 180 }

    [blocks.base.rolling.aws]              # environments on an AWS platform (the aws/ module)
    instances = "aws_instance.member"
    attachments = "aws_volume_attachment.member"
    interfaces = "aws_network_interface.member"   # optional: applied with its unit
    timeouts = { stop = 300, running = 600 }

Precedence, lowest first: the block's table, the version's (``versions."V".rolling``), the
block's platform table, the version's platform table — a platform's resource addresses belong to
its module, so a version's generic override never reaches another platform's addresses.

Validation reports every problem at once with its key path (``ConfigError``, exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import ConfigError

if TYPE_CHECKING:
    from infrablocks.registry import BlockVersion, Registry

__all__ = ["DEFAULT_TIMEOUTS", "ORDERS", "RollingDeclaration", "address_problems",
           "declaration_for",
           "declaration_problems", "rolling_check"]

ORDERS = ("leader-last", "index")
DEFAULT_TIMEOUTS: dict[str, float] = {
    "stop": 60.0,      # the instance stops (SIGTERM, then the platform's own kill)
    "running": 120.0,  # the new instance runs (and is ready)
    "volume": 60.0,    # the volume detaches (available) / re-attaches (in-use)
    "rejoin": 120.0,   # the replaced member serves and is back in the cluster
    "healthy": 180.0,  # the whole cluster is healthy again
}
KEYS = {"instances", "attachments", "interfaces", "check", "check_options", "order",
        "timeouts", "volume_marker", "poll_interval"}
_IDENT = r"[A-Za-z_][A-Za-z0-9_-]*"
_ADDRESS = re.compile(rf"^(module\.{_IDENT}\.)*{_IDENT}\.{_IDENT}$")


@dataclass(frozen=True)
class RollingDeclaration:
    """How to roll one block version. Addresses are without index (``type.name``)."""

    instances: str
    attachments: str | None
    check: Any                       # a built-in name, "module:function" or {command=[...]}
    interfaces: str | None = None    # the members' network interfaces (AWS), applied per unit
    check_options: dict[str, Any] = field(default_factory=dict)
    order: str = "leader-last"
    timeouts: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))
    volume_marker: str = ".infrablocks-upgrade-marker"
    poll_interval: float = 0.2

    def timeout(self, name: str) -> float:
        return float(self.timeouts.get(name, DEFAULT_TIMEOUTS[name]))

    def instance_address(self, index: int) -> str:
        return f"{self.instances}[{index}]"

    def attachment_address(self, index: int) -> str | None:
        return f"{self.attachments}[{index}]" if self.attachments else None

    def interface_address(self, index: int) -> str | None:
        return f"{self.interfaces}[{index}]" if self.interfaces else None

    def to_json(self) -> dict[str, Any]:
        return {"instances": self.instances, "attachments": self.attachments,
                "interfaces": self.interfaces,
                "check": self.check, "check_options": dict(self.check_options),
                "order": self.order, "timeouts": dict(self.timeouts),
                "volume_marker": self.volume_marker, "poll_interval": self.poll_interval}


def _platform_kinds() -> tuple[str, ...]:
    from infrablocks.platforms import PLATFORMS

    return tuple(PLATFORMS)


def _merged(block_table: dict[str, Any] | None, version_table: dict[str, Any] | None,
            platform: str = "local") -> dict[str, Any] | None:
    """The merged table for ``platform`` (a kind); platform sub-tables dropped."""
    if block_table is None and version_table is None:
        return None
    kinds = _platform_kinds()
    layers = [block_table or {}, version_table or {},
              (block_table or {}).get(platform), (version_table or {}).get(platform)]
    merged: dict[str, Any] = {}
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        for key, value in layer.items():
            if key in kinds:
                continue
            if key in ("timeouts", "check_options") and isinstance(value, dict) \
                    and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def _platform_problems(table: dict[str, Any] | None, where: str | _Where) -> list[str]:
    """A platform sub-table must be a table of rolling keys (not nested further)."""
    problems = []
    for kind in _platform_kinds():
        value = (table or {}).get(kind)
        if value is None:
            continue
        if not isinstance(value, dict):
            problems.append(f"{where}.{kind}: must be a table of rolling keys for platform "
                            f"{kind}")
            continue
        for key in sorted(set(value) - KEYS):
            problems.append(f"{where}.{kind}.{key}: unknown key (valid: "
                            f"{', '.join(sorted(KEYS))})")
    return problems


def declaration_problems(table: dict[str, Any], where: str | _Where) -> list[str]:
    """Every problem of a (merged) rolling table; ``where`` prefixes each message."""
    from infrablocks.health import check_spec_problems

    problems: list[str] = []
    for key in sorted(set(table) - KEYS - set(_platform_kinds())):
        problems.append(f"{where}.{key}: unknown key (valid: {', '.join(sorted(KEYS))}, or a "
                        f"platform's table: {', '.join(_platform_kinds())})")
    for key in ("instances", "attachments", "interfaces"):
        value = table.get(key)
        if value is None and key in ("attachments", "interfaces"):
            continue
        if not isinstance(value, str) or not _ADDRESS.match(value):
            problems.append(f"{where}.{key}: must be a resource address without index, like "
                            f"\"localcloud_instance.member\" (got {value!r})")
    if "check" not in table:
        problems.append(f"{where}.check: missing (e.g. \"etcd\", \"patroni\", \"http\")")
    else:
        problems += [f"{where}.check: {p}" for p in check_spec_problems(table["check"])]
    if "check_options" in table and not isinstance(table["check_options"], dict):
        problems.append(f"{where}.check_options: must be a table")
    order = table.get("order", "leader-last")
    if order not in ORDERS:
        problems.append(f"{where}.order: {order!r} is not one of {', '.join(ORDERS)}")
    timeouts = table.get("timeouts", {})
    if not isinstance(timeouts, dict):
        problems.append(f"{where}.timeouts: must be a table like {{ stop = 60 }}")
    else:
        for name, value in timeouts.items():
            if name not in DEFAULT_TIMEOUTS:
                problems.append(f"{where}.timeouts.{name}: unknown timeout (valid: "
                                f"{', '.join(DEFAULT_TIMEOUTS)})")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                problems.append(f"{where}.timeouts.{name}: must be a positive number of "
                                f"seconds, not {value!r}")
    marker = table.get("volume_marker", ".x")
    if not isinstance(marker, str) or not marker or "/" in marker or marker in (".", ".."):
        problems.append(f"{where}.volume_marker: must be a plain file name")
    interval = table.get("poll_interval", 0.5)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        problems.append(f"{where}.poll_interval: must be a positive number of seconds")
    return problems


class _Where:
    """Where a rolling table is written, ``blocks.toml:LINE: blocks.B.rolling``, located only
    when a problem is formatted (``rolling_check`` makes one per block version)."""

    def __init__(self, file: Path, parts: tuple[str, ...], suffix: str = "") -> None:
        self.file, self.parts, self.suffix = file, parts, suffix
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            from infrablocks.registry import locate_key

            self._text = locate_key(self.file, *self.parts) + self.suffix
        return self._text

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def platform(self, kind: str) -> _Where:
        return self if kind == "local" else _Where(self.file, self.parts,
                                                   f" (platform {kind})")


def _where(registry: Registry, version: BlockVersion, at_version: bool) -> _Where:
    if at_version:
        return _Where(registry.path, ("blocks", version.block, "versions",
                                      str(version.version), "rolling"))
    return _Where(registry.path, ("blocks", version.block, "rolling"))


def _origin(registry: Registry, version: BlockVersion, kind: str, key: str) -> str:
    """``blocks.toml:LINE: KEY.PATH`` of the table a merged key came from (the highest layer
    of ``_merged`` that sets it)."""
    from infrablocks.registry import locate_key

    block_table = registry.block(version.block).extra.get("rolling") or {}
    version_table = version.extra.get("rolling") or {}
    block_path = ("blocks", version.block, "rolling")
    version_path = ("blocks", version.block, "versions", str(version.version), "rolling")
    layers = [(block_table, block_path), (version_table, version_path)]
    if kind != "local":
        layers += [(block_table.get(kind), (*block_path, kind)),
                   (version_table.get(kind), (*version_path, kind))]
    for table, path in reversed(layers):
        if isinstance(table, dict) and key in table:
            return locate_key(registry.path, *path, key)
    return locate_key(registry.path, *block_path, key)


def address_problems(registry: Registry, version: BlockVersion, kind: str,
                     declaration: RollingDeclaration | dict[str, Any],
                     module: Path) -> list[str]:
    """The declaration's resource addresses (instances, attachments, interfaces) that the
    module of ``version`` on platform ``kind`` (its folder ``module``) does not declare, each
    as ``blocks.toml:LINE: KEY.PATH: …`` naming the module's resources of that kind.

    Read from the module's HCL (cached, :func:`infrablocks.interface_cache.module_resources`).
    An address inside a child module (``module.X.TYPE.NAME``, Terraform's resource address) is
    followed through each ``module "X"`` call whose ``source`` is a local path (``./…``,
    ``../…``, as Terraform's module sources define it); one through a registry or git source is
    not checked (its code is not in the repository). Nothing is checked for a folder without
    ``*.tf`` files (Terraform refuses it itself) or one declaring neither resources nor module
    calls (a contract only: variables and outputs)."""
    from infrablocks.interface_cache import module_resources

    values = (declaration.to_json() if isinstance(declaration, RollingDeclaration)
              else declaration)
    if not module.is_dir() or not any(module.glob("*.tf")):
        return []
    found, errors, sources = module_resources(registry.root, module)
    if errors or not found:
        return []   # parse errors: the contract check's; nothing declared: a contract only
    problems = []
    for key in ("instances", "attachments", "interfaces"):
        address = values.get(key)
        if not isinstance(address, str) or not _ADDRESS.match(address):
            continue
        problem = _address_problem(registry, module, address, found, sources)
        if problem:
            problems.append(
                f"{_origin(registry, version, kind, key)}: {address!r} is not a resource of "
                f"{version.label}'s module {_shown(registry, module)}/"
                + (f" (platform {kind})" if kind != "local" else "") + f"{problem}")
    return problems


def _shown(registry: Registry, folder: Path) -> Path:
    try:
        return folder.resolve().relative_to(registry.root.resolve())
    except ValueError:
        return folder


def _address_problem(registry: Registry, module: Path, address: str, found: set[str],
                     sources: dict[str, str]) -> str | None:
    """Why ``address`` names no resource of ``module`` (``, which declares …``), following
    ``module.X.`` prefixes into local module sources; None when it does (or cannot be
    followed: a registry or git source, a child module that does not parse)."""
    from infrablocks.interface_cache import module_resources
    from infrablocks.registry import suggest

    folder, rest, trail = module, address, ""
    while rest.startswith("module."):
        name, rest = rest[len("module."):].split(".", 1)
        calls = sorted(sources)
        if name not in sources:
            if not calls:
                return f"{trail}: it calls no module (there is no module.{name})"
            listed = ", ".join(f"module.{c}" for c in calls)
            return (f"{trail}: it calls {listed}, not module.{name}"
                    f"{suggest(name, calls)}")
        source = sources[name]
        if not source.startswith(("./", "../")):
            return None       # a registry or git source: its code is not here to read
        folder = (folder / source).resolve()
        trail += f" → module.{name} ({_shown(registry, folder)}/)"
        if not folder.is_dir() or not any(folder.glob("*.tf")):
            return f"{trail}: its source {source!r} is not a folder of *.tf files"
        found, errors, sources = module_resources(registry.root, folder)
        if errors:
            return None       # parse errors: the contract check's
    resources = {r for r in found if not r.startswith("module.")}
    if rest in resources:
        return None
    same_type = sorted(r for r in resources if r.split(".")[0] == rest.split(".")[0])
    declared = same_type or sorted(resources)
    listed = (", ".join(declared[:8]) + (", …" if len(declared) > 8 else "")
              if declared else "no resources")
    return f"{trail}, which declares {listed}{suggest(rest, declared)}"


def declaration_for(registry: Registry, version: BlockVersion,
                    platform: str = "local", *, module: Path | None = None
                    ) -> RollingDeclaration | None:
    """The block version's rolling declaration on ``platform`` (a kind: ``local``, ``aws``;
    None when it has none); ConfigError if invalid, each problem with file, line and key.

    ``module``: the version's Terraform module on that platform (``Workspace.block_module``);
    when given, the addresses must name resources it declares (:func:`address_problems`)."""
    block = registry.block(version.block)
    block_table, version_table = block.extra.get("rolling"), version.extra.get("rolling")
    table = _merged(block_table, version_table, platform)
    if table is None:
        return None
    where = _where(registry, version, "rolling" in version.extra)
    problems = declaration_problems(table, where.platform(platform))
    problems += _platform_problems(block_table, _where(registry, version, False))
    problems += _platform_problems(version_table, _where(registry, version, True))
    if not problems and module is not None:
        problems = address_problems(registry, version, platform, table, module)
    if problems:
        raise ConfigError(f"invalid rolling declaration of {version.label}", problems=problems)
    return RollingDeclaration(
        instances=table["instances"], attachments=table.get("attachments"),
        interfaces=table.get("interfaces"),
        check=table["check"], check_options=dict(table.get("check_options", {})),
        order=table.get("order", "leader-last"),
        timeouts={**DEFAULT_TIMEOUTS, **{k: float(v) for k, v in
                                          table.get("timeouts", {}).items()}},
        volume_marker=table.get("volume_marker", ".infrablocks-upgrade-marker"),
        poll_interval=float(table.get("poll_interval", 0.2)))


def rolling_check(registry: Registry) -> list[str]:
    """``doit check``: every block version's rolling declaration is valid, on every platform
    it has a module for, and its addresses name resources of that module."""
    problems: list[str] = []
    for block in registry.blocks.values():
        block_table = block.extra.get("rolling")
        for version in block.versions.values():
            version_table = version.extra.get("rolling")
            found = _platform_problems(block_table, _where(registry, version, False))
            found += _platform_problems(version_table, _where(registry, version, True))
            for kind in _platform_kinds():
                if kind != "local" and kind not in (block_table or {}) \
                        and kind not in (version_table or {}):
                    continue  # no override for this platform: the same table as local
                table = _merged(block_table, version_table, kind)
                if table is None:
                    continue
                where = _where(registry, version, "rolling" in version.extra)
                declared = declaration_problems(table, where.platform(kind))
                if not declared:
                    declared = address_problems(registry, version, kind, table,
                                                _module_folder(version, kind))
                found += declared
            problems += [p for p in found if p not in problems]
    return problems


def _module_folder(version: BlockVersion, kind: str) -> Path:
    """The version's module folder on platform ``kind``: its own folder on the local cloud,
    the folder named after the kind otherwise (``aws/``, ``Platform.block_module``)."""
    return version.path if kind == "local" else version.path / kind

