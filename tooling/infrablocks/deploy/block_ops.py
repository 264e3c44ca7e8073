"""Applying, planning and destroying one block version in one environment.

These are the work functions the DAG runner calls for each node. Each holds the block's lock in
the state backend while it changes anything, keeps a deployment record beside the state, and
reads its dependencies' outputs straight from their state (no ``terraform output`` per block).
What touches instances or images goes through the environment's platform
(``workspace.platform(environment)``); ``terraform init`` through ``infrablocks.terraform.init``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.deploy.readiness import wait_ready
from infrablocks.errors import InfrablocksError, UsageError
from infrablocks.runner import Cancelled, CancelToken, Result
from infrablocks.state import CREATING, DEPLOYED, DESTROYING, FAILED, Outputs, new_record
from infrablocks.state.locks import DEFAULT_LOCK_TIMEOUT
from infrablocks.terraform.applylog import applied_changes
from infrablocks.timing import PhaseTimer

if TYPE_CHECKING:
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.registry import BlockVersion
    from infrablocks.terraform.driver import Terraform
    from infrablocks.terraform.plan import Plan
    from infrablocks.terraform.workdir import Inputs

DESTROY_STOP_GRACE = 1.0  # before a destroy: the volumes go right after, so there is no data
#                           a graceful stop would protect, and etcd members whose peers stop
#                           with them never exit on SIGTERM (with 15 s this was most of
#                           `doit env`'s teardown: etcd ~8 s, Patroni ~6 s)


DRIFT = "drift: the infrastructure differs from its state"


class DependencyNotDeployed(InfrablocksError):
    """A dependency's outputs are needed but it has no state in the environment."""


@dataclass
class BlockRun:
    """One (environment, block version) as the runner sees it."""

    workspace: Workspace
    environment: str
    version: BlockVersion
    subnet: str

    @property
    def block(self) -> str:
        return self.version.block

    # -- inputs ---------------------------------------------------------------------------------

    def inputs(self) -> Inputs:
        """Variables for the block: environment, subnet and one object per dependency.

        Each dependency object carries only the attributes the block's variable declares
        (Terraform refuses nothing extra today, but sending secrets a block did not ask for
        would widen where they end up). An object holding a sensitive output is marked
        sensitive (it is kept out of the working directory); a variable receiving one that is
        not declared ``sensitive = true`` is refused (``contracts.SensitiveInputError``).
        """
        from infrablocks.terraform.workdir import Inputs

        values: dict[str, Any] = {"environment": self.environment, "subnet_cidr": self.subnet}
        if not self.version.requires:
            return Inputs(values)
        from infrablocks.interface_cache import dependency_attributes

        received: dict[str, set[str]] = {}
        attributes = dependency_attributes(self.workspace.repo_root, self.version)
        for dependency in sorted(self.version.requires):
            outputs = self.workspace.backend.read_outputs(self.environment, dependency)
            if not outputs and not _deployed(self.workspace, self.environment, dependency):
                raise DependencyNotDeployed(
                    f"{self.block} needs the outputs of {dependency}, which is not deployed in "
                    f"environment {self.environment}",
                    hint=f"create it first: doit create {dependency} --env {self.environment}")
            wanted = attributes.get(dependency)
            plain = outputs.unmasked()
            values[dependency] = ({k: v for k, v in plain.items() if k in wanted}
                                  if wanted is not None else plain)
            received[dependency] = {k for k in values[dependency] if outputs.is_sensitive(k)}
        self._refuse_sensitive_leaks(received)
        return Inputs(values, sensitive=[d for d, names in received.items() if names])

    def _refuse_sensitive_leaks(self, received: dict[str, set[str]]) -> None:
        from infrablocks.contracts import check_received_inputs
        from infrablocks.paths import work_dir

        def label(dependency: str) -> str:
            record = self.workspace.backend.get_record(self.environment, dependency)
            return f"{dependency} {record.version}" if record else dependency

        check_received_inputs(self.version, received, label,
                              cache_dir=work_dir(self.workspace.repo_root) / "cache" / "modules")

    def prepare(self, inputs: dict[str, Any] | None = None) -> Path:
        """The block's working directory, ready for ``terraform init``.

        The working area is private (0700); sensitive inputs and saved plans go to the
        deployment's private directory, not into it (see ``terraform.workdir``).
        """
        from infrablocks.terraform.workdir import prepare_workdir

        work_root = self.workspace.work_root
        work_root.mkdir(parents=True, exist_ok=True)  # parents keep their modes: the local
        work_root.chmod(0o700)                        # cloud may live in .infrablocks/
        return prepare_workdir(
            self.workspace.work_root, self.environment, self.block,
            self.workspace.block_module(self.environment, self.version),
            self.workspace.backend.terraform_backend(self.environment, self.block),
            self.inputs() if inputs is None else inputs)


