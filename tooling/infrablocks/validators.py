"""The checks ``doit check`` runs after blocks.toml has loaded and validated.

Other parts add their own checks without touching the command::

    from infrablocks.checks_registry import register_check
    register_check("images", "infrablocks.images.checks:check_images")   # lazy: cheap to import

A check is ``(registry) -> CheckOutcome | Iterable[str]``: the strings are problems. A
``CheckOutcome`` can also carry info lines (e.g. the Terraform version in use). A check given as
``"module:function"`` is imported only when ``doit check`` runs, so registering stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infrablocks.registry import Registry

__all__ = ["CHECKS", "CheckOutcome", "register_check", "run_checks"]


@dataclass
class CheckOutcome:
    problems: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)


CheckFunction = Callable[["Registry"], "CheckOutcome | Iterable[str]"]

# (name, check) in the order they run. Strings are "module:function".
CHECKS: list[tuple[str, CheckFunction | str]] = [
    ("terraform", "infrablocks.terraform.binary:terraform_check"),
    ("contracts", "infrablocks.contracts:contract_check"),
]


def register_check(name: str, check: CheckFunction | str) -> None:
    """Add (or replace, by name) a check."""
    for index, (existing, _) in enumerate(CHECKS):
        if existing == name:
            CHECKS[index] = (name, check)
            return
    CHECKS.append((name, check))


def _load(check: CheckFunction | str) -> CheckFunction:
    if callable(check):
        return check
    module, _, attribute = check.partition(":")
    return getattr(importlib.import_module(module), attribute)


def run_checks(registry: Registry) -> list[tuple[str, CheckOutcome]]:
    """Run every registered check; each outcome under its name, in registration order."""
    results = []
    for name, check in list(CHECKS):
        outcome = _load(check)(registry)
        if not isinstance(outcome, CheckOutcome):
            outcome = CheckOutcome(problems=[str(p) for p in outcome])
        results.append((name, outcome))
    return results
