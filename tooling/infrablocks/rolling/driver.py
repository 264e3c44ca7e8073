"""The rolling engine's driver: it acts, the decider (``rolling.decide``) decides.

The driver touches the world only through interfaces: the platform's
:class:`~infrablocks.cloud.ops.CloudOps` (stop, start, describe, wait), a
:class:`BlockTerraform` (plan and apply of the block's working directory), the service's
:class:`~infrablocks.health.base.ServiceCheck`, and the state backend (the block's state, its
record, the journal). Unit tests run it on in-memory fakes of each; ``upgrade.engine`` wires
the real ones from a workspace.

Two paths, one per kind of block:

- :class:`PlainDriver` — nothing to roll (a stateless block, or a plan that replaces no member):
  one apply, a plan that must be empty, the record, the dependents;
- :class:`RollingDriver` — per unit: gate (cluster healthy) → move leadership off (if it
  leads) → stop the instance → targeted apply (instance[i], attachment[i]) → gates: running,
  volume back with its data, member rejoined, cluster healthy; then a full apply of the rest, a
  plan that must be empty, the record, the dependents. Every step is journaled before the next
  one; the fault hook fires after each (``after:STEP:INDEX``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from infrablocks.cloud.ops import CloudNotFoundError, CloudOpsError
from infrablocks.errors import InfrablocksError
from infrablocks.health.base import GateResult, Member
from infrablocks.health.instance import instance_running, volume_back
from infrablocks.rolling.decide import (
    DONE,
    PhaseStage,
    UnitFacts,
    UnitStage,
    next_stage,
    unit_steps,
)
from infrablocks.rolling.faults import NO_FAULTS, FaultHook
from infrablocks.rolling.gates import poll_gate
from infrablocks.rolling.outcome import DependentsRefused, UpgradeHalted, UpgradeRefused
from infrablocks.rolling.plan import members_from_state
from infrablocks.rolling.states import Action, Gate, Phase, Step, UnitStep
from infrablocks.state import new_record
from infrablocks.waiting import poll

if TYPE_CHECKING:
    from infrablocks.cloud.ops import CloudOps
    from infrablocks.health.base import ServiceCheck
    from infrablocks.rolling.declaration import RollingDeclaration
    from infrablocks.rolling.journal import Journal
    from infrablocks.state import StateBackend
    from infrablocks.terraform.plan import Plan
    from infrablocks.timing import PhaseTimer

__all__ = ["PRE_GATE_TIMEOUT", "BlockTerraform", "Deployment", "PlainDriver", "Ports",
           "RollingDriver", "Subject"]

Say = Callable[[str], None]

PRE_GATE_TIMEOUT = 20.0   # a cluster must be healthy within this to start at all
LEADER_MOVE_TIMEOUT = 30.0


class BlockTerraform(Protocol):
    """Terraform on the block's prepared working directory (``terraform.driver.Terraform``
    bound to it by the engine)."""

    def plan(self, targets: Sequence[str] = ()) -> Plan: ...

    def apply(self, plan: Plan | None = None, targets: Sequence[str] = ()) -> object:
        """Apply ``plan`` as saved, or plan-and-apply ``targets`` (everything when empty)."""
        ...


@dataclass(frozen=True)
class Subject:
    """What is being rolled: ``block`` in ``environment`` from version ``current`` to
    ``target`` (a rollback's subject goes from the new version back to the old one)."""

    block: str
    environment: str
    current: str
    target: str


@dataclass
class Ports:
    """What both paths act through besides the cloud and the service."""

    terraform: BlockTerraform
    backend: StateBackend
    reapply_dependents: Callable[[], list[str]]   # raises DependentsRefused / InfrablocksError
    terraform_version: Callable[[], str]          # for the deployment record
    log_dir: str                                  # Terraform's logs, named when a step fails
    timer: PhaseTimer
    say: Say = lambda text: None
    write_record: Callable[[str], None] | None = None  # the record of a version, as `create`
    #                                                     writes it (deploy.block_ops)


def _outputs_digest(backend: StateBackend, environment: str, block: str) -> str:
    values = backend.read_outputs(environment, block).unmasked()
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


class Deployment:
    """The block in its environment: Terraform, its record, its dependents."""

    def __init__(self, subject: Subject, ports: Ports) -> None:
        self.subject = subject
        self.ports = ports
        self.say = ports.say
        self.timer = ports.timer

    def plan(self, targets: Sequence[str] = ()) -> Plan:
        with self.timer.timed("terraform"):
            return self.ports.terraform.plan(targets=targets)

    def apply(self, plan: Plan | None = None, targets: Sequence[str] = ()) -> None:
        with self.timer.timed("terraform"):
            self.ports.terraform.apply(plan, targets=targets)

    def outputs_digest(self) -> str:
        return _outputs_digest(self.ports.backend, self.subject.environment, self.subject.block)

    def write_record(self) -> None:
        """The deployment record names the target version (with the outputs now in state)."""
        backend, subject = self.ports.backend, self.subject
        if self.ports.write_record is not None:
            self.ports.write_record(subject.target)
            return
        backend.put_record(new_record(
            subject.environment, subject.block, subject.target,
            outputs=backend.read_outputs(subject.environment, subject.block),
            terraform_version=self.ports.terraform_version()))

    def reapply_dependents(self, digest_before: str,
                           journal: Journal | None = None) -> list[str]:
        """Re-apply deployed dependents when this block's outputs changed.

        With a journal: a refused stateful dependent completes the upgrade (a resume would be
        refused again); any other failure marks it failed, so that ``--resume`` retries the
        re-apply once the cause is fixed.
        """
        if self.outputs_digest() == digest_before:
            return []
        subject = self.subject
        try:
            return self.ports.reapply_dependents()
        except DependentsRefused:
            if journal is not None:
                journal.complete()
            raise
        except InfrablocksError as exc:
            if journal is None:
                raise
            journal.fail(None, Step.DEPENDENTS, str(exc))
            raise InfrablocksError(
                f"{subject.block} is at {subject.target} in {subject.environment}, but "
                f"re-applying its dependents failed: {exc}",
                hint=f"fix the cause, then: doit upgrade {subject.block} --env "
                     f"{subject.environment} --resume") from exc


class PlainDriver(Deployment):
    """Nothing to roll: one apply, a plan that must be empty, the record, the dependents."""

    def run(self, plan: Plan, digest_before: str) -> list[str]:
        """Apply ``plan`` (the saved plan the engine classified); the dependents re-applied."""
        subject = self.subject
        if plan.has_changes:
            self.say(f"apply: {plan.summary()}")
            self.apply(plan)
        left = self.plan()
        if left.has_changes:
            raise InfrablocksError(f"changes were left behind after the apply of "
                                   f"{subject.block} {subject.target}: {left.summary()}")
        self.write_record()
        return self.reapply_dependents(digest_before)


class RollingDriver(Deployment):
    """One unit at a time (see the module docstring), journaled, through the interfaces."""

    def __init__(self, subject: Subject, ports: Ports, *, declaration: RollingDeclaration,
                 ops: CloudOps, check: Callable[[], ServiceCheck],
                 fault: FaultHook = NO_FAULTS) -> None:
        super().__init__(subject, ports)
        self.declaration = declaration
        self.ops = ops
        self.fault = fault
        self._build_check = check
        self._check: ServiceCheck | None = None
        self.unit_reports: dict[int, dict[str, Any]] = {}
        self.notes: list[str] = []

    # -- observing -----------------------------------------------------------------------------

    def check(self) -> ServiceCheck:
        if self._check is None:
            self._check = self._build_check()
        return self._check

    def members(self, with_logs: bool = True) -> list[Member]:
        """The instance group as the block's state records it (with console logs)."""
        subject = self.subject
        state = self.ports.backend.read_state(subject.environment, subject.block)
        members = members_from_state(state, self.declaration)
        if with_logs:
            for member in members:
                try:
                    member.console_log = self.ops.describe_instance(member.instance_id).console_log
                except CloudNotFoundError:
                    member.console_log = None
        return members

    def member(self, index: int) -> Member:
        for member in self.members():
            if member.index == index:
                return member
        raise InfrablocksError(f"{self.subject.block} has no member {index} in its state")

    def unit_facts(self, index: int, *, changes: bool, down: bool = False,
                   instance_made: bool = False) -> UnitFacts:
        """What the decider needs about unit ``index`` (``changes``: the plan changes it;
        ``instance_made``: it keeps the instance and only creates the attachment)."""
        old = next((m for m in self.members(with_logs=False) if m.index == index), None)
        stopped = False
        if down and old is not None:
            try:
                stopped = self.ops.describe_instance(old.instance_id).state == "stopped"
            except CloudOpsError:
                stopped = False
        return UnitFacts(index, changes=changes, present=old is not None, down=down,
                         stopped=stopped, instance_made=instance_made)

    def targets(self, index: int) -> list[str]:
        """The unit's resource addresses: ``instances[i]``, ``attachments[i]`` and, where the
        declaration names them, ``interfaces[i]``."""
        declaration = self.declaration
        return [a for a in (declaration.instance_address(index),
                            declaration.attachment_address(index),
                            declaration.interface_address(index)) if a]

    # -- gates and halts -------------------------------------------------------------------------

    def gate(self, probe: Callable[[], GateResult], timeout: float
             ) -> tuple[GateResult, float]:
        with self.timer.timed("gates"):
            return poll_gate(probe, timeout, self.declaration.poll_interval)

    def halt(self, journal: Journal | None, index: int | None, step: str,
             result: GateResult, remaining: Sequence[int]) -> UpgradeHalted:
        """Journal the failure; the error naming the unit, step, evidence, what is untouched
        and where the logs are."""
        subject = self.subject
        if journal is not None:
            journal.fail(index, step, result.summary, result.evidence)
        members = {m.index: m for m in self.members()}
        who = members.get(index) if index is not None else None
        logs = [m.console_log for m in members.values() if m.console_log]
        logs.append(self.ports.log_dir)
        evidence = json.dumps(result.evidence, indent=2, sort_keys=True, default=str)
        where = (f"unit {index}" + (f" ({who.name})" if who else "")) if index is not None \
            else "the final phase"
        message = (f"upgrade of {subject.block} to {subject.target} in {subject.environment} "
                   f"halted at {where}, step {step}: {result.summary}\n"
                   f"evidence:\n{evidence}\n"
                   f"units not started (untouched): "
                   f"{', '.join(map(str, remaining)) or 'none'}\n"
                   "logs:\n  " + "\n  ".join(logs))
        return UpgradeHalted(
            message, failure={"unit": index, "step": str(step), "summary": result.summary,
                              "evidence": result.evidence, "logs": logs},
            hint=f"fix the cause and continue: doit upgrade {subject.block} --env "
                 f"{subject.environment} --resume; or put the member back on "
                 f"{subject.current}: --rollback-failed")

    # -- before the first unit -------------------------------------------------------------------

    def pre_gate(self, members: list[Member], down: Sequence[int] = ()) -> None:
        """Refuse a degraded cluster before changing anything.

        Members in ``down`` (a repair) are not asked about; the cluster check is then skipped
        (a service whose member is down is not healthy), and the gates after the down units
        are what must pass before any other unit rolls.
        """
        subject = self.subject
        watched = [m for m in members if m.index not in down]

        def not_running() -> list[GateResult]:
            return [r for r in (instance_running(self.ops, m) for m in watched) if not r.ok]

        def settled(bad: list[GateResult]) -> bool:
            # a member still booting is waited for; a stopped one refused at once
            return not bad or not all(r.evidence.get("state") in ("pending", "running")
                                      for r in bad)

        with self.timer.timed("gates"):
            bad = poll(not_running, settled, timeout=PRE_GATE_TIMEOUT,
                       interval=self.declaration.poll_interval).value
        if bad:
            raise UpgradeRefused(
                f"{subject.block} in {subject.environment} is degraded; nothing was changed: "
                + "; ".join(r.summary for r in bad),
                hint=f"repair it first: `doit create {subject.block} --env "
                     f"{subject.environment}` brings the members that are down back one at a "
                     "time, on their own volumes; then upgrade")
        if down:
            self.say(f"members down, rolled first: {', '.join(map(str, sorted(down)))}")
            return
        health, _ = self.gate(lambda: self.check().cluster_health(members),
                              min(PRE_GATE_TIMEOUT, self.declaration.timeout("healthy")))
        if not health.ok:
            evidence = json.dumps(health.evidence, indent=2, sort_keys=True, default=str)
            raise UpgradeRefused(
                f"{subject.block} in {subject.environment} is not healthy; nothing was "
                f"changed: {health.summary}\nevidence:\n{evidence}",
                hint="repair the cluster first, then upgrade")
        self.say(f"cluster healthy: {health.summary}")

    def leader_index(self, members: list[Member]) -> int | None:
        """The leading member's index when the order is ``leader-last`` (else None)."""
        if self.declaration.order != "leader-last":
            return None
        leader = self.check().leader(members)
        return leader.index if leader else None

    def write_markers(self, members: list[Member], order: Sequence[int]) -> dict[int, str]:
        """A marker file on each unit's volume, checked after its replacement (where the
        platform can look inside volumes)."""
        write = getattr(self.ops, "write_volume_marker", None)
        markers: dict[int, str] = {}
        if write is None:
            return markers
        for member in members:
            if member.index in order and member.volume_id:
                markers[member.index] = text = f"{member.name} {uuid.uuid4().hex}\n"
                write(member.volume_id, self.declaration.volume_marker, text)
        return markers

    # -- the stages --------------------------------------------------------------------------------

    def drive(self, journal: Journal, facts: Callable[[int], UnitFacts],
              digest_before: str) -> list[str]:
        """Run the journal's remaining stages (``decide.next_stage``) to the end; the
        dependents re-applied. ``facts(index)``: what is known about a unit before it rolls."""
        dependents: list[str] = []
        while (stage := next_stage(journal)) is not DONE:
            if isinstance(stage, UnitStage):
                self.run_unit(journal, facts(stage.index), remaining=stage.remaining,
                              position=stage.label)
            elif isinstance(stage, PhaseStage) and stage.phase is Phase.FINAL_APPLY:
                self.final_apply(journal)
            elif isinstance(stage, PhaseStage) and stage.phase is Phase.RECORD:
                self.record(journal)
            else:
                dependents = self.reapply_dependents(digest_before, journal)
                journal.complete()
        return dependents

    def run_unit(self, journal: Journal, facts: UnitFacts, *, remaining: Sequence[int],
                 position: str, gate_first: bool = True) -> None:
        """The unit's remaining steps (``decide.unit_steps``), each journaled; the unit done."""
        index = facts.index
        old = next((m for m in self.members() if m.index == index), None)
        name = old.name if old else self.declaration.instance_address(index)
        report = self.unit_reports.setdefault(index, {"index": index, "steps": {}})
        report["member"] = name
        steps = unit_steps(facts, journal.steps(index), gate_first=gate_first,
                           leader_last=self.declaration.order == "leader-last")
        for step in steps:
            seconds, details = self._act(journal, step, index, old, remaining, report)
            report["steps"][str(step)] = round(seconds, 2)
            journal.step_done(index, step, seconds, **details)
            self.say(f"[{position} {name}] {step} ✓ ({seconds:.1f}s)")
            self.fault(step, index)
        journal.finish_unit(index)

    def _act(self, journal: Journal, step: UnitStep, index: int, old: Member | None,
             remaining: Sequence[int], report: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """Do one step; its seconds and the details to journal. A failure halts."""
        declaration = self.declaration
        if isinstance(step, Gate):
            result, seconds = self.gate(self._probe(step, index, journal),
                                        declaration.timeout(step.timeout_name))
            if not result.ok:
                untouched = [index, *remaining] if step is Gate.CLUSTER else remaining
                raise self.halt(journal, index, step, result, untouched)
            return seconds, {}
        if step is Action.APPLY:
            with self.timer.timed("terraform") as section:
                try:
                    self.ports.terraform.apply(targets=self.targets(index))
                except InfrablocksError as exc:
                    raise self.halt(journal, index, step, GateResult(False, str(exc), {}),
                                    remaining) from exc
            return section.seconds, {"new_instance": self.member(index).instance_id}
        if old is None:  # the decider asks for the other actions only for a member in state
            raise InfrablocksError(f"{self.subject.block} has no member {index} to {step}")
        if step is Action.MOVE_LEADER:
            return self._move_leader(old, report), {}
        if step is Action.STOP:
            # (an instance already gone — a crashed run's partial apply — is recreated later)
            with self.timer.timed("stop") as section, contextlib.suppress(CloudNotFoundError):
                self.ops.stop_instance(old.instance_id, declaration.timeout("stop"))
            return section.seconds, {"old_instance": old.instance_id}
        with self.timer.timed("start") as section:   # Action.START
            self.ops.start_instance(old.instance_id, declaration.timeout("running"))
        return section.seconds, {}

    def _probe(self, gate: Gate, index: int, journal: Journal) -> Callable[[], GateResult]:
        check = self.check()
        if gate is Gate.CLUSTER:
            members = self.members()
            return lambda: check.cluster_health(members)
        member = self.member(index)
        if gate is Gate.RUNNING:
            return lambda: instance_running(self.ops, member)
        if gate is Gate.VOLUME:
            marker = journal.marker(index)
            return lambda: volume_back(self.ops, member, self.declaration.volume_marker, marker)
        if gate is Gate.REJOIN:
            return lambda: check.member_healthy(member, self.members())
        return lambda: check.cluster_health(self.members())

    def _move_leader(self, member: Member, report: dict[str, Any]) -> float:
        """Hand leadership to another member if ``member`` leads; the seconds it took."""
        started = time.monotonic()
        check = self.check()
        members = self.members()
        leader = check.leader(members)
        if leader is not None and leader.index == member.index:
            check.move_leader_off(member, members)
            moved, _ = poll_gate(lambda: _not_leader(check, member, self.members()),
                                 LEADER_MOVE_TIMEOUT, self.declaration.poll_interval)
            report["leader_moved"] = moved.ok
            if not moved.ok:
                self.notes.append(f"leadership did not move off {member.name}: "
                                  f"{moved.summary}")
        seconds = time.monotonic() - started
        self.timer.add("gates", seconds)
        return seconds

    def final_apply(self, journal: Journal) -> None:
        """A full apply of the rest, then a plan that must be empty."""
        journal.set_phase(Phase.FINAL_APPLY)
        plan = self.plan()
        if plan.has_changes:
            self.say(f"final apply: {plan.summary()}")
            self.apply(plan)
        self.fault(Step.FINAL_APPLY)
        check = self.plan() if plan.has_changes else plan  # an empty plan needs no second look
        if check.has_changes:
            left = [f"{c.address} ({c.action})" for c in check.changes] or ["outputs"]
            raise self.halt(journal, None, Step.EMPTY_PLAN, GateResult(
                False, "changes were left behind: " + ", ".join(left), {"changes": left}), [])
        journal.set_phase(Phase.RECORD)

    def record(self, journal: Journal) -> None:
        """The record names the target version; the journal moves on to the dependents
        ("completed" only once they are re-applied: a crash before that is resumed into the
        re-apply, which nothing else would do later)."""
        self.write_record()
        journal.set_phase(Phase.DEPENDENTS)
        subject = self.subject
        self.say(f"{subject.block} is at {subject.target} in {subject.environment}")
        self.fault(Step.RECORD)


def _not_leader(check: ServiceCheck, member: Member, members: list[Member]) -> GateResult:
    leader = check.leader(members)
    if leader is None:
        return GateResult.failed("no leader yet")
    if leader.index == member.index:
        return GateResult.failed(f"{member.name} still leads")
    return GateResult.passed(f"{leader.name} leads")
