"""Live progress of a run: one line per block with its phase and elapsed time (rich).

Use it as the runner's ``on_event``::

    with LiveProgress(graph.nodes, title="create prod") as progress:
        report = run_dag(graph, work, jobs=4, on_event=progress)
    console.print(report.summary_table())

On a terminal the lines update in place; otherwise (CI logs, pipes) each start, finish and
phase change is printed as a plain line, so a log still tells the story.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterable
from typing import Any

from infrablocks.runner.dag import (
    CANCEL_REQUESTED,
    NODE_FINISHED,
    NODE_STARTED,
    PHASE,
    RunEvent,
)
from infrablocks.runner.report import STATUS_STYLE, Status

_ICONS = {
    Status.PENDING: "·",
    Status.RUNNING: "▶",
    Status.SUCCEEDED: "✔",
    Status.FAILED: "✘",
    Status.SKIPPED: "↷",
    Status.NOT_STARTED: "-",
    Status.CANCELLED: "■",
}


class LiveProgress:
    """A callable ``on_event`` sink that renders the run (a context manager)."""

    def __init__(self, nodes: Iterable[Hashable], *, console: Any = None, title: str = "",
                 labels: dict[Hashable, str] | None = None, transient: bool = False) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.title = title
        self.labels = dict(labels or {})
        self.transient = transient
        self._lock = threading.Lock()
        self._rows: dict[Hashable, _Row] = {n: _Row() for n in nodes}
        self._note: str | None = None
        self._live: Any = None

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> LiveProgress:
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self, console=self.console, refresh_per_second=4,
                              transient=self.transient)
            self._live.__enter__()
        elif self.title:
            self.console.print(self.title)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    # -- events -----------------------------------------------------------------------------

    def __call__(self, event: RunEvent) -> None:
        with self._lock:
            line = self._apply(event)
        if line and self._live is None:
            self.console.print(line, highlight=False)

    def _apply(self, event: RunEvent) -> str | None:
        if event.kind == CANCEL_REQUESTED:
            self._note = event.message
            return f"! {event.message}"
        row = self._rows.setdefault(event.node, _Row()) if event.node is not None else None
        if row is None:
            return None
        label = self._label(event.node)
        if event.kind == NODE_STARTED:
            row.status, row.started, row.phase = Status.RUNNING, event.time, "starting"
            return f"{_ICONS[Status.RUNNING]} {label}: started"
        if event.kind == PHASE:
            row.phase = event.message or ""
            return f"  {label}: {row.phase}"
        if event.kind == NODE_FINISHED and event.status is not None:
            row.status = event.status
            row.ended = event.time if row.started is not None else None
            row.phase = _first_line(event.message) if event.message else ""
            took = f" in {row.ended - row.started:.1f}s" if row.started and row.ended else ""
            detail = f": {row.phase}" if row.phase else ""
            return f"{_ICONS[event.status]} {label}: {event.status}{took}{detail}"
        return None

    def _label(self, node: Hashable) -> str:
        return self.labels.get(node, str(node))

    # -- rendering --------------------------------------------------------------------------

    def __rich__(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        table = Table.grid(padding=(0, 2))
        table.add_column(width=1)
        table.add_column()
        table.add_column(style="dim")
        table.add_column(justify="right")
        with self._lock:
            rows = list(self._rows.items())
            note = self._note
        for node, row in rows:
            elapsed = ""
            if row.started is not None:
                elapsed = f"{(row.ended or now) - row.started:5.1f}s"
            phase = row.phase or ("waiting" if row.status is Status.PENDING else str(row.status))
            style = STATUS_STYLE[row.status]
            table.add_row(Text(_ICONS[row.status], style=style),
                          Text(self._label(node), style=style), phase, elapsed)
        if self.title or note:
            from rich.console import Group

            parts: list[Any] = []
            if self.title:
                parts.append(Text(self.title, style="bold"))
            parts.append(table)
            if note:
                parts.append(Text(note, style="magenta"))
            return Group(*parts)
        return table


class _Row:
    __slots__ = ("status", "phase", "started", "ended")

    def __init__(self) -> None:
        self.status = Status.PENDING
        self.phase = ""
        self.started: float | None = None
        self.ended: float | None = None


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
