"""Rolling upgrades and rolls of stateful blocks: the entry points.

Platform- and service-neutral: the platform is a ``CloudOps`` (the environment's platform's,
``workspace.platform(env).ops``), the service a ``ServiceCheck``. Per unit (an instance and its
volume attachment, replaced together)::

    gate (cluster healthy) → move leadership off (if it leads) → stop the instance
    → targeted apply (instance[i], attachment[i]) → gates: running, volume back with its data,
      member rejoined, cluster healthy

Units go in index order, the leader last (``order = "leader-last"``). After the last unit: a
full apply of whatever else changed, then a plan that must be empty, then the deployment record.
A failed gate stops the upgrade with the remaining units untouched (``UpgradeHalted``).

This module only wires: it opens the journal, holds the block's lock, prepares the working
directory, and hands the work to ``rolling.driver`` (which acts) following ``rolling.decide``
(which decides). Entry points:

- :func:`upgrade` — ``doit upgrade``: to another version (or ``--dry-run``, ``--resume``,
  ``--rollback-failed``);
- :func:`roll` — roll chosen units of a deployed stateful block at its version (or another):
  members that are down replaced or restarted with their own volume, first and one at a time,
  each gated before the next; for ``doit create`` (issue 9).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from infrablocks.errors import InfrablocksError, UsageError
from infrablocks.health.base import CheckContext
from infrablocks.rolling.decide import UnitFacts, choose_mode, roll_order, units_outside
from infrablocks.rolling.driver import (
    BlockTerraform,
    Deployment,
    PlainDriver,
    Ports,
    RollingDriver,
    Subject,
)
from infrablocks.rolling.faults import NO_FAULTS, FaultHook
from infrablocks.rolling.journal import Journal
from infrablocks.rolling.outcome import UpgradeHalted, UpgradeOutcome, UpgradeRefused
from infrablocks.rolling.plan import (
    RollingPlan,
    classify,
    members_from_state,
    unit_for_index,
)
from infrablocks.rolling.states import JournalStatus, Mode, RollKind
from infrablocks.state.locks import DEFAULT_LOCK_TIMEOUT
from infrablocks.timing import PhaseTimer
from infrablocks.upgrade.target import choose_target, deployed_version

if TYPE_CHECKING:
    from infrablocks.cloud.ops import CloudOps
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.health.base import ServiceCheck
    from infrablocks.registry import BlockVersion
    from infrablocks.rolling.declaration import RollingDeclaration
    from infrablocks.state import StateBackend
    from infrablocks.terraform.driver import Terraform
    from infrablocks.terraform.plan import Plan

__all__ = ["STATE_LOCK_WAIT", "Connection", "RollingEngine", "UpgradeHalted", "UpgradeOutcome",
           "roll", "upgrade"]

Say = Callable[[str], None]

STATE_LOCK_WAIT = "300s"  # how long Terraform waits for a state lock another run holds


# ------------------------------------------------------------------------------ entry points

def upgrade(workspace: Workspace, block: str, environment: str, *, to: str | None = None,
            dry_run: bool = False, resume: bool = False, rollback_failed: bool = False,
            ops: CloudOps | None = None, fault: FaultHook = NO_FAULTS,
            say: Say | None = None,
            lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> UpgradeOutcome:
    """Upgrade ``block`` in ``environment`` (see the module docstring); the outcome or a raise.

    ``--resume`` continues the journaled upgrade; ``--rollback-failed`` puts the unit whose gate
    failed back on the version it came from. Holds the block's lock throughout, waiting up to
    ``lock_timeout`` seconds for it (``state.locks.acquire_waiting``: a dead holder's lock is
    taken over once the Terraform it left running exited). The version it applies must not be
    an edited released or deployed one in a persistent environment
    (``release.frozen.refuse_edited``, ``EditedVersionError``). ``ops`` defaults to the
    environment's platform's; ``fault`` is the test hook (``rolling.faults``, read from the
    environment by the command, never here).
    """
    if sum((dry_run, resume, rollback_failed)) > 1:
        raise UsageError("--dry-run, --resume and --rollback-failed exclude each other")
    workspace.registry.block(block)
    wiring = _Wiring(workspace, environment, block, ops, fault, say, lock_timeout)
    backend = workspace.backend
    if dry_run:
        wiring.read_only = True
        journal = Journal.load(backend, environment, block)
        choice = choose_target(workspace, environment, block, to)
        wiring.notes.extend(choice.notes)
        wiring.declaration(str(choice.target.version))   # a bad one: refused before any work
        if journal is not None and journal.active:
            wiring.notes.append(f"an upgrade to {journal.to_version} did not finish "
                                f"({journal.status}): `--resume` would continue it")
        return RollingEngine(wiring).dry_run(str(choice.current.version),
                                             str(choice.target.version))
    with wiring.lock("upgrade"):
        journal = Journal.load(backend, environment, block)
        if rollback_failed:
            if journal is None or journal.status != JournalStatus.FAILED \
                    or journal.failure is None:
                raise UsageError(f"no failed upgrade of {block} in {environment} to roll back"
                                 + (f" (last upgrade: {journal.status})" if journal else ""))
            wiring.refuse_edited(journal.from_version)
            return RollingEngine(wiring).rollback(journal)
        if resume:
            if journal is None or not journal.active:
                raise UsageError(f"no interrupted upgrade of {block} in {environment} to resume"
                                 + (f" (last upgrade: {journal.status})" if journal else ""))
            if to is not None and to != journal.to_version:
                raise UsageError(f"the interrupted upgrade goes to {journal.to_version}, "
                                 f"not {to}", hint="resume without --to")
            wiring.refuse_edited(journal.to_version)
            return _move_pin(workspace, RollingEngine(wiring).resume(journal), wiring.say)
        _refuse_unfinished(journal, block, environment)
        choice = choose_target(workspace, environment, block, to)
        wiring.notes.extend(choice.notes)
        wiring.declaration(str(choice.target.version))   # a bad one: refused before any work
        engine = RollingEngine(wiring)
        current, target = str(choice.current.version), str(choice.target.version)
        if not choice.changes_version:
            return engine.outcome(Mode.UP_TO_DATE, Subject(block, environment, current, target))
        wiring.refuse_edited(target)
        return _move_pin(workspace, engine.start(current, target, kind=RollKind.UPGRADE),
                         wiring.say)


def roll(workspace: Workspace, block: str, environment: str, *,
         units: Iterable[int] | None = None, down: Iterable[int] = (),
         version: str | None = None, resume: bool = False, hold_lock: bool = True,
         ops: CloudOps | None = None, fault: FaultHook = NO_FAULTS,
         say: Say | None = None,
         lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> UpgradeOutcome:
    """Roll units of the deployed stateful ``block`` with the rolling procedure: gates,
    journal, ``--resume``; the outcome (mode ``rolling``, or ``plain`` when nothing rolls).

    - ``version``: what to roll to (default: the deployed version — a repair or a drift fix);
    - ``units``: the unit indexes to roll (default: every unit the plan replaces). A plan that
      also replaces other units is refused (``UpgradeRefused``) before anything changes: the
      final full apply would replace them all at once;
    - ``down``: members known not to serve (a crashed instance). They roll first, one at a
      time, without the cluster gate before them; each is replaced (when the plan recreates
      it) or started again (a stopped instance with nothing to replace), keeps its volume, and
      must pass the gates — running, volume back, rejoined, cluster healthy — before the next
      unit. The check before starting then asks only the other members to be running;
    - ``resume``: continue an unfinished journal of the block instead of refusing it (it goes
      where it was going; ``units`` / ``down`` / ``version`` are not consulted then);
    - ``hold_lock``: False when the caller already holds the block's lock (``apply_block``);
      else it is waited for up to ``lock_timeout`` seconds, as :func:`upgrade` does.

    The record is written at the end (the target version), the dependents whose inputs changed
    are re-applied; pins in blocks.toml are left alone. Raises ``UsageError`` for a block
    version without a rolling declaration, ``UpgradeHalted`` when a gate fails (journal
    ``failed``: resume or ``doit upgrade --rollback-failed``).
    """
    workspace.registry.block(block)
    wiring = _Wiring(workspace, environment, block, ops, fault, say, lock_timeout)
    held = wiring.lock("roll") if hold_lock else contextlib.nullcontext()
    with held:
        journal = Journal.load(workspace.backend, environment, block)
        engine = RollingEngine(wiring)
        if resume and journal is not None and journal.active:
            return engine.resume(journal)
        _refuse_unfinished(journal, block, environment)
        current = str(deployed_version(workspace, environment, block).version)
        target = (str(workspace.registry.block_version(block, version).version)
                  if version is not None else current)
        if wiring.declaration(target) is None:
            raise UsageError(f"{block} {target} has no rolling declaration: nothing to roll",
                             hint=f"declare [blocks.{block}.rolling] in blocks.toml")
        wiring.refuse_edited(target)
        kind = RollKind.REPAIR if target == current else RollKind.UPGRADE
        return engine.start(current, target, kind=kind,
                            units=None if units is None else sorted(set(units)),
                            down=sorted(set(down)))


def _refuse_unfinished(journal: Journal | None, block: str, environment: str) -> None:
    if journal is not None and journal.active:
        raise UpgradeRefused(
            f"an upgrade of {block} in {environment} to {journal.to_version} did not "
            f"finish (status {journal.status})",
            hint=f"continue it: doit upgrade {block} --env {environment} --resume; or put "
                 "the failed member back: --rollback-failed")


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

class Connection(Protocol):
    """What the engine needs from its surroundings (``_Wiring`` on a workspace; in-memory
    fakes in the unit tests). Versions are the registry's version strings."""

    block: str
    environment: str
    backend: StateBackend
    timer: PhaseTimer
    notes: list[str]

    def say(self, text: str) -> None: ...

    def declaration(self, version: str) -> RollingDeclaration | None:
        """The version's rolling declaration; None when the block does not roll."""
        ...

    def prepare(self, version: str) -> BlockTerraform:
        """Images on the platform, the working directory at ``version``, Terraform ready."""
        ...

    def ports(self, terraform: BlockTerraform) -> Ports: ...

    def rolling_driver(self, subject: Subject, declaration: RollingDeclaration,
                       terraform: BlockTerraform) -> RollingDriver:
        """A driver for ``subject`` (its check built for ``subject.target``)."""
        ...


