"""What a run did: per-node status, timing, errors and reasons; JSON for ``--report FILE.json``."""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"          # downstream of a failure: never run (``reason`` says which)
    NOT_STARTED = "not started"  # the run stopped (fail-fast or cancel) before it was reached
    CANCELLED = "cancelled"      # was running when the run was cancelled, and did not succeed

    @property
    def terminal(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)


@dataclass
class Result:
    """What a work function returns. Returning ``None`` means success with no detail.

    ``detail`` is JSON-able information for the report (e.g. version, changes, phases' times).
    Raising an exception is the other way to fail: its message becomes ``error``.
    """

    ok: bool = True
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def success(cls, **detail: Any) -> Result:
        return cls(True, None, detail)

    @classmethod
    def failure(cls, error: str, **detail: Any) -> Result:
        return cls(False, error, detail)


@dataclass
class NodeReport:
    node: Hashable
    status: Status = Status.PENDING
    started_at: float | None = None   # epoch seconds
    ended_at: float | None = None
    duration: float | None = None     # seconds, monotonic clock
    phase: str | None = None          # last phase the work reported
    error: str | None = None
    reason: str | None = None         # why skipped / not started
    blocked_by: list[Hashable] = field(default_factory=list)  # failed nodes upstream
    detail: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None      # only for unexpected exceptions (bugs), for logs

    def to_json(self) -> dict[str, Any]:
        return {
            "node": str(self.node),
            "status": str(self.status),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration_seconds": None if self.duration is None else round(self.duration, 3),
            "phase": self.phase,
            "error": self.error,
            "reason": self.reason,
            "blocked_by": [str(n) for n in self.blocked_by],
            "detail": self.detail,
            **({"traceback": self.traceback} if self.traceback else {}),
        }


@dataclass
class RunReport:
    """The outcome of :func:`infrablocks.runner.run_dag`; ``nodes`` in dependency order."""

    nodes: dict[Hashable, NodeReport]
    jobs: int
    keep_going: bool
    reverse: bool
    started_at: float
    ended_at: float = 0.0
    wall: float = 0.0
    cancelled: bool = False
    cancel_reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every node succeeded (and nothing was cancelled)."""
        return not self.cancelled and all(r.status is Status.SUCCEEDED
                                          for r in self.nodes.values())

    def with_status(self, *statuses: Status) -> list[Hashable]:
        return [n for n, r in self.nodes.items() if r.status in statuses]

    @property
    def succeeded(self) -> list[Hashable]:
        return self.with_status(Status.SUCCEEDED)

    @property
    def failed(self) -> list[Hashable]:
        return self.with_status(Status.FAILED, Status.CANCELLED)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for report in self.nodes.values():
            counts[str(report.status)] = counts.get(str(report.status), 0) + 1
        return counts

    def summary(self) -> str:
        """One line, e.g. ``3 succeeded, 1 failed, 2 skipped in 12.4s``."""
        order = [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED,
                 Status.NOT_STARTED]
        counts = self.counts()
        parts = [f"{counts[str(s)]} {s}" for s in order if counts.get(str(s))]
        text = ", ".join(parts) or "nothing to do"
        if self.cancelled:
            text += f" — cancelled ({self.cancel_reason})"
        return f"{text} in {self.wall:.1f}s"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "wall_seconds": round(self.wall, 3),
            "jobs": self.jobs,
            "keep_going": self.keep_going,
            "order": "reverse" if self.reverse else "dependencies first",
            "cancelled": self.cancelled,
            "cancel_reason": self.cancel_reason,
            "counts": self.counts(),
            "warnings": self.warnings,
            "nodes": [r.to_json() for r in self.nodes.values()],
        }

    def write_json(self, path: Path) -> None:
        from infrablocks.private_files import write_private_text

        write_private_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    def critical_path(self, graph: Any) -> tuple[float, list[Hashable]]:
        """The longest chain of measured node durations through ``graph`` and its nodes.

        ``wall ÷ critical path`` is the scheduling efficiency of the run (1.0 is perfect);
        nodes that did not run count as 0 s. Edges are read dependency → dependent whatever
        the run's direction (a chain is as long either way).
        """
        import networkx as nx

        finish: dict[Hashable, float] = {}
        via: dict[Hashable, Hashable | None] = {}
        for node in nx.topological_sort(graph):
            report = self.nodes.get(node)
            own = (report.duration or 0.0) if report else 0.0
            best = max(graph.predecessors(node), key=lambda p: finish[p], default=None)
            finish[node] = own + (finish[best] if best is not None else 0.0)
            via[node] = best
        if not finish:
            return 0.0, []
        end: Hashable | None = max(finish, key=lambda n: finish[n])
        total = finish[end]
        chain: list[Hashable] = []
        while end is not None:
            chain.append(end)
            end = via[end]
        return total, chain[::-1]

    def summary_table(self, *, title: str | None = None, labels: dict[Hashable, str] | None
                      = None) -> Any:
        """A rich Table: one row per node with status, duration and error or reason."""
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, show_header=True, header_style="bold")
        table.add_column("block")
        table.add_column("status")
        table.add_column("time", justify="right")
        table.add_column("details", overflow="fold")
        for node, report in self.nodes.items():
            label = (labels or {}).get(node, str(node))
            duration = "" if report.duration is None else f"{report.duration:.1f}s"
            details = report.error or report.reason or ""
            table.add_row(label, Text(str(report.status), style=STATUS_STYLE[report.status]),
                          duration, _first_lines(details, 6))
        return table


STATUS_STYLE = {
    Status.PENDING: "dim",
    Status.RUNNING: "cyan",
    Status.SUCCEEDED: "green",
    Status.FAILED: "bold red",
    Status.SKIPPED: "yellow",
    Status.NOT_STARTED: "dim yellow",
    Status.CANCELLED: "magenta",
}


def _first_lines(text: str, limit: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:limit] + (["…"] if len(lines) > limit else []))


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
