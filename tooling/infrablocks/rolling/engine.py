"""The rolling-upgrade engine: one unit at a time, gates between, a journal after every step.

Platform- and service-neutral: the platform is a ``CloudOps``, the service a ``ServiceCheck``.
Per unit (an instance and its volume attachment, replaced together)::

    gate (cluster healthy) → move leadership off (if it leads) → stop the instance
    → targeted apply (instance[i], attachment[i]) → gates: running, volume back with its data,
      member rejoined, cluster healthy

Units go in index order, the leader last (``order = "leader-last"``). After the last unit: a
full apply of whatever else changed, then a plan that must be empty, then the deployment record.
A failed gate stops the upgrade with the remaining units untouched (``UpgradeHalted``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.cloud.ops import CloudNotFoundError
from infrablocks.errors import InfrablocksError, UsageError
from infrablocks.health.base import CheckContext, GateResult, Member
from infrablocks.health.instance import instance_running, volume_back
from infrablocks.rolling.faults import maybe_die
from infrablocks.rolling.gates import poll_gate
from infrablocks.rolling.journal import Journal
from infrablocks.rolling.plan import (
    RollingPlan,
    RollingUnit,
    classify,
    members_from_state,
    unit_for_index,
)
from infrablocks.rolling.target import UpgradeRefused, choose_target
from infrablocks.timing import PhaseTimer

if TYPE_CHECKING:
    from infrablocks.cloud.ops import CloudOps
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.health.base import ServiceCheck
    from infrablocks.registry import BlockVersion
    from infrablocks.rolling.declaration import RollingDeclaration
    from infrablocks.terraform.driver import Terraform

Say = Callable[[str], None]

UNIT_STEPS = ("gate", "move-leader", "stop", "apply")
UNIT_GATES = ("running", "volume", "rejoin", "healthy")
PRE_GATE_TIMEOUT = 20.0   # a cluster must be healthy within this to start at all
STATE_LOCK_WAIT = "300s"  # how long Terraform waits for a state lock another run holds


class UpgradeHalted(InfrablocksError):
    """A gate failed (or Terraform did): the upgrade stopped, remaining units untouched."""

    def __init__(self, message: str, *, failure: dict[str, Any], hint: str | None = None,
                 outcome: UpgradeOutcome | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failure = failure
        self.outcome = outcome


@dataclass
class UpgradeOutcome:
    block: str
    environment: str
    from_version: str
    to_version: str
    mode: str = "rolling"    # up-to-date | dry-run | plain | rolling | rolled-back
    plan: RollingPlan | None = None
    order: list[int] = field(default_factory=list)
    members: dict[int, str] = field(default_factory=dict)     # index → member name
    pre_health: str | None = None
    units: list[dict[str, Any]] = field(default_factory=list)  # per unit: index, steps, seconds
    dependents: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"block": self.block, "environment": self.environment,
                "from_version": self.from_version, "to_version": self.to_version,
                "mode": self.mode, "plan": self.plan.to_json() if self.plan else None,
                "order": list(self.order), "members": {str(k): v for k, v in
                                                       self.members.items()},
                "pre_health": self.pre_health, "units": self.units,
                "dependents": list(self.dependents), "timings": dict(self.timings),
                "notes": list(self.notes)}


def outputs_digest(workspace: Workspace, environment: str, block: str) -> str:
    values = workspace.backend.read_outputs(environment, block).unmasked()
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------ entry point

def upgrade(workspace: Workspace, block: str, environment: str, *, to: str | None = None,
            dry_run: bool = False, resume: bool = False, rollback_failed: bool = False,
            ops: CloudOps | None = None, say: Say | None = None) -> UpgradeOutcome:
    """Upgrade ``block`` in ``environment`` (see the module docstring); the outcome or a raise.

    ``--resume`` continues the journaled upgrade; ``--rollback-failed`` puts the unit whose gate
    failed back on the version it came from. Holds the block's lock throughout.
    """
    if sum((dry_run, resume, rollback_failed)) > 1:
        raise UsageError("--dry-run, --resume and --rollback-failed exclude each other")
    if ops is None:
        ops = workspace.platform(environment).ops
    say = say or (lambda text: None)
    backend = workspace.backend
    workspace.registry.block(block)
    if dry_run:
        journal = Journal.load(backend, environment, block)
        choice = choose_target(workspace, environment, block, to)
        engine = RollingEngine(workspace, environment, choice.current, choice.target, ops, say)
        if journal is not None and journal.active:
            engine.notes.append(f"an upgrade to {journal.to_version} did not finish "
                                f"({journal.status}): `--resume` would continue it")
        return engine.dry_run()
    with backend.acquire_lock(environment, block, "upgrade") as lock:
        if lock.note:
            say(lock.note)
        journal = Journal.load(backend, environment, block)
        registry = workspace.registry
        if rollback_failed:
            if journal is None or journal.status != "failed" or journal.failure is None:
                raise UsageError(f"no failed upgrade of {block} in {environment} to roll back"
                                 + (f" (last upgrade: {journal.status})" if journal else ""))
            engine = RollingEngine(workspace, environment,
                                   registry.block_version(block, journal.from_version),
                                   registry.block_version(block, journal.to_version), ops, say)
            return engine.rollback_failed(journal)
        if resume:
            if journal is None or not journal.active:
                raise UsageError(f"no interrupted upgrade of {block} in {environment} to resume"
                                 + (f" (last upgrade: {journal.status})" if journal else ""))
            if to is not None and to != journal.to_version:
                raise UsageError(f"the interrupted upgrade goes to {journal.to_version}, "
                                 f"not {to}", hint="resume without --to")
            engine = RollingEngine(workspace, environment,
                                   registry.block_version(block, journal.from_version),
                                   registry.block_version(block, journal.to_version), ops, say)
            return _move_pin(workspace, engine.run(journal), say)
        if journal is not None and journal.active:
            raise UpgradeRefused(
                f"an upgrade of {block} in {environment} to {journal.to_version} did not "
                f"finish (status {journal.status})",
                hint=f"continue it: doit upgrade {block} --env {environment} --resume; or put "
                     "the failed member back: --rollback-failed")
        choice = choose_target(workspace, environment, block, to)
        engine = RollingEngine(workspace, environment, choice.current, choice.target, ops, say)
        if not choice.changes_version:
            return engine.outcome("up-to-date")
        return _move_pin(workspace, engine.run(None), say)


def _move_pin(workspace: Workspace, outcome: UpgradeOutcome, say: Say) -> UpgradeOutcome:
    """After a successful upgrade of a pinned block, pin the version it now runs.

    The pin is what every later ``doit create`` in the environment resolves to; leaving the old
    one would make the next create refuse the upgraded block.
    """
    from infrablocks.registry_edit import set_pin

    pin = workspace.pins(outcome.environment).get(outcome.block)
    if pin is None or str(pin) == outcome.to_version:
        return outcome
    set_pin(workspace.registry.path, outcome.environment, outcome.block, outcome.to_version)
    note = (f"blocks.toml: environments.{outcome.environment}.pins.{outcome.block} "
            f"{pin} → {outcome.to_version}")
    outcome.notes.append(note)
    say(note)
    return outcome


# ------------------------------------------------------------------------------ the engine

class RollingEngine:
    def __init__(self, workspace: Workspace, environment: str, current: BlockVersion,
                 target: BlockVersion, ops: CloudOps, say: Say) -> None:
        from infrablocks.deploy.block_ops import BlockRun
        from infrablocks.rolling.declaration import declaration_for

        self.workspace = workspace
        self.environment = environment
        self.block = target.block
        self.current = current
        self.target = target
        self.ops = ops
        self.say = say
        self.clock = PhaseTimer()
        self.notes: list[str] = []
        self.subnet = workspace.subnet(environment)
        self.run_for = lambda version: BlockRun(workspace, environment, version, self.subnet)
        stateful = workspace.registry.blocks[self.block].stateful
        self.declaration: RollingDeclaration | None = (
            declaration_for(workspace.registry, target) if stateful else None)
        self._terraform: Terraform | None = None
        self.workdir: Path | None = None
        self._check: ServiceCheck | None = None
        self.unit_reports: dict[int, dict[str, Any]] = {}

    # -- helpers ---------------------------------------------------------------------------

    def outcome(self, mode: str, plan: RollingPlan | None = None,
                order: list[int] | None = None) -> UpgradeOutcome:
        members = {}
        if self.declaration is not None and mode != "up-to-date":
            members = {m.index: m.name for m in self.members(with_logs=False)}
        return UpgradeOutcome(
            self.block, self.environment, str(self.current.version), str(self.target.version),
            mode=mode, plan=plan, order=list(order or []), members=members,
            units=[self.unit_reports[i] for i in (order or []) if i in self.unit_reports],
            timings=self.clock.report(), notes=list(self.notes))

    def terraform(self) -> Terraform:
        if self._terraform is None:
            self._terraform = self.workspace.terraform(self.environment, self.block)
            # A run killed during an apply leaves that Terraform finishing on its own (it runs
            # in its own session): a resume waits for its state lock instead of failing.
            self._terraform.env_extra.update({
                f"TF_CLI_ARGS_{command}": f"-lock-timeout={STATE_LOCK_WAIT}"
                for command in ("plan", "apply")})
        return self._terraform

    def prepare(self, version: BlockVersion) -> Path:
        """Images built, working directory holding ``version``, Terraform initialised."""
        from infrablocks.deploy.block_ops import ensure_images
        from infrablocks.runner import CancelToken
        from infrablocks.terraform.init import ensure_init

        run = self.run_for(version)
        with self.clock.timed("images"):
            ensure_images(run, CancelToken())
        self.workdir = run.prepare()
        with self.clock.timed("terraform"):
            ensure_init(self.workspace.repo_root, self.terraform(), self.workdir)
        return self.workdir

    def plan(self):  # -> Plan
        assert self.workdir is not None
        with self.clock.timed("terraform"):
            return self.terraform().plan(self.workdir)

    def classify(self, plan: Any) -> RollingPlan:
        if self.declaration is None:
            return RollingPlan([], [f"{c.address} ({c.action})" for c in plan.changes],
                               plan.has_changes)
        return classify(plan, self.declaration)

    def members(self, with_logs: bool = True) -> list[Member]:
        assert self.declaration is not None
        state = self.workspace.backend.read_state(self.environment, self.block)
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
        raise InfrablocksError(f"{self.block} has no member {index} in its state")

    def check(self) -> ServiceCheck:
        if self._check is None:
            from infrablocks.health import build_check

            assert self.declaration is not None
            outputs = self.workspace.backend.read_outputs(self.environment, self.block)
            self._check = build_check(self.declaration.check, CheckContext(
                block=self.block, environment=self.environment,
                options=dict(self.declaration.check_options), outputs=outputs.unmasked(),
                block_dir=str(self.target.path)))
        return self._check

    def gate(self, name: str, probe: Callable[[], GateResult], timeout: float
             ) -> tuple[GateResult, float]:
        assert self.declaration is not None
        with self.clock.timed("gates"):
            return poll_gate(probe, timeout, self.declaration.poll_interval)

    def halt(self, journal: Journal | None, index: int | None, step: str,
             result: GateResult, remaining: list[int]) -> UpgradeHalted:
        from infrablocks.terraform.toolchain import terraform_log_dir

        if journal is not None:
            journal.fail(index, step, result.summary, result.evidence)
        members = {m.index: m for m in self.members()} if self.declaration else {}
        who = members.get(index) if index is not None else None
        logs = [m.console_log for m in members.values() if m.console_log]
        logs.append(str(terraform_log_dir(self.workspace.repo_root)))
        evidence = json.dumps(result.evidence, indent=2, sort_keys=True, default=str)
        where = (f"unit {index}" + (f" ({who.name})" if who else "")) if index is not None \
            else "the final phase"
        message = (f"upgrade of {self.block} to {self.target.version} in {self.environment} "
                   f"halted at {where}, step {step}: {result.summary}\n"
                   f"evidence:\n{evidence}\n"
                   f"units not started (untouched): "
                   f"{', '.join(map(str, remaining)) or 'none'}\n"
                   "logs:\n  " + "\n  ".join(logs))
        return UpgradeHalted(
            message, failure={"unit": index, "step": step, "summary": result.summary,
                              "evidence": result.evidence, "logs": logs},
            hint=f"fix the cause and continue: doit upgrade {self.block} --env "
                 f"{self.environment} --resume; or put the member back on "
                 f"{self.current.version}: --rollback-failed")

    # -- dry run -----------------------------------------------------------------------------

    def dry_run(self) -> UpgradeOutcome:
        if self.current.version == self.target.version:
            return self.outcome("up-to-date")
        self.prepare(self.target)
        rolling = self.classify(self.plan())
        if not rolling.units:
            return self.outcome("plain", rolling)
        members = self.members()
        health = self.check().cluster_health(members)
        leader = self.check().leader(members) if self.declaration.order == "leader-last" \
            else None  # type: ignore[union-attr]
        from infrablocks.rolling.plan import order_units

        order = [u.index for u in order_units(rolling.units, leader.index if leader else None,
                                              self.declaration.order)]  # type: ignore[union-attr]
        outcome = self.outcome("dry-run", rolling, order)
        outcome.pre_health = ("healthy: " if health.ok else "NOT healthy: ") + health.summary
        return outcome

    # -- the upgrade ---------------------------------------------------------------------------

    def run(self, journal: Journal | None) -> UpgradeOutcome:
        from infrablocks.rolling.plan import order_units

        digest_before = outputs_digest(self.workspace, self.environment, self.block)
        self.say(f"plan {self.block} {self.current.version} → {self.target.version}")
        self.prepare(self.target)
        plan = self.plan()
        rolling = self.classify(plan)
        if journal is None and not rolling.units:
            return self.plain(rolling, digest_before)
        units = {u.index: u for u in rolling.units}
        if journal is None:
            members = self.members()
            self.pre_gate(members)
            leader = (self.check().leader(members)
                      if self.declaration.order == "leader-last" else None)  # type: ignore
            order = [u.index for u in order_units(rolling.units,
                                                  leader.index if leader else None,
                                                  self.declaration.order)]  # type: ignore
            journal = Journal.start(self.workspace.backend, self.environment, self.block,
                                    from_version=str(self.current.version),
                                    to_version=str(self.target.version), order=order,
                                    markers=self.write_markers(members, order))
            journal.data["outputs_digest"] = digest_before
            journal.save()
            self.say(f"rolling {len(order)} units, in order: " + ", ".join(
                f"{i} ({m.name})" for i in order for m in members if m.index == i))
        else:
            journal.set_status("running")
            self.say(f"resuming: units done "
                     f"{[i for i in journal.order if journal.unit_done(i)]}")
            digest_before = journal.data.get("outputs_digest", digest_before)
        order = journal.order
        pending = [i for i in order if not journal.unit_done(i)]
        for position, index in enumerate(pending):
            unit = units.get(index) or unit_for_index(plan, self.declaration, index)  # type: ignore[arg-type]
            self.run_unit(journal, index, unit,
                          remaining=pending[position + 1:],
                          position=f"{order.index(index) + 1}/{len(order)}")
        self.finish(journal)
        outcome = self.outcome("rolling", rolling, order)
        outcome.dependents = self.reapply_dependents(digest_before, journal)
        journal.set_status("completed")
        return outcome

    def pre_gate(self, members: list[Member]) -> None:
        """Refuse a degraded cluster before changing anything."""
        assert self.declaration is not None
        deadline = time.monotonic() + PRE_GATE_TIMEOUT
        with self.clock.timed("gates"):
            while True:  # a member still booting is waited for; a stopped one refused at once
                bad = [r for r in (instance_running(self.ops, m) for m in members) if not r.ok]
                booting = all(r.evidence.get("state") in ("pending", "running") for r in bad)
                if not bad or not booting or time.monotonic() > deadline:
                    break
                time.sleep(self.declaration.poll_interval)
        if bad:
            raise UpgradeRefused(
                f"{self.block} in {self.environment} is degraded; nothing was changed: "
                + "; ".join(r.summary for r in bad),
                hint="bring every member back (or repair it with `doit create`) first")
        health, _ = self.gate("pre", lambda: self.check().cluster_health(members),
                              min(PRE_GATE_TIMEOUT, self.declaration.timeout("healthy")))
        if not health.ok:
            evidence = json.dumps(health.evidence, indent=2, sort_keys=True, default=str)
            raise UpgradeRefused(
                f"{self.block} in {self.environment} is not healthy; nothing was changed: "
                f"{health.summary}\nevidence:\n{evidence}",
                hint="repair the cluster first, then upgrade")
        self.say(f"cluster healthy: {health.summary}")

    def write_markers(self, members: list[Member], order: list[int]) -> dict[int, str]:
        """A marker file on each unit's volume, checked after its replacement (where the
        platform can look inside volumes)."""
        assert self.declaration is not None
        write = getattr(self.ops, "write_volume_marker", None)
        markers: dict[int, str] = {}
        if write is None:
            return markers
        for member in members:
            if member.index in order and member.volume_id:
                markers[member.index] = text = f"{member.name} {uuid.uuid4().hex}\n"
                write(member.volume_id, self.declaration.volume_marker, text)
        return markers

    def run_unit(self, journal: Journal, index: int, unit: RollingUnit | None, *,
                 remaining: list[int], position: str, skip_gate: bool = False) -> None:
        assert self.declaration is not None and self.workdir is not None
        declaration = self.declaration
        report = self.unit_reports.setdefault(index, {"index": index, "steps": {}})
        steps = journal.steps(index)
        # An apply interrupted half-way (Ctrl-C) may have removed the old instance from the
        # state already: then there is nothing to gate, move or stop; the apply creates it.
        old = next((m for m in self.members() if m.index == index), None)
        name = old.name if old else declaration.instance_address(index)
        report["member"] = name
        label = f"[{position} {name}]"
        check = self.check()

        def done(step: str, seconds: float, **details: Any) -> None:
            report["steps"][step] = round(seconds, 2)
            journal.step_done(index, step, seconds, **details)
            self.say(f"{label} {step} ✓ ({seconds:.1f}s)")
            maybe_die(step, index)

        if unit is not None and old is not None:
            member = old
            if not steps and not skip_gate:  # resumed half-way: the cluster lacks this member
                members = self.members()
                result, seconds = self.gate("gate", lambda: check.cluster_health(members),
                                            declaration.timeout("healthy"))
                if not result.ok:
                    raise self.halt(journal, index, "gate", result, [index, *remaining])
                done("gate", seconds)
            if declaration.order == "leader-last" and "move-leader" not in steps:
                started = time.monotonic()
                members = self.members()
                leader = check.leader(members)
                if leader is not None and leader.index == index:
                    check.move_leader_off(member, members)
                    moved, _ = poll_gate(lambda: _not_leader(check, member, self.members()),
                                         30.0, declaration.poll_interval)
                    report["leader_moved"] = moved.ok
                    if not moved.ok:
                        self.notes.append(f"leadership did not move off {member.name}: "
                                          f"{moved.summary}")
                self.clock.add("gates", time.monotonic() - started)
                done("move-leader", time.monotonic() - started)
            # (an instance already gone — a crashed run's partial apply — is recreated below)
            with self.clock.timed("stop") as timed, contextlib.suppress(CloudNotFoundError):
                self.ops.stop_instance(member.instance_id, declaration.timeout("stop"))
            done("stop", timed.seconds, old_instance=member.instance_id)
        if unit is not None:
            with self.clock.timed("terraform") as timed:
                try:
                    self.terraform().apply(self.workdir, targets=unit.targets())
                except InfrablocksError as exc:
                    raise self.halt(journal, index, "apply", GateResult(False, str(exc), {}),
                                    remaining) from exc
            member = self.member(index)
            done("apply", timed.seconds, new_instance=member.instance_id)
        member = self.member(index)
        gates: dict[str, tuple[Callable[[], GateResult], float]] = {
            "running": (lambda: instance_running(self.ops, member), declaration.timeout("running")),
            "volume": (lambda: volume_back(self.ops, member, declaration.volume_marker,
                                           journal.marker(index)), declaration.timeout("volume")),
            "rejoin": (lambda: check.member_healthy(member, self.members()),
                       declaration.timeout("rejoin")),
            "healthy": (lambda: check.cluster_health(self.members()),
                        declaration.timeout("healthy")),
        }
        for step, (probe, timeout) in gates.items():
            if step in journal.steps(index):
                continue
            result, seconds = self.gate(step, probe, timeout)
            if not result.ok:
                raise self.halt(journal, index, step, result, remaining)
            done(step, seconds)
        journal.finish_unit(index)

    def finish(self, journal: Journal) -> None:
        """Full apply of the rest, an empty plan, the record."""
        from infrablocks.state import new_record

        assert self.workdir is not None
        journal.set_phase("final-apply")
        plan = self.plan()
        if plan.has_changes:
            self.say(f"final apply: {plan.summary()}")
            with self.clock.timed("terraform"):
                self.terraform().apply(self.workdir, plan)
        maybe_die("final-apply")
        check = self.plan() if plan.has_changes else plan  # an empty plan needs no second look
        if check.has_changes:
            left = [f"{c.address} ({c.action})" for c in check.changes] or ["outputs"]
            raise self.halt(journal, None, "empty-plan", GateResult(
                False, "changes were left behind: " + ", ".join(left), {"changes": left}), [])
        journal.set_phase("record")
        backend = self.workspace.backend
        backend.put_record(new_record(
            self.environment, self.block, str(self.target.version),
            outputs=backend.read_outputs(self.environment, self.block),
            terraform_version=self.workspace.terraform_binary().version))
        # "completed" only once the dependents are re-applied (run): a crash before that is
        # resumed into the re-apply, which nothing else would do later.
        journal.set_phase("dependents")
        self.say(f"{self.block} is at {self.target.version} in {self.environment}")
        maybe_die("record")

    def plain(self, rolling: RollingPlan, digest_before: str) -> UpgradeOutcome:
        """No instance is replaced: an ordinary apply, the record, dependents."""
        from infrablocks.state import new_record

        assert self.workdir is not None
        plan = self.plan()
        if plan.has_changes:
            self.say(f"apply: {plan.summary()}")
            with self.clock.timed("terraform"):
                self.terraform().apply(self.workdir, plan)
        left = self.plan()
        if left.has_changes:
            raise InfrablocksError(f"changes were left behind after the apply of "
                                   f"{self.target.label}: {left.summary()}")
        backend = self.workspace.backend
        backend.put_record(new_record(
            self.environment, self.block, str(self.target.version),
            outputs=backend.read_outputs(self.environment, self.block),
            terraform_version=self.workspace.terraform_binary().version))
        outcome = self.outcome("plain", rolling)
        outcome.dependents = self.reapply_dependents(digest_before)
        return outcome

    def reapply_dependents(self, digest_before: str,
                           journal: Journal | None = None) -> list[str]:
        """Re-apply deployed dependents when this block's outputs changed.

        With a journal: a refused stateful dependent completes the upgrade (a resume would be
        refused again); any other failure marks it failed, so that ``--resume`` retries the
        re-apply once the cause is fixed.
        """
        if outputs_digest(self.workspace, self.environment, self.block) == digest_before:
            return []
        from infrablocks.rolling.dependents import DependentsRefused, reapply_dependents

        try:
            return reapply_dependents(self.workspace, self.environment, self.block, self.say,
                                      ops=self.ops)
        except DependentsRefused:
            if journal is not None:
                journal.set_status("completed")
            raise
        except InfrablocksError as exc:
            if journal is None:
                raise
            journal.fail(None, "dependents", str(exc))
            raise InfrablocksError(
                f"{self.block} is at {self.target.version} in {self.environment}, but "
                f"re-applying its dependents failed: {exc}",
                hint=f"fix the cause, then: doit upgrade {self.block} --env "
                     f"{self.environment} --resume") from exc

    # -- rollback ---------------------------------------------------------------------------------

    def rollback_failed(self, journal: Journal) -> UpgradeOutcome:
        """Put the failed unit back on the version it came from (same volume); gates again."""
        assert self.declaration is not None
        failure = journal.failure or {}
        index = failure.get("unit")
        if index is None:
            raise UsageError("the upgrade failed outside a unit (in its final phase): there is "
                             "no member to roll back", hint="--resume it instead")
        self.say(f"rolling unit {index} back to {self.current.version}")
        self.prepare(self.current)
        targets = [a for a in (self.declaration.instance_address(index),
                               self.declaration.attachment_address(index)) if a]
        with self.clock.timed("terraform"):
            plan = self.terraform().plan(self.workdir, targets=targets)  # type: ignore[arg-type]
        unit = RollingUnit(index, *targets) if plan.changes else None  # type: ignore[arg-type]
        journal.data["units"][str(index)] = {"steps": [], "done": False}
        journal.data["rollback"] = {"unit": index, "to": str(self.current.version)}
        journal.set_status("running")
        self.target, self.current = self.current, self.target
        try:
            self.run_unit(journal, index, unit, remaining=[], position="rollback",
                          skip_gate=True)
        finally:
            self.target, self.current = self.current, self.target
        journal.set_status("rolled-back")
        outcome = self.outcome("rolled-back", None, [index])
        outcome.notes.append(f"unit {index} is back on {self.current.version}; the deployment "
                             f"record still says {self.current.version}")
        return outcome


def _not_leader(check: ServiceCheck, member: Member, members: list[Member]) -> GateResult:
    leader = check.leader(members)
    if leader is None:
        return GateResult.failed("no leader yet")
    if leader.index == member.index:
        return GateResult.failed(f"{member.name} still leads")
    return GateResult.passed(f"{leader.name} leads")