class RollingEngine:
    """The paths of an upgrade or roll, deciding with ``rolling.decide`` and acting with
    ``rolling.driver``; a fresh engine per command (and for a rollback)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def start(self, current: str, target: str, *, kind: RollKind,
              units: Sequence[int] | None = None, down: Sequence[int] = ()) -> UpgradeOutcome:
        """A new upgrade or roll: plan, then the plain path or a journaled roll."""
        connection = self.connection
        subject = Subject(connection.block, connection.environment, current, target)
        connection.say(f"plan {subject.block} {subject.current} → {subject.target}")
        terraform = connection.prepare(target)
        declaration = connection.declaration(target)
        if declaration is None:                       # a stateless block: one apply, always
            plain = PlainDriver(subject, connection.ports(terraform))
            digest_before = plain.outputs_digest()
            plan = plain.plan()
            return self._plain(plain, plan, _stateless_plan(plan), digest_before, None)
        driver = connection.rolling_driver(subject, declaration, terraform)
        digest_before = driver.outputs_digest()
        plan = driver.plan()
        rolling = classify(plan, declaration)
        requested = bool(down) or units is not None
        if choose_mode(rolling, resuming=False, requested=requested) is Mode.PLAIN:
            return self._plain(PlainDriver(subject, driver.ports), plan, rolling, digest_before,
                               declaration)
        outside = units_outside(rolling, units)
        if outside:
            raise UpgradeRefused(
                f"{subject.block} in {subject.environment}: the plan also replaces units "
                f"{', '.join(map(str, outside))}, which were not asked to roll; nothing was "
                "changed", hint="roll every unit the plan replaces (units=None)")
        members = driver.members()
        driver.pre_gate(members, down)
        chosen = list(units) if units is not None else [u.index for u in rolling.units]
        order = roll_order([*chosen, *down], down=down, order=declaration.order,
                           leader_index=driver.leader_index(
                               [m for m in members if m.index not in down]))
        journal = Journal.start(connection.backend, subject.environment, subject.block,
                                from_version=current, to_version=target, order=order,
                                markers=driver.write_markers(members, order), kind=kind,
                                down=down, outputs_digest=digest_before)
        connection.say(f"rolling {len(order)} unit{'' if len(order) == 1 else 's'}, in order: "
                       + ", ".join(f"{i} ({m.name})" for i in order
                                   for m in members if m.index == i))
        return self._drive(driver, journal, plan, rolling, digest_before)

    def resume(self, journal: Journal) -> UpgradeOutcome:
        """Continue a journaled roll where it stopped (``decide.next_stage``)."""
        connection = self.connection
        subject = Subject(connection.block, connection.environment, journal.from_version,
                          journal.to_version)
        connection.say(f"plan {subject.block} {subject.current} → {subject.target}")
        terraform = connection.prepare(subject.target)
        declaration = connection.declaration(subject.target)
        if declaration is None:
            raise InfrablocksError(
                f"the unfinished upgrade of {subject.block} goes to {subject.target}, which "
                "has no rolling declaration any more",
                hint=f"restore [blocks.{subject.block}.rolling] and resume")
        driver = connection.rolling_driver(subject, declaration, terraform)
        digest_before = driver.outputs_digest()
        plan = driver.plan()
        rolling = classify(plan, declaration)
        journal.resume()
        connection.say(f"resuming: units done "
                       f"{[i for i in journal.order if journal.unit_done(i)]}")
        return self._drive(driver, journal, plan, rolling,
                           journal.outputs_digest or digest_before)

    def _drive(self, driver: RollingDriver, journal: Journal, plan: Plan,
               rolling: RollingPlan, digest_before: str) -> UpgradeOutcome:
        units = {u.index: u for u in rolling.units}
        down = set(journal.down)

        def facts(index: int) -> UnitFacts:
            unit = units.get(index) or unit_for_index(plan, driver.declaration, index)
            instance_made = unit is not None and bool(unit.actions) and (
                driver.declaration.instance_address(index) not in unit.actions
                and all(action == "create" for action in unit.actions.values()))
            return driver.unit_facts(index, changes=unit is not None, down=index in down,
                                     instance_made=instance_made)

        dependents = driver.drive(journal, facts, digest_before)
        outcome = self.outcome(Mode.ROLLING, driver.subject, plan=rolling,
                               order=journal.order, driver=driver)
        outcome.dependents = dependents
        return outcome

    def _plain(self, plain: PlainDriver, plan: Plan, rolling: RollingPlan, digest_before: str,
               declaration: RollingDeclaration | None) -> UpgradeOutcome:
        """No unit to roll: the plain path on the plan already made."""
        dependents = plain.run(plan, digest_before)
        outcome = self.outcome(Mode.PLAIN, plain.subject, plan=rolling,
                               declaration=declaration)
        outcome.dependents = dependents
        return outcome

    def rollback(self, journal: Journal) -> UpgradeOutcome:
        """Put the failed unit back on the version it came from (same volume); gates again.

        A fresh driver whose target is the old version; the rolling declaration is the one
        of the version the unit leaves (its state's addresses and timeouts, as the upgrade
        used them).
        """
        connection = self.connection
        index = journal.failed_unit
        if index is None:
            raise UsageError("the upgrade failed outside a unit (in its final phase): there "
                             "is no member to roll back", hint="--resume it instead")
        declaration = connection.declaration(journal.to_version)
        if declaration is None:
            raise InfrablocksError(f"{connection.block} {journal.to_version} has no rolling "
                                   "declaration any more: there is no unit to roll back")
        connection.say(f"rolling unit {index} back to {journal.from_version}")
        terraform = connection.prepare(journal.from_version)
        driver = connection.rolling_driver(
            Subject(connection.block, connection.environment, journal.to_version,
                    journal.from_version), declaration, terraform)
        plan = driver.plan(targets=driver.targets(index))
        journal.start_rollback(index, journal.from_version)
        driver.run_unit(journal, driver.unit_facts(index, changes=bool(plan.changes)),
                        remaining=[], position="rollback", gate_first=False)
        journal.rolled_back()
        outcome = self.outcome(Mode.ROLLED_BACK, Subject(
            connection.block, connection.environment, journal.from_version,
            journal.to_version), order=[index], driver=driver)
        outcome.notes.append(f"unit {index} is back on {journal.from_version}; the "
                             f"deployment record still says {journal.from_version}")
        return outcome

    def dry_run(self, current: str, target: str) -> UpgradeOutcome:
        """The rolling plan and the cluster's health now; nothing changes."""
        connection = self.connection
        subject = Subject(connection.block, connection.environment, current, target)
        if current == target:
            return self.outcome(Mode.UP_TO_DATE, subject)
        terraform = connection.prepare(target)
        declaration = connection.declaration(target)
        if declaration is None:
            plan = Deployment(subject, connection.ports(terraform)).plan()
            return self.outcome(Mode.PLAIN, subject, plan=_stateless_plan(plan))
        driver = connection.rolling_driver(subject, declaration, terraform)
        rolling = classify(driver.plan(), declaration)
        if not rolling.units:
            return self.outcome(Mode.PLAIN, subject, plan=rolling, declaration=declaration)
        members = driver.members()
        health = driver.check().cluster_health(members)
        order = roll_order(rolling.units, down=(), leader_index=driver.leader_index(members),
                           order=declaration.order)
        outcome = self.outcome(Mode.DRY_RUN, subject, plan=rolling, order=order,
                               driver=driver)
        outcome.pre_health = ("healthy: " if health.ok else "NOT healthy: ") + health.summary
        return outcome

    def outcome(self, mode: Mode, subject: Subject, *, plan: RollingPlan | None = None,
                order: Sequence[int] = (), driver: RollingDriver | None = None,
                declaration: RollingDeclaration | None = None) -> UpgradeOutcome:
        """The outcome: members from the state (when the block rolls), per-unit reports,
        timings and notes."""
        connection = self.connection
        declaration = driver.declaration if driver is not None else declaration
        members: dict[int, str] = {}
        if declaration is not None and mode is not Mode.UP_TO_DATE:
            state = connection.backend.read_state(connection.environment, connection.block)
            members = {m.index: m.name for m in members_from_state(state, declaration)}
        reports = driver.unit_reports if driver is not None else {}
        return UpgradeOutcome(
            subject.block, subject.environment, subject.current, subject.target, mode=mode,
            plan=plan, order=list(order), members=members,
            units=[reports[i] for i in order if i in reports],
            timings=connection.timer.report(),
            notes=[*connection.notes, *(driver.notes if driver is not None else [])])