def _deployed(workspace: Workspace, environment: str, block: str) -> bool:
    record = workspace.backend.get_record(environment, block)
    return record is not None and record.status == DEPLOYED


def _terraform_for(run: BlockRun, token: CancelToken) -> Terraform:
    return run.workspace.terraform(run.environment, run.block)


@contextlib.contextmanager
def _interruptible(terraform: Terraform, token: CancelToken) -> Iterator[None]:
    """Forward a cancel of the run to Terraform (one graceful SIGINT)."""
    with token.on_cancel(terraform.stop):
        yield
    token.raise_if_cancelled()


def ensure_images(run: BlockRun, token: CancelToken) -> list[str]:
    """Make sure the images the block version lists exist on the environment's platform."""

    def before_each(image: str) -> None:
        token.raise_if_cancelled()
        token.phase(f"image {image}")

    return run.workspace.platform(run.environment).ensure_images(run.version.images,
                                                                 before_each=before_each)


def _init(run: BlockRun, terraform: Terraform, workdir: Path) -> bool:
    """``terraform init`` of the run's working directory, one at a time per repository."""
    from infrablocks.terraform.init import ensure_init

    return ensure_init(run.workspace.repo_root, terraform, workdir)


@dataclass
class PlannedBlock:
    """A plan made before the run (the confirmation of a persistent environment's create),
    reused by :func:`apply_block` when the block's inputs and code are still the ones it was
    made with: one plan per deployed block."""

    plan: Plan
    inputs: dict[str, str]      # input digests it was planned with
    code: str                   # code digest it was planned with
    units: list[int]            # members it would roll


def _lock_timeout_args(terraform: Terraform, seconds: float) -> None:
    """Terraform waits for its own state lock as long as we waited for ours: an apply left
    running by a process that died (it runs in its own session) finishes first."""
    terraform.env_extra.update({f"TF_CLI_ARGS_{command}": f"-lock-timeout={int(seconds)}s"
                                for command in ("plan", "apply", "destroy")})


def state_lock_error(exc: BaseException) -> bool:
    """Whether a Terraform failure is Terraform's own state lock, held by another process."""
    text = f"{getattr(exc, 'errors', '')}\n{exc}"
    return "Error acquiring the state lock" in text


class RollRequired(InfrablocksError):
    """A stateful block's plan replaces members and the caller does not roll them."""

    def __init__(self, message: str, replaced: list[str]) -> None:
        super().__init__(message)
        self.replaced = replaced


class NoRoller(InfrablocksError):
    """Members of a deployed stateful block must be rolled and the workspace has no
    ``roller`` (:class:`~infrablocks.deploy.workspace.Roller`): nothing was changed."""


