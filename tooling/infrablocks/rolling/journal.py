"""The upgrade journal: every completed step of a rolling upgrade, in the state backend.

One document ``upgrade-journal`` per (environment, block), written after every step so that
``doit upgrade --resume`` continues where a crash or Ctrl-C left off. Statuses
(:class:`~infrablocks.rolling.states.JournalStatus`):

- ``running``: in progress (or the process died: resume it);
- ``failed``: a gate failed; ``failure`` says which unit, step, summary and evidence;
- ``completed``: the upgrade finished (the record names the new version);
- ``rolled-back``: ``--rollback-failed`` put the failed unit back on the old version.

The document (JSON)::

    block, environment, from_version, to_version, kind ("upgrade" | "repair"),
    status, phase ("units" | "final-apply" | "record" | "dependents"),
    order [unit indexes in rolling order], down [indexes that were down at the start],
    markers {index: text written on its volume}, outputs_digest (the block's outputs before),
    units {index: {steps: [...], done: bool, old_instance?, new_instance?}},
    failure {unit, step, summary, evidence, at} | null, rollback {unit, to}?,
    events [{unit, step, seconds, at}], pid, started_at, updated_at

Only this module writes it: the engine uses the typed methods below. ``doit status`` shows an
unfinished one (:func:`unfinished_upgrade`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infrablocks.rolling.states import JournalStatus, Phase, RollKind
from infrablocks.state.records import utc_now_iso

if TYPE_CHECKING:
    from infrablocks.state import StateBackend

DOCUMENT = "upgrade-journal"
ACTIVE = (JournalStatus.RUNNING, JournalStatus.FAILED)


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
              to_version: str, order: list[int], markers: dict[int, str],
              kind: RollKind = RollKind.UPGRADE, down: Iterable[int] = (),
              outputs_digest: str | None = None) -> Journal:
        """A new journal (status running, phase units), saved at once."""
        data: dict[str, Any] = {
            "block": block, "environment": environment, "from_version": from_version,
            "to_version": to_version, "kind": str(kind), "status": str(JournalStatus.RUNNING),
            "started_at": utc_now_iso(), "order": list(order), "down": sorted(set(down)),
            "markers": {str(k): v for k, v in markers.items()},
            "units": {str(i): {"steps": [], "done": False} for i in order},
            "phase": str(Phase.UNITS), "failure": None, "events": [], "pid": os.getpid()}
        if outputs_digest is not None:
            data["outputs_digest"] = outputs_digest
        journal = cls(backend, environment, block, data)
        journal.save()
        return journal

    def save(self) -> None:
        self.data["updated_at"] = utc_now_iso()
        self.backend.put_document(self.environment, self.block, DOCUMENT, self.data)

    # -- reading -----------------------------------------------------------------------------

    @property
    def status(self) -> JournalStatus | str:
        """The status (a plain string only if a newer tool wrote one this one does not know)."""
        text = str(self.data.get("status", ""))
        try:
            return JournalStatus(text)
        except ValueError:
            return text

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def kind(self) -> RollKind:
        return RollKind(self.data.get("kind", RollKind.UPGRADE))

    @property
    def phase(self) -> Phase:
        return Phase(self.data.get("phase", Phase.UNITS))

    @property
    def from_version(self) -> str:
        return str(self.data["from_version"])

    @property
    def to_version(self) -> str:
        return str(self.data["to_version"])

    @property
    def order(self) -> list[int]:
        return [int(i) for i in self.data.get("order", [])]

    @property
    def down(self) -> list[int]:
        """Units whose members were down when the roll started (rolled without a gate first)."""
        return [int(i) for i in self.data.get("down", [])]

    @property
    def outputs_digest(self) -> str | None:
        """Digest of the block's outputs before the roll (did the roll change them?)."""
        value = self.data.get("outputs_digest")
        return None if value is None else str(value)

    def marker(self, index: int) -> str | None:
        """The text written on unit ``index``'s volume before the roll (None: none written)."""
        text = self.data.get("markers", {}).get(str(index))
        return None if text is None else str(text)

    def unit(self, index: int) -> dict[str, Any]:
        """The unit's entry (steps, done, instance ids); a copy: write with the methods below."""
        entry = self.data.get("units", {}).get(str(index)) or {"steps": [], "done": False}
        return {**entry, "steps": list(entry.get("steps", []))}

    def steps(self, index: int) -> list[str]:
        return list(self.unit(index)["steps"])

    def unit_done(self, index: int) -> bool:
        return bool(self.unit(index).get("done"))

    def started(self, index: int) -> bool:
        return bool(self.unit(index)["steps"])

    @property
    def failure(self) -> dict[str, Any] | None:
        return self.data.get("failure")

    @property
    def failed_unit(self) -> int | None:
        """The unit whose step failed (None: no failure, or one outside the units)."""
        failure = self.failure or {}
        unit = failure.get("unit")
        return None if unit is None else int(unit)

    # -- writing -----------------------------------------------------------------------------

    def _unit_entry(self, index: int) -> dict[str, Any]:
        units: dict[str, Any] = self.data.setdefault("units", {})
        entry: dict[str, Any] = units.setdefault(str(index), {"steps": [], "done": False})
        return entry

    def step_done(self, index: int | None, step: str, seconds: float = 0.0,
                  **details: Any) -> None:
        """Record a completed step (and its duration, for the timing report)."""
        if index is not None:
            unit = self._unit_entry(index)
            if step not in unit["steps"]:
                unit["steps"].append(str(step))
            unit.update(details)
        self.data.setdefault("events", []).append(
            {"unit": index, "step": str(step), "seconds": round(seconds, 3), "at": time.time()})
        self.save()

    def finish_unit(self, index: int) -> None:
        self._unit_entry(index)["done"] = True
        self.save()

    def set_phase(self, phase: Phase) -> None:
        self.data["phase"] = str(Phase(phase))
        self.save()

    def fail(self, index: int | None, step: str, summary: str,
             evidence: dict[str, Any] | None = None) -> None:
        self.data["status"] = str(JournalStatus.FAILED)
        self.data["failure"] = {"unit": index, "step": str(step), "summary": summary,
                                "evidence": evidence or {}, "at": utc_now_iso()}
        self.save()

    def resume(self) -> None:
        """Running again (by this process): the failure, if any, is cleared."""
        self.set_status(JournalStatus.RUNNING)

    def complete(self) -> None:
        self.set_status(JournalStatus.COMPLETED)

    def start_rollback(self, index: int, to_version: str) -> None:
        """Unit ``index`` starts over, towards ``to_version`` (the version it came from)."""
        self.data.setdefault("units", {})[str(index)] = {"steps": [], "done": False}
        self.data["rollback"] = {"unit": index, "to": to_version}
        self.resume()

    def rolled_back(self) -> None:
        self.set_status(JournalStatus.ROLLED_BACK)

    def set_status(self, status: JournalStatus | str) -> None:
        status = JournalStatus(status)
        self.data["status"] = str(status)
        if status is JournalStatus.RUNNING:
            self.data["failure"] = None
            self.data["pid"] = os.getpid()
        self.save()


