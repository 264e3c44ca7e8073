"""The rolling engine's decisions: from the journal and the plan, what happens next.

Pure functions, no I/O: the driver (``rolling.driver``) observes (reads the journal, plans,
asks the platform about an instance), calls these, and acts on the answer. Modelled on
terragrunt's split between its run queue, which only says which units are ready
(``internal/queue``), and the runner pool, which only runs them.

A roll is a sequence of **stages** — each unit in the journal's order, then the phases
``final-apply`` → ``record`` → ``dependents`` — and each unit a sequence of **steps**
(:func:`unit_steps`). The journal records what is done, so asking again after a crash gives
the stage and steps that remain.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from infrablocks.rolling.plan import RollingPlan, RollingUnit, order_units
from infrablocks.rolling.states import (
    AFTER_GATES,
    Action,
    Gate,
    JournalStatus,
    Mode,
    Phase,
    UnitStep,
)

__all__ = ["DONE", "Done", "JournalView", "PhaseStage", "Stage", "UnitFacts", "UnitStage",
           "choose_mode", "next_stage", "roll_order", "unit_steps", "units_outside"]


class JournalView(Protocol):
    """What the decider reads from a journal (``rolling.journal.Journal`` is one)."""

    @property
    def status(self) -> JournalStatus | str: ...

    @property
    def phase(self) -> Phase: ...

    @property
    def order(self) -> list[int]: ...

    def unit_done(self, index: int) -> bool: ...


# -- stages -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class UnitStage:
    """Roll unit ``index`` next; ``remaining``: the units after it (untouched if it halts)."""

    index: int
    position: int          # 1-based place in the journal's order
    total: int
    remaining: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.position}/{self.total}"


@dataclass(frozen=True)
class PhaseStage:
    """Every unit is done: run ``phase`` (final-apply, record or dependents)."""

    phase: Phase


@dataclass(frozen=True)
class Done:
    """The roll is complete."""


DONE = Done()
Stage = UnitStage | PhaseStage | Done


def next_stage(journal: JournalView) -> Stage:
    """The first unit of the order not done, else the journal's phase (a ``units`` phase with
    every unit done moves on to ``final-apply``), else — once completed — :data:`DONE`."""
    if journal.status == JournalStatus.COMPLETED:
        return DONE
    order = journal.order
    pending = [i for i in order if not journal.unit_done(i)]
    if pending:
        index = pending[0]
        return UnitStage(index, order.index(index) + 1, len(order), tuple(pending[1:]))
    phase = journal.phase
    return PhaseStage(Phase.FINAL_APPLY if phase is Phase.UNITS else phase)


# -- one unit ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class UnitFacts:
    """What the driver observed about one unit before rolling it."""

    index: int
    changes: bool          # the plan changes its instance or attachment (replace, or create)
    present: bool          # its member is in the block's state (an interrupted apply may have
    #                        removed the old instance already)
    down: bool = False     # its member was down when the roll started (a repair)
    stopped: bool = False  # its instance is stopped (observed for down members only)
    instance_made: bool = False  # the plan leaves its instance as it is and only creates
    #                              its attachment: an interrupted apply made the new instance


def unit_steps(facts: UnitFacts, journaled: Collection[str], *, gate_first: bool,
               leader_last: bool) -> list[UnitStep]:
    """The steps unit ``facts.index`` still needs, in order.

    - a member the plan replaces: the cluster gate (only before a unit's first step, unless
      ``gate_first`` is off: a rollback, a down member), moving leadership off it (order
      ``leader-last``; not for a down member), then stopping it — repeated on resume, a
      no-op once stopped; not when the plan leaves the instance as it is and only creates the
      attachment: the member in the state is then the new instance an interrupted apply
      made, and stopping it would leave it stopped (the apply only attaches its volume);
    - the targeted apply whenever the plan changes the unit (Terraform knows whether the
      replacement happened; an interrupted apply may have deleted the old instance only);
    - a down member with nothing to replace whose instance is stopped: started again, with its
      volume;
    - then each gate not passed yet: running, volume, rejoin, healthy.
    """
    steps: list[UnitStep] = []
    if facts.changes and facts.present and not facts.instance_made:
        if gate_first and not facts.down and not journaled:
            steps.append(Gate.CLUSTER)
        if leader_last and not facts.down and Action.MOVE_LEADER not in journaled:
            steps.append(Action.MOVE_LEADER)
        steps.append(Action.STOP)
    if facts.changes:
        steps.append(Action.APPLY)
    elif facts.down and facts.present and facts.stopped:
        steps.append(Action.START)
    steps += [gate for gate in AFTER_GATES if gate not in journaled]
    return steps


# -- starting ---------------------------------------------------------------------------------

def choose_mode(rolling: RollingPlan, *, resuming: bool, requested: bool = False) -> Mode:
    """``rolling`` when the plan replaces units of the instance group, a journaled roll is
    resumed, or units were asked to roll (members down, a chosen set); else ``plain`` (one
    apply of the plan)."""
    return Mode.ROLLING if rolling.units or resuming or requested else Mode.PLAIN


def units_outside(rolling: RollingPlan, requested: Iterable[int] | None) -> list[int]:
    """Units the plan replaces that a roll of only ``requested`` would leave to the final full
    apply — all at once, which a rolling declaration exists to prevent (None: all requested)."""
    if requested is None:
        return []
    wanted = set(requested)
    return [u.index for u in rolling.units if u.index not in wanted]


def roll_order(units: Iterable[RollingUnit | int], *, down: Collection[int],
               leader_index: int | None, order: str) -> list[int]:
    """The rolling order: members that are down first (by index: nothing serves there to
    protect), then the others by index, with ``leader-last`` the current leader at the end."""
    indexes = sorted({u.index if isinstance(u, RollingUnit) else int(u) for u in units})
    first = [i for i in indexes if i in down]
    rest = [RollingUnit(i, "", None) for i in indexes if i not in down]
    return first + [u.index for u in order_units(rest, leader_index, order)]