def apply_block(run: BlockRun, token: CancelToken, *,
                lock_timeout: float = DEFAULT_LOCK_TIMEOUT, planned: PlannedBlock | None = None,
                only_if_stale: bool = False, changed_upstream: frozenset[str] = frozenset(),
                roll_stateful: bool = True) -> Result:
    """Converge the block to ``run.version``, deciding from what Terraform would do.

    See :mod:`infrablocks.deploy.converge` for the decision: a fresh block is one ``apply``; a
    deployed one is planned once, and the saved plan applied (or its members rolled one at a
    time, for a stateful block with a rolling declaration); ``unchanged`` only when the plan is
    empty. ``only_if_stale``: a deployed block outside the run (a dependent of a block in it)
    is planned only when its inputs differ from those its record says it was applied with.
    Afterwards the block must be ready (:mod:`infrablocks.deploy.readiness`). Holds the block's
    lock throughout, waiting up to ``lock_timeout`` seconds for it. ``roll_stateful`` False:
    :class:`RollRequired` instead of rolling or replacing instances of a stateful block
    (nothing changed then). A stale block outside the run whose code was edited since it was
    released or deployed is refused in a persistent environment
    (``release.frozen.EditedVersionError``; the blocks of the run are checked before it starts).
    """
    from infrablocks.deploy import converge
    from infrablocks.release.digest import input_digests, module_digest
    from infrablocks.state.locks import acquire_waiting

    workspace, env, block = run.workspace, run.environment, run.block
    backend = workspace.backend
    target = str(run.version.version)
    with acquire_waiting(backend, env, block, "create", timeout=lock_timeout, say=token.phase,
                         cancelled=lambda: token.cancelled) as lock:
        notes = [lock.note] if lock.note else []
        record = backend.get_record(env, block)
        state = backend.read_state(env, block)
        has_state = bool((state or {}).get("resources"))
        declared = workspace.registry.blocks.get(block)
        stateful = bool(declared and declared.stateful)
        step = converge.first_step(record, has_state, target, stateful)
        if step == converge.REFUSE:
            raise InfrablocksError(
                f"{block} is deployed at {record.version} in {env}; moving a stateful block "  # type: ignore[union-attr]
                f"to {target} is a rolling upgrade",
                hint=f"run: doit upgrade {block} --env {env} --to {target}")
        started = time.monotonic()
        clock = PhaseTimer(token.phase)
        clock("inputs")
        inputs = run.inputs()
        digests = input_digests(inputs)
        if only_if_stale and not converge.stale_inputs(record, digests, set(changed_upstream),
                                                      set(run.version.requires)):
            return Result.success(action="untouched", version=target,
                                  why=["outside the run; its inputs did not change"],
                                  phases=clock.done())
        if only_if_stale:   # about to be planned: its code must be the one deployed
            from infrablocks.release.frozen import refuse_edited

            refuse_edited(workspace.registry, backend, env, [run.version])
        code = module_digest(run.version)
        why = converge.reasons(record, has_state, target, code, digests)
        requires = _applied_requires(workspace, env, run.version)
        _record_platform(workspace, env, block)
        clock("terraform probe")
        tf_version = workspace.terraform_binary().version
        clock("images")
        ensure_images(run, token)
        clock("prepare")
        workdir = run.prepare(inputs)
        terraform = _terraform_for(run, token)
        _lock_timeout_args(terraform, lock_timeout)
        history = _history(record)
        writer = _RecordWriter(run, tf_version, history, code, digests, requires, record)
        try:
            with _interruptible(terraform, token):
                clock("init")
                _init(run, terraform, workdir)
                if step == converge.FRESH:
                    clock("apply")
                    writer.write(CREATING)
                    applied = terraform.apply(workdir)
                    action, changes = "created", applied_changes(applied.log_path)
                    summary = "fresh"
                else:
                    plan = _reuse(planned, digests, code)
                    if plan is None:
                        clock("plan")
                        plan = terraform.plan(workdir)
                    summary = plan.summary()
                    units = _rolling_units(run, plan, record, state)
                    stopped = [] if units else _stopped_members(run, record, state)
                    decision = converge.after_plan(plan, units)
                    if stopped:   # nothing for Terraform to do, but members do not run
                        decision, units = converge.ROLL, stopped
                        why = [*why, "members not running: "
                               + ", ".join(member_names(run, state, stopped))]
                    if decision == converge.UNCHANGED:
                        action, changes = "unchanged", {}
                    elif not roll_stateful and stateful and (
                            decision == converge.ROLL or plan.addresses("replace")):
                        raise RollRequired(f"{run.version.label} would replace members",
                                           plan.addresses("replace")
                                           or plan.addresses("create"))
                    elif decision == converge.ROLL:
                        return _roll(run, token, clock, units, plan, record, why, notes,
                                     started, stopped)
                    else:
                        writer.write(CREATING)
                        _stop_replaced(run, plan, clock)
                        clock("apply")
                        applied = terraform.apply(workdir, plan)
                        action = "created" if record is None else "updated"
                        changes = applied_changes(applied.log_path)
        except RollRequired:
            raise
        except (InfrablocksError, Cancelled) as exc:
            if writer.written and not state_lock_error(exc):
                writer.write(FAILED)
            elif writer.written:
                writer.restore()
            raise
        try:
            clock("ready")
            readiness = wait_ready(workspace, env, run.version, token,
                                   applied=action != "unchanged")
        except (InfrablocksError, Cancelled):
            if action != "unchanged":   # an unchanged deployment keeps its record
                writer.write(FAILED)
            raise
        clock("record")
        outputs = backend.read_outputs(env, block)
        if action != "unchanged" or writer.stale(outputs):
            writer.write(DEPLOYED, outputs=outputs,
                         keep_stamp=action == "unchanged" and record is not None
                         and record.status == DEPLOYED)
        if action == "unchanged":
            # nothing for Terraform to do; a record the last run left unfinished is now
            # `deployed`, and the summary says so rather than a bare `unchanged`
            why = converge.unchanged_reasons(record, why)
        elif not why:
            why = [DRIFT]
        return Result.success(action=action, version=target, changes=changes, why=why,
                              plan=summary,
                              notes=notes, ready=readiness.instances,
                              health=readiness.health,
                              outputs_changed=record is None
                              or outputs.digest() != record.outputs_digest,
                              seconds=round(time.monotonic() - started, 2),
                              phases=clock.done())