def unfinished_upgrade(backend: StateBackend, environment: str,
                       block: str) -> dict[str, Any] | None:
    """What ``doit status`` shows of a roll that did not finish (None when there is none)::

        {state ("halted" | "interrupted" | "in progress"), status ("running" | "failed"),
         kind, from_version, to_version, phase, unit, step,
         summary (of a failure) | None, updated_at, resume (the command), rollback | None}

    ``unit``/``step``: the failed unit and step, else the first unit of the order not done and
    the last step it completed (None before any)."""
    journal = Journal.load(backend, environment, block)
    if journal is None or not journal.active:
        return None
    failure = journal.failure
    unit: int | None
    step: str | None
    if failure is not None:
        unit, step = failure.get("unit"), failure.get("step")
    else:
        unit = next((i for i in journal.order if not journal.unit_done(i)), None)
        steps = journal.steps(unit) if unit is not None else []
        step = steps[-1] if steps else None
    command = f"doit upgrade {block} --env {environment}"
    if failure is not None:
        state = "halted"         # a gate or Terraform failed
    elif (holder := backend.lock_holder(environment, block)) is not None \
            and not holder.holder_is_gone():
        state = "in progress"    # a run holds the block's lock (its process runs)
    else:
        state = "interrupted"    # the process died or was stopped mid-roll
    return {"state": state, "status": str(journal.status), "kind": str(journal.kind),
            "from_version": journal.from_version, "to_version": journal.to_version,
            "phase": str(journal.phase), "unit": unit, "step": step,
            "summary": failure.get("summary") if failure else None,
            "updated_at": journal.data.get("updated_at"),
            "resume": f"{command} --resume",
            "rollback": f"{command} --rollback-failed" if failure is not None else None}

