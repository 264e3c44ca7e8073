"""The validators ``doit check`` runs after blocks.toml has loaded and validated.

(Not to be confused with the health checks of rolling upgrades, :mod:`infrablocks.health`, or an
image's acceptance checks, :mod:`infrablocks.images.acceptance`.) Other parts add their own
validators without touching the command::

    from infrablocks.validators import register_validator
    register_validator("images", "infrablocks.images.inventory:check_block_images")  # lazy

A validator is ``(registry) -> ValidationOutcome | Iterable[str]``: the strings are problems. A
``ValidationOutcome`` can also carry info lines (e.g. the Terraform version in use). A validator
given as ``"module:function"`` is imported only when ``doit check`` runs, so registering stays
cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infrablocks.registry import Registry

__all__ = ["VALIDATORS", "ValidationOutcome", "register_validator", "run_validators"]


@dataclass
class ValidationOutcome:
    problems: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)


Validator = Callable[["Registry"], "ValidationOutcome | Iterable[str]"]

# (name, validator) in the order they run. Strings are "module:function".
VALIDATORS: list[tuple[str, Validator | str]] = [
    ("terraform", "infrablocks.terraform.binary:terraform_check"),
    ("contracts", "infrablocks.contracts:contract_check"),
    ("released", "infrablocks.release.frozen:released_check"),
]


def register_validator(name: str, check: Validator | str) -> None:
    """Add (or replace, by name) a check."""
    for index, (existing, _) in enumerate(VALIDATORS):
        if existing == name:
            VALIDATORS[index] = (name, check)
            return
    VALIDATORS.append((name, check))


def _load(check: Validator | str) -> Validator:
    if callable(check):
        return check
    module, _, attribute = check.partition(":")
    loaded: Validator = getattr(importlib.import_module(module), attribute)
    return loaded


def run_validators(registry: Registry) -> list[tuple[str, ValidationOutcome]]:
    """Run every registered check; each outcome under its name, in registration order."""
    results = []
    for name, check in list(VALIDATORS):
        outcome = _load(check)(registry)
        if not isinstance(outcome, ValidationOutcome):
            outcome = ValidationOutcome(problems=[str(p) for p in outcome])
        results.append((name, outcome))
    return results