def _record_platform(workspace: Workspace, environment: str, block: str) -> None:
    """The deployment remembers its platform; one held by another platform is refused."""
    from infrablocks.platforms.choice import check_recorded_platform, record_platform

    profile = workspace.platform_profile(environment)
    check_recorded_platform(workspace.backend, environment, block, profile)
    record_platform(workspace.backend, environment, block, profile)


def write_deployed_record(workspace: Workspace, environment: str, version: BlockVersion, *,
                          terraform_version: str) -> None:
    """The ``deployed`` record of ``version`` as `create` writes it (code and input digests,
    the dependencies' versions, a copy of the code): for other writers of deployment records
    (the rolling engine after an upgrade or roll), so that every deployment is frozen, re-applied
    when its inputs change and destroyable from its own code alike."""
    from infrablocks.release.digest import input_digests, module_digest

    backend = workspace.backend
    record = backend.get_record(environment, version.block)
    run = BlockRun(workspace, environment, version, workspace.subnet(environment))
    writer = _RecordWriter(run, terraform_version, {}, module_digest(version),
                           input_digests(run.inputs()),
                           _applied_requires(workspace, environment, version), record)
    writer.write(DEPLOYED, outputs=backend.read_outputs(environment, version.block))


def _history(record: Any) -> dict[str, Any]:
    """What a new record keeps of the previous one: the version deployed before an update
    (a failed update must not lose it)."""
    from infrablocks.state.records import EXTRA_PREVIOUS

    if record is None:
        return {}
    previous = (record.version if record.status == DEPLOYED
                else record.extra.get(EXTRA_PREVIOUS))
    return {EXTRA_PREVIOUS: previous} if previous else {}


def _applied_requires(workspace: Workspace, environment: str,
                      version: BlockVersion) -> dict[str, str]:
    """Each dependency → the version deployed now (what this deployment is applied with)."""
    found = {}
    for dependency in sorted(version.requires):
        record = workspace.backend.get_record(environment, dependency)
        found[dependency] = record.version if record is not None else ""
    return found


