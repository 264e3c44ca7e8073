"""The rolling engine's decider: pure answers from the journal and the plan."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from infrablocks.rolling.decide import (
    DONE,
    PhaseStage,
    UnitFacts,
    UnitStage,
    choose_mode,
    next_stage,
    roll_order,
    unit_steps,
    units_outside,
)
from infrablocks.rolling.plan import RollingPlan, RollingUnit
from infrablocks.rolling.states import Action, Gate, JournalStatus, Mode, Phase

ALL_GATES = [Gate.RUNNING, Gate.VOLUME, Gate.REJOIN, Gate.HEALTHY]


@dataclass
class View:
    order: list[int]
    done: set[int] = field(default_factory=set)
    phase: Phase = Phase.UNITS
    status: JournalStatus = JournalStatus.RUNNING

    def unit_done(self, index: int) -> bool:
        return index in self.done


def test_units_in_journal_order_then_the_phases_then_done() -> None:
    view = View(order=[2, 0, 1])
    assert next_stage(view) == UnitStage(2, 1, 3, (0, 1))
    view.done = {2}
    assert next_stage(view) == UnitStage(0, 2, 3, (1,))
    assert next_stage(view).label == "2/3"
    view.done = {0, 1, 2}
    assert next_stage(view) == PhaseStage(Phase.FINAL_APPLY)     # units phase, all done
    for phase in (Phase.FINAL_APPLY, Phase.RECORD, Phase.DEPENDENTS):
        view.phase = phase
        assert next_stage(view) == PhaseStage(phase)
    view.status = JournalStatus.COMPLETED
    assert next_stage(view) is DONE


def test_a_failed_journal_resumes_at_its_first_unfinished_unit() -> None:
    view = View(order=[0, 1, 2], done={0}, status=JournalStatus.FAILED)
    assert next_stage(view) == UnitStage(1, 2, 3, (2,))


REPLACED = UnitFacts(0, changes=True, present=True)


@pytest.mark.parametrize("facts, journaled, gate_first, leader_last, expected", [
    # a fresh unit: every step
    (REPLACED, [], True, True,
     [Gate.CLUSTER, Action.MOVE_LEADER, Action.STOP, Action.APPLY, *ALL_GATES]),
    # order = "index": no leadership move
    (REPLACED, [], True, False, [Gate.CLUSTER, Action.STOP, Action.APPLY, *ALL_GATES]),
    # resumed after its stop: no gate (the cluster lacks this member by our doing); stop and
    # apply again (idempotent; Terraform knows whether the replacement happened)
    (REPLACED, ["gate", "move-leader", "stop"], True, True,
     [Action.STOP, Action.APPLY, *ALL_GATES]),
    # resumed after the apply, the plan no longer changes it: only the gates left
    (UnitFacts(0, changes=False, present=True), ["gate", "move-leader", "stop", "apply"],
     True, True, ALL_GATES),
    (UnitFacts(0, changes=False, present=True),
     ["gate", "move-leader", "stop", "apply", "running", "volume"], True, True,
     [Gate.REJOIN, Gate.HEALTHY]),
    # an apply interrupted half-way deleted the old instance: nothing to stop, apply creates it
    (UnitFacts(0, changes=True, present=False), ["gate", "move-leader", "stop"], True, True,
     [Action.APPLY, *ALL_GATES]),
    # an apply interrupted after it made the new instance (the plan only creates the
    # attachment): the member in state is the new instance, which must not be stopped
    (UnitFacts(0, changes=True, present=True, instance_made=True),
     ["gate", "move-leader", "stop"], True, True, [Action.APPLY, *ALL_GATES]),
    # a rollback: no cluster gate first
    (REPLACED, [], False, True, [Action.MOVE_LEADER, Action.STOP, Action.APPLY, *ALL_GATES]),
    # a member that is down: replaced without gate or leadership move
    (UnitFacts(0, changes=True, present=True, down=True), [], True, True,
     [Action.STOP, Action.APPLY, *ALL_GATES]),
    # a down member stopped, nothing to replace: started again with its volume
    (UnitFacts(0, changes=False, present=True, down=True, stopped=True), [], True, True,
     [Action.START, *ALL_GATES]),
    # a stopped member that was not down is not restarted behind the cluster's back
    (UnitFacts(0, changes=False, present=True, stopped=True), [], True, True, ALL_GATES),
])
def test_unit_steps(facts, journaled, gate_first, leader_last, expected) -> None:
    assert unit_steps(facts, journaled, gate_first=gate_first,
                      leader_last=leader_last) == expected


def units(*indexes: int) -> RollingPlan:
    return RollingPlan([RollingUnit(i, f"x.m[{i}]", None) for i in indexes], [], True)


def test_order_puts_down_members_first_and_the_leader_last() -> None:
    assert roll_order(units(0, 1, 2).units, down=(), leader_index=0,
                      order="leader-last") == [1, 2, 0]
    assert roll_order(units(0, 1, 2).units, down=(), leader_index=0, order="index") == [0, 1, 2]
    assert roll_order([2, 0, 1, 2], down=[2], leader_index=0, order="leader-last") == [2, 1, 0]
    assert roll_order([], down=[], leader_index=None, order="leader-last") == []


def test_units_outside_a_requested_set_and_the_mode() -> None:
    assert units_outside(units(0, 1, 2), None) == []
    assert units_outside(units(0, 1, 2), [1]) == [0, 2]
    assert units_outside(units(1), [1, 2]) == []
    assert choose_mode(units(), resuming=False) is Mode.PLAIN
    assert choose_mode(units(1), resuming=False) is Mode.ROLLING
    assert choose_mode(units(), resuming=True) is Mode.ROLLING
    assert choose_mode(units(), resuming=False, requested=True) is Mode.ROLLING
