"""An image version's own checks: ``images/NAME/VERSION/checks.toml``.

The file says how to boot the image for verification and what must then hold::

    [boot]
    kind = "instance"            # or "process": run the entrypoint as a scheduler job would
    volume = "xvdf"              # attach a fresh scratch volume at this device (instance only)
    ready_timeout = 90           # seconds to wait for INSTANCE_DIR/ready (instance only)
    user_data = { data_device = "xvdf", etcd_name = "verify",
                  etcd_initial_cluster = "verify=http://{ip}:2380" }
    # environment = { LISTEN_HOST = "{ip}" }   (process only)

    [[companions]]               # booted first, e.g. the DCS a Patroni member needs
    name = "dcs"
    image = "etcd@1.1.0"
    volume = "xvdf"
    user_data = { … }

    [[checks]]
    name = "etcd answers"
    command = ["/usr/bin/etcdctl", "--endpoints=http://{ip}:2379", "endpoint", "health"]
    output_contains = "is healthy"
    timeout = 30                 # retried until it passes or this many seconds passed

    [[checks]]
    name = "the volume is formatted and mounted"
    volume_mounted = true        # .formatted exists, .mounted names the instance

    [[checks]]
    name = "REST API"
    http = "http://{ip}:8008/health"
    status = 200

Placeholders in strings: ``{ip}``, ``{instance_dir}``, ``{volume_dir}``, ``{image_dir}`` of
the image under test, and ``{NAME.ip}`` of a companion.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infrablocks.errors import ConfigError
from infrablocks.images.refs import ImageRef, image_source_dir, parse_image_ref

CHECKS_FILE = "checks.toml"
BOOT_KINDS = ("instance", "process")
DEFAULT_READY_TIMEOUT = 90.0
DEFAULT_CHECK_TIMEOUT = 30.0

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.-]+)\}")
_BOOT_KEYS = {"kind", "volume", "ready_timeout", "user_data", "environment"}
_COMPANION_KEYS = _BOOT_KEYS | {"name", "image"}
_CHECK_KEYS = {"name", "command", "output_contains", "http", "status", "body_contains",
               "volume_mounted", "timeout"}


@dataclass(frozen=True)
class BootSpec:
    kind: str = "instance"
    volume: str | None = None           # device name of the scratch volume
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    user_data: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompanionSpec:
    name: str
    image: ImageRef
    boot: BootSpec


@dataclass(frozen=True)
class CheckSpec:
    """One check; exactly one of ``command``, ``http``, ``volume_mounted`` is set."""

    name: str
    command: tuple[str, ...] = ()
    output_contains: str | None = None
    http: str | None = None
    status: int = 200
    body_contains: str | None = None
    volume_mounted: bool = False
    timeout: float = DEFAULT_CHECK_TIMEOUT


@dataclass(frozen=True)
class VerifySpec:
    ref: ImageRef
    path: Path                          # the checks.toml file
    boot: BootSpec
    companions: tuple[CompanionSpec, ...]
    checks: tuple[CheckSpec, ...]


def checks_path(repo_root: Path, ref: ImageRef) -> Path:
    return image_source_dir(repo_root, ref) / CHECKS_FILE


def load_verify_spec(repo_root: Path, ref: ImageRef) -> VerifySpec:
    """Read and validate ``images/NAME/VERSION/checks.toml``; every problem at once."""
    path = checks_path(repo_root, ref)
    shown = f"images/{ref.name}/{ref.version}/{CHECKS_FILE}"
    if not path.is_file():
        raise ConfigError(f"image {ref}: {shown} not found; each image version declares the "
                          "checks its verification runs",
                          hint="see docs/images.md (Verifying an image) for the format")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: not valid TOML: {exc}") from None
    problems: list[str] = []
    _unknown(data, {"boot", "companions", "checks"}, "", problems)
    boot = _boot(data.get("boot", {}), "boot", problems)
    companions = []
    raw_companions = data.get("companions", [])
    if not isinstance(raw_companions, list):
        problems.append("companions: must be an array of tables ([[companions]])")
        raw_companions = []
    for index, raw in enumerate(raw_companions):
        where = f"companions[{index}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table")
            continue
        _unknown(raw, _COMPANION_KEYS, where, problems)
        name = raw.get("name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", name or ""):
            problems.append(f"{where}.name: must be a name such as \"dcs\" (letters, digits, "
                            "_ and -)")
            continue
        try:
            image = parse_image_ref(str(raw.get("image", "")))
        except Exception:  # UsageError: rephrase with the file's key
            problems.append(f"{where}.image: must be NAME@VERSION, e.g. \"etcd@1.1.0\"")
            continue
        companions.append(CompanionSpec(name, image, _boot(raw, where, problems)))
    checks = []
    raw_checks = data.get("checks", [])
    if not isinstance(raw_checks, list) or not raw_checks:
        problems.append("checks: declare at least one check ([[checks]] with command, http "
                        "or volume_mounted)")
        raw_checks = []
    for index, raw in enumerate(raw_checks):
        check = _check(raw, f"checks[{index}]", problems)
        if check is not None:
            checks.append(check)
    names = {c.name for c in companions}
    for text, where in _strings(data):
        for placeholder in _PLACEHOLDER.findall(text):
            if placeholder in {"ip", "instance_dir", "volume_dir", "image_dir"}:
                continue
            owner, _, attribute = placeholder.partition(".")
            if owner not in names or attribute != "ip":
                valid = ["{ip}", "{instance_dir}", "{volume_dir}", "{image_dir}",
                         *(f"{{{n}.ip}}" for n in sorted(names))]
                problems.append(f"{where}: unknown placeholder {{{placeholder}}} (valid: "
                                f"{', '.join(valid)})")
    if boot.kind == "process" and any(c.volume_mounted for c in checks):
        problems.append("checks: volume_mounted needs boot.kind = \"instance\" with a volume")
    if problems:
        raise ConfigError(f"{shown}: {len(problems)} problem{'' if len(problems) == 1 else 's'}",
                          problems=[f"{shown}: {p}" for p in problems])
    return VerifySpec(ref=ref, path=path, boot=boot, companions=tuple(companions),
                      checks=tuple(checks))


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace ``{key}`` placeholders (validated when the file was loaded)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _boot(raw: Any, where: str, problems: list[str]) -> BootSpec:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table")
        return BootSpec()
    if where == "boot":
        _unknown(raw, _BOOT_KEYS, where, problems)
    kind = raw.get("kind", "instance")
    if kind not in BOOT_KINDS:
        problems.append(f"{where}.kind: {kind!r} is not one of {', '.join(BOOT_KINDS)}")
        kind = "instance"
    volume = raw.get("volume")
    if volume is not None and (not isinstance(volume, str) or kind != "instance"):
        problems.append(f"{where}.volume: must be a device name such as \"xvdf\", for "
                        "kind = \"instance\" only")
        volume = None
    timeout = raw.get("ready_timeout", DEFAULT_READY_TIMEOUT)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        problems.append(f"{where}.ready_timeout: must be a positive number of seconds")
        timeout = DEFAULT_READY_TIMEOUT
    return BootSpec(kind=kind, volume=volume, ready_timeout=float(timeout),
                    user_data=_string_map(raw.get("user_data", {}), f"{where}.user_data",
                                          problems),
                    environment=_string_map(raw.get("environment", {}),
                                            f"{where}.environment", problems))


def _check(raw: Any, where: str, problems: list[str]) -> CheckSpec | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table")
        return None
    _unknown(raw, _CHECK_KEYS, where, problems)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}.name: must say what the check shows, e.g. \"etcd answers\"")
        return None
    kinds = [k for k in ("command", "http", "volume_mounted") if raw.get(k)]
    if len(kinds) != 1:
        problems.append(f"{where} ({name}): set exactly one of command, http, volume_mounted "
                        f"(found: {', '.join(kinds) or 'none'})")
        return None
    command = raw.get("command", [])
    if kinds == ["command"] and (not isinstance(command, list) or not command
                                 or not all(isinstance(c, str) for c in command)):
        problems.append(f"{where}.command: must be a non-empty array of strings")
        return None
    timeout = raw.get("timeout", DEFAULT_CHECK_TIMEOUT)
    status = raw.get("status", 200)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        problems.append(f"{where}.timeout: must be a positive number of seconds")
        return None
    if not isinstance(status, int) or not 100 <= status <= 599:
        problems.append(f"{where}.status: must be an HTTP status code such as 200")
        return None
    for key in ("output_contains", "body_contains", "http"):
        if key in raw and not isinstance(raw[key], str):
            problems.append(f"{where}.{key}: must be a string")
            return None
    return CheckSpec(name=name.strip(), command=tuple(command) if kinds == ["command"] else (),
                     output_contains=raw.get("output_contains"), http=raw.get("http"),
                     status=status, body_contains=raw.get("body_contains"),
                     volume_mounted=bool(raw.get("volume_mounted")), timeout=float(timeout))


def _string_map(raw: Any, where: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        problems.append(f"{where}: must be a table of strings")
        return {}
    return dict(raw)


def _unknown(table: dict[str, Any], allowed: set[str], where: str, problems: list[str]) -> None:
    for key in table:
        if key not in allowed:
            problems.append(f"{where + '.' if where else ''}{key}: unknown key (allowed: "
                            f"{', '.join(sorted(allowed))})")


def _strings(data: Any, where: str = "") -> list[tuple[str, str]]:
    """Every string value with its key path (placeholders are checked in all of them)."""
    found: list[tuple[str, str]] = []
    if isinstance(data, str):
        found.append((data, where))
    elif isinstance(data, dict):
        for key, value in data.items():
            found += _strings(value, f"{where}.{key}" if where else key)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _strings(value, f"{where}[{index}]")
    return found
