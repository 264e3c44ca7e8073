"""Which platform each environment runs on: blocks.toml's platform keys.

::

    [defaults]
    platform = "local"          # environments that name none, and throwaway ones (t-…)

    [platforms.aws]             # a platform profile; environments and --platform name it
    kind = "aws"                # optional when the profile's name is a kind ("aws")
    region = "eu-west-1"
    profile = "infra"           # optional: a profile of ~/.aws/config
    endpoint = "http://127.0.0.1:5000"   # optional: every AWS API there (moto, LocalStack)

    [environments.prod]
    platform = "aws"            # a profile name, or "local"

``local`` (the embedded local cloud) needs no table. Each kind validates its own settings
(``settings_problems`` of its class in :data:`infrablocks.platforms.PLATFORMS`).

An environment's platform is, in order: its own ``platform`` key; for a throwaway environment
(``t-…``) the platform its deployments recorded (a state document per block, written by the
first apply) or the one chosen for it by ``--platform``; then ``defaults.platform``; then
``local``. A deployment recorded on one platform refuses to be applied on another
(:func:`check_recorded_platform`): changing an environment's platform means destroying it first.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infrablocks.errors import ConfigError, InfrablocksError

if TYPE_CHECKING:
    from infrablocks.registry import Registry
    from infrablocks.state import StateBackend

__all__ = ["PLATFORM_DOCUMENT", "PlatformProfile", "check_recorded_platform",
           "environment_platform", "platform_check", "profile_problems", "profiles",
           "record_platform", "recorded_platform"]

PLATFORM_DOCUMENT = "platform"   # state document of each deployment: {"name", "kind"}
_WHERE = "blocks.toml"


@dataclass(frozen=True)
class PlatformProfile:
    """A platform as blocks.toml configures it: ``[platforms.NAME]`` (or the built-in local)."""

    name: str
    kind: str
    settings: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return self.name if self.name == self.kind else f"{self.name} ({self.kind})"


def _key(registry: Registry, *parts: str) -> str:
    """``blocks.toml:LINE: KEY.PATH`` (the file and line of the key, as the registry's own
    problems give them)."""
    from infrablocks.registry import locate_key

    return locate_key(registry.path, *parts)


def _platform_class(kind: str) -> Any:
    from infrablocks.platforms import PLATFORMS

    module, _, name = PLATFORMS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def _collect(registry: Registry) -> tuple[dict[str, PlatformProfile], list[str]]:
    from infrablocks.platforms import DEFAULT_PLATFORM, PLATFORMS
    from infrablocks.registry import suggest

    problems: list[str] = []
    found = {DEFAULT_PLATFORM: PlatformProfile(DEFAULT_PLATFORM, DEFAULT_PLATFORM)}
    table = registry.settings.get("platforms") or {}
    for name, spec in table.items():
        where = ("platforms", name)
        if not isinstance(spec, dict):
            problems.append(f"{_key(registry, *where)}: must be a table like {{ kind = \"aws\", "
                            f"region = \"eu-west-1\" }}")
            continue
        kind = spec.get("kind", name if name in PLATFORMS else None)
        if kind is None:
            problems.append(f"{_key(registry, *where, 'kind')}: missing (valid: "
                            f"{', '.join(sorted(PLATFORMS))})")
            continue
        if kind not in PLATFORMS:
            problems.append(f"{_key(registry, *where, 'kind')}: unknown platform kind {kind!r}"
                            f"{suggest(str(kind), PLATFORMS, quote=chr(39))} (valid: "
                            f"{', '.join(sorted(PLATFORMS))})")
            continue
        if name == DEFAULT_PLATFORM and kind != DEFAULT_PLATFORM:
            problems.append(f"{_key(registry, *where)}: the name {name!r} is the built-in "
                            "local cloud")
            continue
        settings = {k: v for k, v in spec.items() if k != "kind"}
        check = getattr(_platform_class(kind), "settings_problems", None)
        if check is not None:
            problems += check(settings, _key(registry, *where))
        elif settings:
            problems.append(f"{_key(registry, *where)}: the {kind} platform takes no settings "
                            f"(got {', '.join(sorted(settings))})")
        found[name] = PlatformProfile(name, kind, settings)
    names = sorted(found)
    default = registry.defaults.get("platform")
    if default is not None and default not in found:
        problems.append(f"{_key(registry, 'defaults', 'platform')}: {_unknown(default, names)}")
    for env_name, environment in registry.environments.items():
        chosen = environment.extra.get("platform")
        if chosen is not None and chosen not in found:
            problems.append(f"{_key(registry, 'environments', env_name, 'platform')}: "
                            f"{_unknown(chosen, names)}")
    return found, problems


def _unknown(value: Any, names: list[str]) -> str:
    from infrablocks.registry import suggest

    if not isinstance(value, str):
        return f"must be a string naming a platform ({', '.join(names)})"
    return (f"unknown platform {value!r}{suggest(value, names, quote=chr(39))} (declared: "
            f"{', '.join(names)}; declare others as tables platforms.NAME)")


def profile_problems(registry: Registry) -> list[str]:
    """Every problem of blocks.toml's platform keys (empty when they are valid)."""
    return _collect(registry)[1]


