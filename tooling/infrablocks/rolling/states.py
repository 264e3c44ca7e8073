"""The rolling engine's vocabulary: what the journal, the decider and the driver talk about.

Every value is the string the journal document and ``--json`` have always used (``StrEnum``:
``Gate.REJOIN == "rejoin"``), so journals written before stay readable.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AFTER_GATES", "Action", "Gate", "JournalStatus", "Mode", "Phase", "RollKind",
           "Step", "UnitStep"]


class Mode(StrEnum):
    """How an upgrade went (``UpgradeOutcome.mode``)."""

    UP_TO_DATE = "up-to-date"    # the target is what is deployed: nothing to do
    DRY_RUN = "dry-run"          # the rolling plan, nothing changed
    PLAIN = "plain"              # nothing to roll: one apply (stateless blocks always)
    ROLLING = "rolling"          # units rolled one at a time
    ROLLED_BACK = "rolled-back"  # --rollback-failed put the failed unit back


class JournalStatus(StrEnum):
    RUNNING = "running"          # in progress, or the process died: resume it
    FAILED = "failed"            # a gate (or Terraform) failed: resume or roll back
    COMPLETED = "completed"      # done; the record names the target version
    ROLLED_BACK = "rolled-back"  # the failed unit is back on the version it came from


class Phase(StrEnum):
    """Where a journaled roll is, once its units are done (in this order)."""

    UNITS = "units"              # rolling the units
    FINAL_APPLY = "final-apply"  # a full apply of the rest, then a plan that must be empty
    RECORD = "record"            # the deployment record names the target version
    DEPENDENTS = "dependents"    # dependents whose inputs changed are re-applied


class RollKind(StrEnum):
    """Why units roll."""

    UPGRADE = "upgrade"    # to another version of the block (doit upgrade)
    REPAIR = "repair"      # members that are down are replaced or restarted (issue 9's create)
    ROLLBACK = "rollback"  # --rollback-failed: one unit back to the version it came from


class Action(StrEnum):
    """What a unit does to its member."""

    MOVE_LEADER = "move-leader"  # the service hands leadership to another member
    STOP = "stop"                # stop the instance (its volume can detach only then)
    APPLY = "apply"              # targeted apply: instance[i] + attachment[i]
    START = "start"              # a stopped member with nothing to replace is started again


class Gate(StrEnum):
    """What a unit waits for, each polled until its timeout (``rolling.timeouts``)."""

    CLUSTER = "gate"      # before the unit: the cluster is healthy (timeout ``healthy``)
    RUNNING = "running"   # the member's instance runs and finished booting
    VOLUME = "volume"     # its volume is back: attached, mounted, marker kept
    REJOIN = "rejoin"     # the service says the member is back
    HEALTHY = "healthy"   # the whole cluster is healthy again

    @property
    def timeout_name(self) -> str:
        """The ``rolling.timeouts`` key bounding this gate."""
        return "healthy" if self is Gate.CLUSTER else self.value


AFTER_GATES = (Gate.RUNNING, Gate.VOLUME, Gate.REJOIN, Gate.HEALTHY)

UnitStep = Action | Gate


class Step(StrEnum):
    """Steps of a roll outside its units (failures and fault-hook boundaries)."""

    FINAL_APPLY = "final-apply"  # after the full apply (fault hook)
    EMPTY_PLAN = "empty-plan"    # the plan after the final apply was not empty (failure)
    RECORD = "record"            # after the record was written (fault hook)
    DEPENDENTS = "dependents"    # a dependent's re-apply failed (failure)