class _RecordWriter:
    """Writes the block's deployment record: ``creating`` before Terraform changes anything,
    then ``deployed`` (with what the deployment was made from) or ``failed``."""

    def __init__(self, run: BlockRun, tf_version: str, history: dict[str, Any], code: Any,
                 inputs: dict[str, str], requires: dict[str, str], record: Any) -> None:
        self.run = run
        self.tf_version = tf_version
        self.history = history
        self.code = code
        self.inputs = inputs
        self.requires = requires
        self.before = record
        self.written = False

    def write(self, status: str, *, outputs: Outputs | None = None,
              keep_stamp: bool = False) -> None:
        from dataclasses import replace

        from infrablocks.deploy.converge import record_extra
        from infrablocks.deploy.sources import store_source

        run = self.run
        backend = run.workspace.backend
        extra = dict(self.history)
        if status == DEPLOYED:
            source = store_source(backend, run.environment, run.block, run.version, self.code,
                                  self.before)
            extra = record_extra(self.code, self.inputs, self.requires, source, extra)
        record = new_record(run.environment, run.block, str(run.version.version),
                            outputs=outputs, terraform_version=self.tf_version, status=status,
                            extra=extra)
        if keep_stamp and self.before is not None:
            record = replace(self.before, extra=extra, outputs_digest=record.outputs_digest)
        backend.put_record(record)
        self.written = True

    def stale(self, outputs: Outputs) -> bool:
        """Whether a deployed record must be rewritten although nothing was applied: it is
        not ``deployed``, or lacks (or has other) digests of what the deployment is."""
        from infrablocks.release.digest import inputs_digest

        before = self.before
        if before is None or before.status != DEPLOYED:
            return True
        return ((before.code_digest or {}).get("digest") != self.code.digest
                or before.input_digests is None
                or inputs_digest(before.input_digests) != inputs_digest(self.inputs)
                or before.applied_requires != self.requires
                or before.outputs_digest != outputs.digest())

    def restore(self) -> None:
        """Put back the record as it was (Terraform's state lock was held by someone else:
        this run changed nothing)."""
        backend = self.run.workspace.backend
        if self.before is not None:
            backend.put_record(self.before)
        else:
            backend.delete_record(self.run.environment, self.run.block)


def _reuse(planned: PlannedBlock | None, inputs: dict[str, str], code: Any) -> Plan | None:
    """The plan made before the run, when it was made with these inputs and this code."""
    if planned is None or planned.inputs != inputs or planned.code != code.digest:
        return None
    plan_file = planned.plan.plan_file
    return planned.plan if plan_file is not None and plan_file.is_file() else None


def _rolling_units(run: BlockRun, plan: Plan, record: Any, state: Any) -> list[int]:
    from infrablocks.deploy.converge import rolling_units
    from infrablocks.rolling.declaration import declaration_for
    from infrablocks.rolling.plan import members_from_state

    declared = run.workspace.registry.blocks.get(run.block)
    if declared is None or not declared.stateful:
        return []
    declaration = declaration_for(run.workspace.registry, run.version)
    if declaration is None:
        return []
    members = [m.index for m in members_from_state(state, declaration)]
    return rolling_units(plan, declaration, record, str(run.version.version), members)


def member_names(run: BlockRun, state: Any, indexes: list[int]) -> list[str]:
    """The names of the members at ``indexes`` of a stateful block (its instance's name, or
    EC2's Name tag, as the state records it: ``prod-base-2``), for what users read; an index
    the state does not name is shown as ``member index N`` (0-based, Terraform's count)."""
    from infrablocks.rolling.declaration import declaration_for
    from infrablocks.rolling.plan import members_from_state

    declaration = declaration_for(run.workspace.registry, run.version)
    names = ({m.index: m.name for m in members_from_state(state, declaration)}
             if declaration is not None else {})
    return [names.get(i) or f"member index {i}" for i in indexes]


def _stop_replaced(run: BlockRun, plan: Plan, clock: PhaseTimer) -> None:
    """Instances the plan replaces together with their volume attachment are stopped first
    (a running instance refuses to let its volume go)."""
    from infrablocks.deploy.replacements import instances_to_stop, stop_for_replacement

    stopping = instances_to_stop(plan)
    if stopping:
        clock("stop replaced instances")
        ops = run.workspace.platform(run.environment).ops
        for instance_id in stopping:
            stop_for_replacement(ops, instance_id)


