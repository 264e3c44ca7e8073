"""How the environment commands show their work: live progress, summaries, tables, JSON."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from infrablocks.runner.report import STATUS_STYLE
from infrablocks.tasks._console import counted, make_console

if TYPE_CHECKING:
    from infrablocks.deploy.orchestrate import TestEnvironmentOutcome
    from infrablocks.deploy.status import BlockStatus, EnvironmentStatus
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.runner import RunEvent, RunReport
    from infrablocks.state import Outputs

console = make_console()
err_console = make_console(stderr=True)


def progress_for(title: str) -> _LazyProgress:
    """A live progress display (one line per block) fed by the runner's events."""
    return _LazyProgress(title)


class _LazyProgress:
    """Creates the LiveProgress on the first event, when the run's nodes are known."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._progress: Any = None

    def __enter__(self) -> _LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def __call__(self, event: RunEvent) -> None:
        from infrablocks.runner import RUN_STARTED
        from infrablocks.runner.progress import LiveProgress

        if event.kind == RUN_STARTED and self._progress is None:
            # rows are added as the blocks start (RUN_STARTED carries no node list)
            self._progress = LiveProgress([], console=err_console, title=self.title)
            self._progress.__enter__()
        if self._progress is not None:
            self._progress(event)


def print_run_summary(report: RunReport, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("block", "status", "action", "version", "time", "detail"):
        table.add_column(column)
    for node, entry in report.nodes.items():
        status = str(entry.status)
        style = STATUS_STYLE[entry.status]
        detail = entry.error or entry.reason or ""
        changes = entry.detail.get("changes")
        if changes:
            detail = ", ".join(f"{n} {a}" for a, n in changes.items())
        if not entry.error:  # why it was applied (or left alone), what was taken over
            why = [] if entry.detail.get("action") == "created" else entry.detail.get("why", [])
            detail = "\n".join(filter(None, [detail, *why, *entry.detail.get("notes", [])]))
        table.add_row(str(node), f"[{style}]{status}[/]" if style else status,
                      entry.detail.get("action", ""), entry.detail.get("version", ""),
                      f"{entry.duration:.1f}s" if entry.duration is not None else "",
                      escape(_first_lines(detail)))
    console.print(table)
    console.print(report.summary())
    for warning in report.warnings:   # the run's own (a progress display that failed, what
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")   # the cloud kept)
    for node, entry in report.nodes.items():
        if entry.error and "\n" in entry.error:
            err_console.print(f"[red]{node}[/]: {escape(entry.error)}")


def print_create_preview(preview: Any) -> None:
    """What `create` is about to do in a persistent environment (``deploy.preview``)."""
    table = Table(title=f"create in {preview.environment}: what would change",
                  title_justify="left")
    for column in ("block", "deployed", "target", "action", "add", "change", "replace",
                   "destroy", "why"):
        table.add_column(column)
    for entry in preview.entries:
        counts = entry.counts
        action = entry.action
        if entry.rolls:
            action += " (" + ", ".join(entry.members or map(str, entry.rolls)) + \
                ", one at a time)"
        table.add_row(entry.block, entry.deployed or "-", entry.target, action,
                      *(str(counts[k]) if counts else "" for k in
                        ("add", "change", "replace", "destroy")),
                      escape("\n".join(entry.why)))
    console.print(table)
    rolling = [e.block for e in preview.entries if e.rolls]
    if rolling:
        console.print("stateful blocks that roll (the rolling procedure: one member at a time, "
                      "gates between): " + ", ".join(rolling))


def print_left_behind(workspace: Workspace, environment: str, report: RunReport) -> None:
    """After a failed or interrupted run: what each unfinished block was left as."""
    from infrablocks.runner import Status

    unfinished = report.with_status(Status.FAILED, Status.CANCELLED)
    if not unfinished:
        return
    err_console.print("[bold]left behind:[/]")
    for node in unfinished:
        block = str(node)
        record = workspace.backend.get_record(environment, block)
        state = workspace.backend.read_state(environment, block)
        resources = len((state or {}).get("resources") or [])
        recorded = (f"record `{record.status}` at {record.version}" if record
                    else "no deployment record")
        err_console.print(f"  {block}: {recorded}; {counted(resources, 'resource')} in its state "
                          f"({workspace.backend.describe(environment, block)})")


def _first_lines(text: str, lines: int = 3) -> str:
    parts = text.strip().splitlines()
    return "\n".join(parts[:lines]) + (" …" if len(parts) > lines else "")


def write_report(path: str | None, document: dict[str, Any]) -> None:
    if not path:
        return
    from infrablocks.tasks._output_files import write_output_file

    # 0600 like every file the tool writes for itself; reports name blocks, versions and
    # errors, never output values (sensitive ones stay in the state). The path was checked
    # with the option (--report), before the run.
    write_output_file(path, json.dumps(document, indent=2, sort_keys=True, default=str),
                      private=True)
    err_console.print(f"report written to {path}")


class TestEnvironmentPrinter:
    """Output of `doit env`: stages, live progress per stage, block tests, verdict."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self._progress: _LazyProgress | None = None

    def announce(self, stage: str, text: str) -> None:
        if stage == "notice":  # may come from a signal handler: print, nothing else
            err_console.print(f"[yellow]{escape(text)}[/]")
            return
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None
        console.rule(f"[bold]{stage}[/] {escape(text)}")

    def sink(self, stage: str) -> _LazyProgress:
        self._progress = _LazyProgress(f"{stage}")
        return self._progress

    def finish(self, outcome: TestEnvironmentOutcome) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
        if outcome.create_report is not None:
            print_run_summary(outcome.create_report, f"create in {outcome.environment}")
        for result in outcome.tests:
            verdict = ("[green]passed[/]" if result.ok else
                       "[yellow]no tests[/]" if result.skipped else "[red]failed[/]")
            console.print(f"block tests {result.block} {result.version}: {verdict} "
                          f"({result.summary})")
        if outcome.destroy_report is not None:
            print_run_summary(outcome.destroy_report, f"destroy {outcome.environment}")
        if outcome.leftovers:
            err_console.print(f"[yellow]swept from the local cloud after destroy:[/] "
                              f"{outcome.leftovers}")
        if outcome.error:
            err_console.print(f"[red]error:[/] {escape(outcome.error)}")
        if outcome.kept:
            env = outcome.environment
            roots = (sorted(name for name, version in outcome.resolution.selected.items()
                            if not version.requires)
                     if outcome.resolution else ["BLOCK"])
            console.print(f"environment [bold]{env}[/] kept. Reach it with "
                          f"`doit outputs BLOCK --env {env}` (what is there: `doit status "
                          f"--env {env}`); destroy all of it with `doit destroy "
                          f"{' '.join(roots)} --env {env} --with-dependents --yes`")
        verdict = "[green]PASSED[/]" if outcome.ok else "[red]FAILED[/]"
        console.print(f"doit env {' '.join(self.targets)} ({outcome.environment}): {verdict}")

    def report_document(self, outcome: TestEnvironmentOutcome) -> dict[str, Any]:
        return {
            "command": "env", "environment": outcome.environment, "ok": outcome.ok,
            "resolution": outcome.resolution.to_json() if outcome.resolution else None,
            "create": outcome.create_report.to_json() if outcome.create_report else None,
            "tests": [{"block": t.block, "version": t.version, "returncode": t.returncode,
                       "summary": t.summary, "seconds": t.seconds} for t in outcome.tests],
            "destroy": outcome.destroy_report.to_json() if outcome.destroy_report else None,
            "leftovers": outcome.leftovers, "kept": outcome.kept, "error": outcome.error,
        }


