"""How `doit plan` and `doit apply` show their work: the per-block plan table, JSON, notices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from infrablocks.tasks._console import counted
from infrablocks.tasks._deploy_output import console, err_console

if TYPE_CHECKING:
    from infrablocks.planning.apply import ReviewedPlan
    from infrablocks.planning.crossplan import BlockPlan, EnvironmentPlan

_ACTION_STYLE = {"create": "green", "update": "yellow", "replace": "red", "delete": "red"}


def print_environment_plan(result: EnvironmentPlan, *, as_json: bool) -> None:
    """The plan per block (dependency order); JSON carries no input values."""
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return
    table = Table(title=f"plan for {result.environment} ({' '.join(result.targets)}): "
                        f"{counted(len(result.blocks), 'block')} in one plan, "
                        f"{result.seconds:.1f}s",
                  title_justify="left")
    for column in ("block", "deployed", "target", "changes"):
        table.add_column(column)
    for entry in result.blocks:
        table.add_row(entry.block, entry.deployed or "-", entry.target, _changes_cell(entry))
    console.print(table)
    totals: dict[str, int] = {}
    for entry in result.blocks:
        for action, count in entry.counts().items():
            totals[action] = totals.get(action, 0) + count
    changing = [b.block for b in result.blocks if b.has_changes and not b.unplanned]
    console.print(", ".join(f"{n} to {a}" for a, n in totals.items()) or "no resource changes",
                  f"in {len(changing)} of {counted(len(result.blocks), 'block')}")
    for entry in result.blocks:
        if entry.refusal:
            err_console.print(f"[red]doit apply would refuse {entry.block}:[/] "
                              f"{escape(entry.refusal)}")
    if result.saved_to is not None:
        err_console.print(f"plan saved to {result.saved_to} (it holds input values, secrets "
                          "included, like Terraform's plan files: keep it private); apply it "
                          f"with: doit apply {result.saved_to}")


def _changes_cell(entry: BlockPlan) -> str:
    if entry.unplanned:
        return f"[yellow]{escape(entry.unplanned)}[/]"
    lines = []
    if entry.note:
        lines.append(f"[italic]{escape(entry.note)}[/]")
    if not entry.has_changes:
        lines.append("[green]no changes[/]")
    else:
        lines.append(escape(entry.summary()) + (" (outputs change)" if entry.outputs_change
                                                and entry.changes else ""))
        for address, action in entry.actions():
            style = _ACTION_STYLE.get(action, "")
            text = f"{action} {escape(address)}"
            lines.append(f"  [{style}]{text}[/]" if style else f"  {text}")
    if entry.unknown_inputs:
        lines.append("known after apply: " + escape(", ".join(entry.unknown_inputs)))
    return "\n".join(lines)


def announce_apply(reviewed: ReviewedPlan) -> None:
    """What `doit apply` is about to do, once the file passed its checks."""
    manifest = reviewed.manifest
    parts = []
    for entry in reviewed.blocks:
        mode = entry.get("apply")
        if mode in ("unchanged", "not planned"):
            continue
        how = "saved plan" if mode == "saved" else "plan again, compare, apply"
        parts.append(f"{entry['block']} ({how})")
    err_console.print(f"applying the plan made by {manifest.get('created_by')} at "
                      f"{manifest.get('created_at')} to {reviewed.environment}: "
                      + (", ".join(parts) or "nothing to change"))


def warn_if_readable(path: Path) -> None:
    """A saved plan holds secrets: say so when others may read it."""
    from infrablocks.planning.planfile import is_private

    if path.is_file() and not is_private(path):
        err_console.print(f"[yellow]warning:[/] {path} may be read by other users; it holds "
                          f"secrets (chmod 600 {path})")


def print_not_planned(reviewed: ReviewedPlan) -> None:
    """Blocks the plan left out (nothing reviewed, nothing applied) and how to go on."""
    left = [entry["block"] for entry in reviewed.blocks if entry.get("apply") == "not planned"]
    if left:
        targets = " ".join(reviewed.manifest.get("targets") or left)
        err_console.print(f"[yellow]not in the reviewed plan, not applied:[/] {', '.join(left)}"
                          f" — plan them now that their dependencies exist: doit plan "
                          f"{targets} --env {reviewed.environment} --out FILE")
