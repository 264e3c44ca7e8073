"""What an upgrade reports: its outcome, or the halt that stopped it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infrablocks.errors import InfrablocksError
from infrablocks.rolling.plan import RollingPlan
from infrablocks.rolling.states import Mode

__all__ = ["DependentsRefused", "UpgradeHalted", "UpgradeOutcome", "UpgradeRefused"]



class UpgradeRefused(InfrablocksError):
    """The environment would not accept the target version (exit 1)."""


class DependentsRefused(InfrablocksError):
    """Stateful dependents were not re-applied: their instances would all be replaced."""


@dataclass
class UpgradeOutcome:
    """One upgrade (or roll) of a block in an environment; ``to_json()`` is ``--json``'s shape.

    ``units``: per rolled unit, ``{"index", "member", "steps": {step: seconds}, ...}`` in rolling
    order; ``timings``: seconds per kind of work (terraform, gates, stop, images, tool, total).
    """

    block: str
    environment: str
    from_version: str
    to_version: str
    mode: Mode = Mode.ROLLING
    plan: RollingPlan | None = None
    order: list[int] = field(default_factory=list)
    members: dict[int, str] = field(default_factory=dict)     # index → member name
    pre_health: str | None = None
    units: list[dict[str, Any]] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"block": self.block, "environment": self.environment,
                "from_version": self.from_version, "to_version": self.to_version,
                "mode": str(self.mode), "plan": self.plan.to_json() if self.plan else None,
                "order": list(self.order), "members": {str(k): v for k, v in
                                                       self.members.items()},
                "pre_health": self.pre_health, "units": self.units,
                "dependents": list(self.dependents), "timings": dict(self.timings),
                "notes": list(self.notes)}


class UpgradeHalted(InfrablocksError):
    """A gate failed (or Terraform did): the upgrade stopped, remaining units untouched.

    ``failure``: ``{"unit", "step", "summary", "evidence", "logs"}`` (what the journal holds,
    plus the log paths to read).
    """

    def __init__(self, message: str, *, failure: dict[str, Any], hint: str | None = None,
                 outcome: UpgradeOutcome | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failure = failure
        self.outcome = outcome