def print_status(statuses: list[EnvironmentStatus], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([s.to_json() for s in statuses], indent=2))
        return
    for status in statuses:
        table = Table(title=f"{status.environment}"
                            + ("" if status.declared else " (ephemeral / not in blocks.toml)"),
                      title_justify="left")
        for column in ("block", "version", "status", "applied", "by", "drift", "newer allowed"):
            table.add_column(column)
        for b in status.blocks:
            drift = ("[green]none[/]" if b.drift == "none" else
                     f"[red]{escape(b.drift)}[/]" if b.drift.startswith(("drifted", "error"))
                     else escape(b.drift))
            if b.cause:
                drift += escape("\nfrom " + "; ".join(b.cause))
            elif b.code_edited:
                drift += escape("\ncode edited since applied: " + ", ".join(b.code_edited))
            newer = ", ".join(b.newer_allowed) or "-"
            if b.excluded_by_pin:
                newer += f" ({', '.join(b.excluded_by_pin)} excluded by pin {b.pin})"
            table.add_row(b.block, b.version, b.status, b.applied_at, b.applied_by, drift,
                          escape(newer))
        if not status.blocks:
            table.add_row("(nothing deployed)", "", "", "", "", "", "")
        console.print(table)
        for warning in status.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}")
        for b in status.blocks:
            for line in _status_notes(status.environment, b):
                console.print(line, markup=False)


def _status_notes(environment: str, b: BlockStatus) -> list[str]:
    """Lines under the status table: an unfinished upgrade, newer versions a pin keeps out."""
    notes = []
    up = b.unfinished_upgrade
    if up is not None:
        where = (f"unit {up['unit']}" if up["unit"] is not None else f"phase {up['phase']}") \
            + (f", step {up['step']}" if up["step"] else ", before its first step")
        notes.append(f"{b.block}: {up['kind']} {up['from_version']} → {up['to_version']} "
                     f"{up['state']} (status {up['status']}) at {where}"
                     + (f": {up['summary']}" if up["summary"] else ""))
        notes.append(f"  continue it: {up['resume']}"
                     + (f"; or put the failed member back: {up['rollback']}"
                        if up["rollback"] else ""))
    if b.excluded_by_pin:
        notes.append(f"{b.block}: {', '.join(b.excluded_by_pin)} excluded by "
                     f"environments.{environment}.pins.{b.block} = \"{b.pin}\": doit upgrade "
                     f"{b.block} --env {environment} --to {b.excluded_by_pin[-1]}")
    return notes


def print_outputs(block: str, environment: str, outputs: Outputs, *, as_json: bool) -> None:
    from infrablocks.state import outputs_to_json, render_outputs_table

    if as_json:
        json.dump(outputs_to_json(outputs), sys.stdout, indent=2)
        print()
        return
    console.print(render_outputs_table(outputs, title=f"{block} outputs in {environment}"))