def _roll(run: BlockRun, token: CancelToken, clock: PhaseTimer, units: list[int], plan: Plan,
          record: Any, why: list[str], notes: list[str], started: float,
          stopped: list[int]) -> Result:
    """Members to replace or re-create in a deployed stateful block: the rolling procedure
    (one unit at a time, gates, journal, ``--resume``), never all at once. ``stopped``:
    members whose instance is stopped while the plan is empty (started again). The roll is
    the workspace's ``roller`` (:class:`~infrablocks.deploy.workspace.Roller`): without one,
    a ``NoRoller`` names the members and changes nothing."""
    roll = run.workspace.roller
    if roll is None:
        state = run.workspace.backend.read_state(run.environment, run.block)
        raise NoRoller(
            f"{run.block} in {run.environment}: members "
            f"{', '.join(member_names(run, state, units))} must be "
            "rolled (one at a time, with gates), and this command was opened without the "
            "rolling procedure",
            hint=f"run `doit create --env {run.environment}`, which rolls them; or "
                 f"`doit upgrade {run.block} --env {run.environment}`")
    down = sorted(set(_down_members(run, plan, units)) | set(stopped))
    clock("roll")
    said: list[str] = []

    def say(text: str) -> None:
        said.append(text)
        token.phase(f"roll: {text}")

    why = why or [DRIFT]
    outcome = roll(run.workspace, run.block, run.environment, units=units, down=down,
                   resume=_journal_active(run), hold_lock=False, say=say)
    clock("ready")
    readiness = wait_ready(run.workspace, run.environment, run.version, token, applied=True)
    outputs = run.workspace.backend.read_outputs(run.environment, run.block)
    # the roll wrote the record as `create` does (write_deployed_record)
    return Result.success(action="rolled", version=str(run.version.version),
                          changes=_planned_changes(plan), why=why, notes=notes,
                          rolled=[outcome.members.get(i, str(i)) for i in outcome.order],
                          down=down, ready=readiness.instances, health=readiness.health,
                          outputs_changed=outputs.digest() != record.outputs_digest,
                          seconds=round(time.monotonic() - started, 2), phases=clock.done())


def _planned_changes(plan: Plan) -> dict[str, int]:
    """Resources per Terraform action of the plan a roll carried out, keyed as an apply's
    (``create`` / ``update`` / ``replace`` / ``delete``; non-zero only): the counts the
    preview showed for the block (``add 2``), not a count of members."""
    return {action: count for action, count in plan.counts().items()
            if action in ("create", "update", "replace", "delete") and count}


def _down_members(run: BlockRun, plan: Plan, units: list[int]) -> list[int]:
    """Units whose instance does not serve: Terraform plans to create it again (it crashed:
    the provider reads a dead instance as gone) or the platform says it is not running."""
    from infrablocks.rolling.declaration import declaration_for

    declaration = declaration_for(run.workspace.registry, run.version)
    assert declaration is not None
    created = {c.index for c in plan.changes
               if c.action == "create" and c.address.rsplit("[", 1)[0] == declaration.instances}
    return sorted(i for i in units if i in created)


def _stopped_members(run: BlockRun, record: Any, state: Any) -> list[int]:
    """Members of a deployed stateful block whose instance exists but is stopped (Terraform
    sees no change: a stopped instance is still the instance it created)."""
    from infrablocks.cloud.ops import CloudNotFoundError
    from infrablocks.rolling.declaration import declaration_for
    from infrablocks.rolling.plan import members_from_state

    declared = run.workspace.registry.blocks.get(run.block)
    if (declared is None or not declared.stateful or record is None
            or record.status != DEPLOYED or record.version != str(run.version.version)):
        return []
    declaration = declaration_for(run.workspace.registry, run.version)
    if declaration is None:
        return []
    ops = run.workspace.platform(run.environment).ops
    stopped = []
    for member in members_from_state(state, declaration):
        try:
            if ops.describe_instance(member.instance_id).state in ("stopping", "stopped"):
                stopped.append(member.index)
        except CloudNotFoundError:
            continue   # gone: Terraform's plan creates it again
    return stopped


def _journal_active(run: BlockRun) -> bool:
    from infrablocks.rolling.journal import Journal

    journal = Journal.load(run.workspace.backend, run.environment, run.block)
    return journal is not None and journal.active


def plan_block(run: BlockRun, token: CancelToken) -> Plan:
    """What applying ``run.version`` would change (read-only: no lock, no record). An image
    the platform lacks and would not make at apply is an error first (``check_images``)."""
    run.workspace.platform(run.environment).check_images(run.version.images)
    workdir = run.prepare()
    terraform = _terraform_for(run, token)
    with _interruptible(terraform, token):
        _init(run, terraform, workdir)
        return terraform.plan(workdir)