def _stateless_plan(plan: Plan) -> RollingPlan:
    """A block without a rolling declaration rolls nothing: every change is "the rest"."""
    return RollingPlan([], [f"{c.address} ({c.action})" for c in plan.changes],
                       plan.has_changes)


# ------------------------------------------------------------------------------ wiring

@dataclass
class _WorkdirTerraform:
    """The Terraform driver bound to one prepared working directory (``BlockTerraform``)."""

    terraform: Terraform
    workdir: Path

    def plan(self, targets: Sequence[str] = ()) -> Plan:
        return self.terraform.plan(self.workdir, targets=targets)

    def apply(self, plan: Plan | None = None, targets: Sequence[str] = ()) -> object:
        return self.terraform.apply(self.workdir, plan, targets=targets)


class _Wiring:
    """The engine's ``Connection`` on a workspace: its Terraform, the environment's platform,
    the state backend, the service checks."""

    def __init__(self, workspace: Workspace, environment: str, block: str,
                 ops: CloudOps | None, fault: FaultHook, say: Say | None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        if workspace.roller is None:   # the block's and its dependents' re-applies roll too
            workspace.roller = roll
        self.workspace = workspace
        self.lock_timeout = lock_timeout
        self.environment = environment
        self.block = block
        self.backend = workspace.backend
        self._ops = ops
        self.fault = fault
        self._say: Say = say or (lambda text: None)
        self.timer = PhaseTimer()
        self.notes: list[str] = []
        self._terraform: Terraform | None = None
        self.read_only = False    # --dry-run: the environment's subnet is looked at, not claimed

    def say(self, text: str) -> None:
        self._say(text)

    def version(self, version: str) -> BlockVersion:
        return self.workspace.registry.block_version(self.block, version)

    @property
    def ops(self) -> CloudOps:
        if self._ops is None:
            self._ops = self.workspace.platform(self.environment).ops
        return self._ops

    @contextlib.contextmanager
    def lock(self, operation: str) -> Iterator[None]:
        """The block's lock, waited for up to ``lock_timeout`` seconds (who holds it is said;
        a dead holder's is taken over once the Terraform it left running exited)."""
        from infrablocks.state.locks import acquire_waiting

        with acquire_waiting(self.workspace.backend, self.environment, self.block, operation,
                             timeout=self.lock_timeout, say=self.say) as held:
            if held.note:
                self.say(held.note)
            yield

    def refuse_edited(self, version: str) -> None:
        """``EditedVersionError`` when ``version`` was released or deployed with other code
        and the environment is persistent (``release.frozen.refuse_edited``)."""
        from infrablocks.release.frozen import refuse_edited

        registry = self.workspace.registry
        try:
            declared = registry.block_version(self.block, version)
        except UsageError:   # not in blocks.toml: the engine's own lookup says so
            return
        refuse_edited(registry, self.backend, self.environment, [declared])

    def declaration(self, version: str) -> RollingDeclaration | None:
        """The version's rolling declaration; None for a stateless block."""
        from infrablocks.rolling.declaration import declaration_for

        if not self.workspace.registry.blocks[self.block].stateful:
            return None
        block_version = self.version(version)
        return declaration_for(self.workspace.registry, block_version,
                               self.workspace.platform(self.environment).name,
                               module=self.workspace.block_module(self.environment,
                                                                  block_version))

    def terraform(self) -> Terraform:
        if self._terraform is None:
            self._terraform = self.workspace.terraform(self.environment, self.block)
            # A run killed during an apply leaves that Terraform finishing on its own (it runs
            # in its own session): a resume waits for its state lock instead of failing.
            self._terraform.env_extra.update({
                f"TF_CLI_ARGS_{command}": f"-lock-timeout={STATE_LOCK_WAIT}"
                for command in ("plan", "apply")})
        return self._terraform

    def prepare(self, version: str) -> _WorkdirTerraform:
        """Images on the platform, the working directory holding ``version``, Terraform
        initialised; Terraform bound to that directory."""
        from infrablocks.deploy.block_ops import BlockRun, ensure_images
        from infrablocks.runner import CancelToken
        from infrablocks.terraform.init import ensure_init

        workspace = self.workspace
        run = BlockRun(workspace, self.environment, self.version(version),
                       workspace.subnet(self.environment, claim=not self.read_only))
        with self.timer.timed("images"):
            ensure_images(run, CancelToken())
        workdir = run.prepare()
        with self.timer.timed("terraform"):
            ensure_init(workspace.repo_root, self.terraform(), workdir)
        return _WorkdirTerraform(self.terraform(), workdir)

    def ports(self, terraform: BlockTerraform) -> Ports:
        from infrablocks.terraform.toolchain import terraform_log_dir
        from infrablocks.upgrade.dependents import reapply_dependents

        workspace = self.workspace
        return Ports(
            terraform=terraform, backend=workspace.backend,
            reapply_dependents=lambda: reapply_dependents(
                workspace, self.environment, self.block, self.say, ops=self.ops),
            terraform_version=lambda: workspace.terraform_binary().version,
            log_dir=str(terraform_log_dir(workspace.repo_root)), timer=self.timer,
            say=self._say, write_record=self._write_record)

    def _write_record(self, version: str) -> None:
        from infrablocks.deploy.block_ops import write_deployed_record

        write_deployed_record(self.workspace, self.environment, self.version(version),
                              terraform_version=self.workspace.terraform_binary().version)

    def rolling_driver(self, subject: Subject, declaration: RollingDeclaration,
                       terraform: BlockTerraform) -> RollingDriver:
        return RollingDriver(subject, self.ports(terraform), declaration=declaration,
                             ops=self.ops, fault=self.fault,
                             check=self._check_factory(declaration,
                                                       self.version(subject.target)))

    def _check_factory(self, declaration: RollingDeclaration, version: BlockVersion
                       ) -> Callable[[], ServiceCheck]:
        def build() -> ServiceCheck:
            from infrablocks.health import build_check

            outputs = self.workspace.backend.read_outputs(self.environment, self.block)
            return build_check(declaration.check, CheckContext(
                block=self.block, environment=self.environment,
                options=dict(declaration.check_options), outputs=outputs.unmasked(),
                block_dir=str(version.path), ops=self.ops))
        return build
