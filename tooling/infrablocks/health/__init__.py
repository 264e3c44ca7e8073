"""Service checks for rolling-upgrade gates (see ``checks.base`` for the protocol).

A rolling declaration names its check as one of:

- a built-in name: ``"etcd"``, ``"patroni"``, ``"http"``, or ``"instances"`` (instance-level
  only: for platforms whose instances run no service, such as an EC2 emulator) (``BUILTIN_CHECKS``);
- a Python factory ``"package.module:function"`` (or a class) called with a ``CheckContext``;
- a command table ``{ command = ["./health.sh"] }``: see ``infrablocks.health.command``.

Built-ins are registered as ``"module:attribute"`` strings so importing this package stays cheap;
``register_validator(name, factory)`` adds (or replaces) one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from infrablocks.errors import ConfigError
from infrablocks.health.base import CheckContext, CheckFactory, GateResult, Member, ServiceCheck

__all__ = [
    "BUILTIN_CHECKS", "CheckContext", "CheckFactory", "GateResult", "Member", "ServiceCheck",
    "build_check", "check_spec_problems", "load_factory", "register_validator",
]

BUILTIN_CHECKS: dict[str, str | Callable[..., ServiceCheck]] = {
    "etcd": "infrablocks.health.etcd:EtcdCheck",
    "patroni": "infrablocks.health.patroni:PatroniCheck",
    "http": "infrablocks.health.http:HttpCheck",
    "instances": "infrablocks.health.instance:InstancesCheck",
}


def register_validator(name: str, factory: str | Callable[..., ServiceCheck]) -> None:
    """Make ``name`` usable as ``check = "name"`` in a rolling declaration."""
    BUILTIN_CHECKS[name] = factory


def check_spec_problems(spec: Any) -> list[str]:
    """What is wrong with a declaration's ``check`` value (empty when valid); imports nothing."""
    if isinstance(spec, str):
        if spec in BUILTIN_CHECKS:
            return []
        if ":" in spec:
            module, _, attribute = spec.partition(":")
            if module and attribute and all(p.isidentifier() for p in module.split(".")) \
                    and attribute.isidentifier():
                return []
            return [f"check {spec!r} is not 'package.module:function'"]
        return [f"unknown check {spec!r}: valid are {', '.join(sorted(BUILTIN_CHECKS))}, "
                "'package.module:function' or { command = [...] }"]
    if isinstance(spec, Mapping):
        command = spec.get("command")
        unknown = sorted(set(spec) - {"command"})
        problems = [f"check table has unknown key {k!r} (valid: command)" for k in unknown]
        if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
            problems.append("check.command must be a non-empty list of strings")
        return problems
    return [f"check must be a name, 'package.module:function' or {{ command = [...] }}, "
            f"not {type(spec).__name__}"]


def load_factory(spec: str | Callable[..., ServiceCheck]) -> Callable[..., ServiceCheck]:
    """Import ``"module:attribute"`` (or return a callable as is); ConfigError names the spec."""
    if callable(spec):
        return spec
    target = BUILTIN_CHECKS.get(spec, spec)
    if callable(target):
        return target
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"check {spec!r}: cannot import {module_name!r}: {exc}") from exc
    factory: Callable[..., ServiceCheck] | None = getattr(module, attribute, None)
    if not callable(factory):
        raise ConfigError(f"check {spec!r}: {module_name} has no callable {attribute!r}")
    return factory


def build_check(spec: Any, context: CheckContext) -> ServiceCheck:
    """The ServiceCheck a declaration's ``check`` value names, built for ``context``."""
    problems = check_spec_problems(spec)
    if problems:
        raise ConfigError(f"rolling declaration of block {context.block!r}: invalid check",
                          problems=problems)
    if isinstance(spec, Mapping):
        from infrablocks.health.command import CommandCheck
        return CommandCheck(list(spec["command"]), context)
    check = load_factory(spec)(context)
    missing = [name for name in ("cluster_health", "leader", "member_healthy", "move_leader_off")
               if not callable(getattr(check, name, None))]
    if missing:
        raise ConfigError(f"check {spec!r} of block {context.block!r} does not implement "
                          f"{', '.join(missing)} (see infrablocks.health.base.ServiceCheck)")
    return check