def destroy_block(workspace: Workspace, environment: str, block: str,
                  token: CancelToken, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Result:
    """Destroy the block's resources in the environment, its state and record.

    The code comes from blocks.toml when it still declares the deployed version, else from the
    copy kept with the deployment (:mod:`infrablocks.deploy.sources`), which the result says.
    """
    from infrablocks.state.locks import acquire_waiting

    backend = workspace.backend
    with acquire_waiting(backend, environment, block, "destroy", timeout=lock_timeout,
                         say=token.phase, cancelled=lambda: token.cancelled) as lock:
        notes = [lock.note] if lock.note else []
        record = backend.get_record(environment, block)
        state = backend.read_state(environment, block)
        if record is None and not (state and state.get("resources")):
            backend.delete_record(environment, block)
            return Result.success(action="absent")
        run, recorded = _run_for_record(workspace, environment, block, record)
        if recorded:
            notes.append(f"{block} {run.version.version} is no longer in blocks.toml (or was "
                         "edited since it was applied): destroyed from the code kept with its "
                         "deployment record")
        clock = PhaseTimer(token.phase)
        clock("stop instances")
        # volumes refuse to detach from running instances (as mounted EBS volumes do)
        stopped = workspace.platform(environment).stop_block_instances(
            environment, block, grace=DESTROY_STOP_GRACE)
        from infrablocks.terraform.workdir import forget_private_dir, read_inputs

        workdir = run.workspace.work_root / environment / block
        inputs = read_inputs(workdir)
        if inputs is None:
            inputs = run.inputs()
        clock("inputs")
        workdir = run.prepare(inputs)
        terraform = _terraform_for(run, token)
        _lock_timeout_args(terraform, lock_timeout)
        tf_version = workspace.terraform_binary().version
        if record is not None:
            backend.put_record(new_record(environment, block, record.version, outputs=None,
                                          terraform_version=tf_version,
                                          status=DESTROYING))
        try:
            with _interruptible(terraform, token):
                clock("init")
                _init(run, terraform, workdir)
                clock("destroy")
                terraform.destroy(workdir)
        except (InfrablocksError, Cancelled) as exc:
            _destroy_failed(workspace, environment, block, record, tf_version, exc)
            raise
        clock("record")
        backend.delete_record(environment, block)
        backend.purge(environment, block)
        forget_private_dir(workdir)   # its sensitive inputs and plans go with the state
        return Result.success(action="destroyed", version=str(run.version.version),
                              stopped=stopped, notes=notes, phases=clock.done())


def _destroy_failed(workspace: Workspace, environment: str, block: str, record: Any,
                    tf_version: str, exc: InfrablocksError | Cancelled) -> None:
    """A destroy that failed or was stopped: the record says so (status ``failed``,
    ``extra.failed_action = "destroy"``, what the state still holds; the deployment's other
    extras, where its code came from, are kept for the next destroy), and the error says what
    is left and how to go on."""
    state = workspace.backend.read_state(environment, block) or {}
    left = sorted({f"{r.get('type')}.{r.get('name')}" for r in state.get("resources", [])
                   if r.get("mode", "managed") == "managed"})
    if record is not None:
        workspace.backend.put_record(new_record(
            environment, block, record.version, outputs=None, terraform_version=tf_version,
            status=FAILED,
            extra={**record.extra, "failed_action": "destroy", "remaining": left}))
    if isinstance(exc, InfrablocksError):
        shown = ", ".join(left[:6]) + (", …" if len(left) > 6 else "")
        exc.hint = "; ".join(filter(None, [
            exc.hint,
            f"{block} is only partly destroyed in {environment}: its state still holds "
            f"{shown or 'nothing'} (doit status shows it as failed); once the cause is fixed, "
            f"run `doit destroy {block} --env {environment}` again"]))


def _run_for_record(workspace: Workspace, environment: str, block: str,
                    record: Any) -> tuple[BlockRun, bool]:
    """The run of the deployed version (and whether its code came from the record)."""
    from infrablocks.deploy.sources import version_for_record

    if record is None:
        raise InfrablocksError(
            f"{block} has state in {environment} but no deployment record",
            hint=f"inspect {workspace.backend.describe(environment, block)}")
    version, recorded = version_for_record(workspace, environment, record, as_applied=True)
    return BlockRun(workspace, environment, version,
                    workspace.subnet(environment, destroying=True)), recorded


def read_block_outputs(workspace: Workspace, environment: str, block: str) -> Outputs:
    outputs = workspace.backend.read_outputs(environment, block)
    if not outputs and workspace.backend.get_record(environment, block) is None:
        raise UsageError(f"{block} is not deployed in environment {environment}",
                               hint=f"doit status --env {environment}")
    return outputs
