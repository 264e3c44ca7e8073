"""How `doit upgrade` and `doit test-upgrade` show their work: progress lines, plans, JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich.table import Table

from infrablocks.tasks._console import counted, make_console

if TYPE_CHECKING:
    from infrablocks.upgrade.engine import UpgradeHalted, UpgradeOutcome
    from infrablocks.upgrade.testing import TestUpgradeResult

console = make_console()
err_console = make_console(stderr=True)

UNIT_STEPS = ["gate: cluster healthy", "move leadership off (if it leads)", "stop instance",
              "targeted apply (instance + attachment)", "gate: instance running",
              "gate: volume attached, mounted, marker kept", "gate: member rejoined",
              "gate: cluster healthy"]


class Printer:
    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json

    def say(self, text: str) -> None:
        """Progress goes to stderr, so --json output stays parseable."""
        err_console.print(text, markup=False)

    def outcome(self, outcome: UpgradeOutcome) -> None:
        if self.as_json:
            print(json.dumps(outcome.to_json(), indent=2))
            return
        head = f"{outcome.block} in {outcome.environment}: "
        if outcome.mode == "up-to-date":
            console.print(head + f"already at {outcome.to_version}, nothing to upgrade")
            for note in outcome.notes:
                console.print(f"note: {note}")
            return
        if outcome.mode == "dry-run":
            self._plan(outcome)
            return
        if outcome.mode == "rolled-back":
            console.print(head + f"unit {outcome.order} rolled back to {outcome.from_version}")
        elif outcome.mode == "plain":
            console.print(head + f"{outcome.from_version} → {outcome.to_version} "
                                 "(no instance replaced: a plain apply)")
        else:
            console.print(head + f"{outcome.from_version} → {outcome.to_version}, "
                                 f"{counted(len(outcome.order), 'unit')} rolled")
            self._units(outcome)
        timings = outcome.timings
        console.print("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
        if outcome.dependents:
            console.print("re-applied dependents: " + ", ".join(outcome.dependents))
        for note in outcome.notes:
            console.print(f"note: {note}")

    def _plan(self, outcome: UpgradeOutcome) -> None:
        plan = outcome.plan
        console.print(f"rolling plan: {outcome.block} {outcome.from_version} → "
                      f"{outcome.to_version} in {outcome.environment}")
        if outcome.pre_health:
            console.print(f"cluster now: {outcome.pre_health}")
        for position, index in enumerate(outcome.order, 1):
            unit = next(u for u in plan.units if u.index == index) if plan else None
            name = outcome.members.get(index, "?")
            reasons = f" (forced by {', '.join(unit.reasons)})" if unit and unit.reasons else ""
            what = ", ".join(unit.targets()) if unit else str(index)
            console.print(f"  unit {position}: {name} = {what}{reasons}")
        console.print("  each unit: " + " → ".join(UNIT_STEPS))
        if plan and plan.rest:
            console.print("  then a full apply of: " + ", ".join(plan.rest))
        console.print("  then: a plan that must be empty, the deployment record")
        for note in outcome.notes:
            console.print(f"note: {note}")

    def _units(self, outcome: UpgradeOutcome) -> None:
        table = Table(title_justify="left")
        steps: list[str] = []
        for unit in outcome.units:
            steps += [s for s in unit["steps"] if s not in steps]
        for column in ["unit", "member", *steps]:
            table.add_column(column)
        for unit in outcome.units:
            table.add_row(str(unit["index"]), unit.get("member", ""),
                          *[f"{unit['steps'][s]:.1f}s" if s in unit["steps"] else "-"
                            for s in steps])
        console.print(table)

    def halted(self, error: UpgradeHalted) -> None:
        if self.as_json:
            print(json.dumps({"halted": error.failure}, indent=2, sort_keys=True, default=str))

    def test_upgrade(self, result: TestUpgradeResult) -> None:
        if self.as_json:
            print(json.dumps(result.to_json(), indent=2, sort_keys=True, default=str))
            return
        status = "[green]passed[/]" if result.ok else "[red]FAILED[/]"
        console.print(f"test-upgrade {result.block} {result.from_version} → "
                      f"{result.to_version} in {result.environment}: {status}")
        for line in result.lines():
            console.print(f"  {line}", markup=False)
