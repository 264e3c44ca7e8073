"""The upgrade journal: every completed step of a rolling upgrade, in the state backend.

One document ``upgrade-journal`` per (environment, block), written after every step so that
``doit upgrade --resume`` continues where a crash or Ctrl-C left off. Statuses:

- ``running``: in progress (or the process died: resume it);
- ``failed``: a gate failed; ``failure`` says which unit, step, summary and evidence;
- ``completed``: the upgrade finished (the record names the new version);
- ``rolled-back``: ``--rollback-failed`` put the failed unit back on the old version.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infrablocks.state.records import utc_now_iso

if TYPE_CHECKING:
    from infrablocks.state import StateBackend

DOCUMENT = "upgrade-journal"
ACTIVE = ("running", "failed")


@dataclass
class Journal:
    backend: StateBackend
    environment: str
    block: str
    data: dict[str, Any] = field(default_factory=dict)

    # -- loading and saving ----------------------------------------------------------------

    @classmethod
    def load(cls, backend: StateBackend, environment: str, block: str) -> Journal | None:
        data = backend.get_document(environment, block, DOCUMENT)
        return None if data is None else cls(backend, environment, block, data)

    @classmethod
    def start(cls, backend: StateBackend, environment: str, block: str, *, from_version: str,
              to_version: str, order: list[int], markers: dict[int, str]) -> Journal:
        journal = cls(backend, environment, block, {
            "block": block, "environment": environment, "from_version": from_version,
            "to_version": to_version, "status": "running", "started_at": utc_now_iso(),
            "order": list(order), "markers": {str(k): v for k, v in markers.items()},
            "units": {str(i): {"steps": [], "done": False} for i in order},
            "phase": "units", "failure": None, "events": [], "pid": os.getpid()})
        journal.save()
        return journal

    def save(self) -> None:
        self.data["updated_at"] = utc_now_iso()
        self.backend.put_document(self.environment, self.block, DOCUMENT, self.data)

    # -- reading -----------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return str(self.data.get("status", ""))

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def from_version(self) -> str:
        return str(self.data["from_version"])

    @property
    def to_version(self) -> str:
        return str(self.data["to_version"])

    @property
    def order(self) -> list[int]:
        return [int(i) for i in self.data.get("order", [])]

    def marker(self, index: int) -> str | None:
        return self.data.get("markers", {}).get(str(index))

    def unit(self, index: int) -> dict[str, Any]:
        return self.data["units"].setdefault(str(index), {"steps": [], "done": False})

    def steps(self, index: int) -> list[str]:
        return list(self.unit(index)["steps"])

    def unit_done(self, index: int) -> bool:
        return bool(self.unit(index).get("done"))

    def started(self, index: int) -> bool:
        return bool(self.unit(index)["steps"])

    @property
    def failure(self) -> dict[str, Any] | None:
        return self.data.get("failure")

    # -- writing -----------------------------------------------------------------------------

    def step_done(self, index: int | None, step: str, seconds: float = 0.0,
                  **details: Any) -> None:
        """Record a completed step (and its duration, for the timing report)."""
        if index is not None:
            unit = self.unit(index)
            if step not in unit["steps"]:
                unit["steps"].append(step)
            unit.update(details)
        self.data.setdefault("events", []).append(
            {"unit": index, "step": step, "seconds": round(seconds, 3), "at": time.time()})
        self.save()

    def finish_unit(self, index: int) -> None:
        self.unit(index)["done"] = True
        self.save()

    def set_phase(self, phase: str) -> None:
        self.data["phase"] = phase
        self.save()

    def fail(self, index: int | None, step: str, summary: str,
             evidence: dict[str, Any] | None = None) -> None:
        self.data["status"] = "failed"
        self.data["failure"] = {"unit": index, "step": step, "summary": summary,
                                "evidence": evidence or {}, "at": utc_now_iso()}
        self.save()

    def set_status(self, status: str) -> None:
        self.data["status"] = status
        if status == "running":
            self.data["failure"] = None
            self.data["pid"] = os.getpid()
        self.save()