def profiles(registry: Registry) -> dict[str, PlatformProfile]:
    """The platform profiles by name (``local`` always among them); ``ConfigError`` (exit 2)
    listing every problem of the platform keys."""
    found, problems = _collect(registry)
    if problems:
        raise ConfigError(f"{_WHERE}: {len(problems)} "
                          + ("problem" if len(problems) == 1 else "problems")
                          + " in the platform settings", problems=problems)
    return found


def environment_platform(registry: Registry, environment: str | None, *,
                         recorded: str | None = None, chosen: str | None = None) -> str:
    """The profile name ``environment`` runs on (see the module docstring for the order).

    ``recorded``: what the environment's deployments recorded (throwaway environments);
    ``chosen``: ``--platform`` of a command making a throwaway environment.
    """
    from infrablocks.environments import is_ephemeral
    from infrablocks.platforms import DEFAULT_PLATFORM

    default = registry.defaults.get("platform") or DEFAULT_PLATFORM
    if environment is None:
        return chosen or default
    declared = registry.environments.get(environment)
    if declared is not None:
        return declared.extra.get("platform") or default
    if is_ephemeral(environment):
        return recorded or chosen or default
    return default


def record_platform(backend: StateBackend, environment: str, block: str,
                    profile: PlatformProfile) -> None:
    """Remember, beside the deployment's state, which platform holds it."""
    backend.put_document(environment, block, PLATFORM_DOCUMENT,
                         {"name": profile.name, "kind": profile.kind})


def recorded_platform(backend: StateBackend, environment: str) -> str | None:
    """The platform the environment's deployments recorded (the first found), or None."""
    for block in backend.list_blocks(environment):
        document = backend.get_document(environment, block, PLATFORM_DOCUMENT)
        if document and isinstance(document.get("name"), str):
            return str(document["name"])
    return None


def check_recorded_platform(backend: StateBackend, environment: str, block: str,
                            profile: PlatformProfile) -> None:
    """Refuse to apply a deployment on another platform than the one holding it."""
    document = backend.get_document(environment, block, PLATFORM_DOCUMENT)
    if not document or document.get("name") in (None, profile.name):
        return
    held = document["name"]
    raise InfrablocksError(
        f"{block} in {environment} is deployed on platform {held!r}, but the environment is "
        f"now on {profile.name!r}",
        hint=f"put the environment back on {held!r} in blocks.toml and destroy it there first "
             "(`doit destroy`), then create it on the new platform")


def platform_check(registry: Registry) -> list[str]:
    """``doit check``: blocks.toml's platform keys are valid."""
    return profile_problems(registry)
