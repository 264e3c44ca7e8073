"""What `create` is about to do in a persistent environment, shown before it asks.

Per block of the run: the deployed and target versions, the action (``create`` for a block not
deployed yet, ``unchanged``, ``apply``, ``roll`` for members of a stateful block replaced one at
a time, ``refused``), the plan's counts in Terraform's words (add / change / replace /
destroy), the members that roll and why (a version change, edited code, changed inputs, else
drift of the infrastructure). Each deployed block is planned once, side by side; the run
applies those saved plans when the block's inputs and code are still the ones planned with
(``block_ops.PlannedBlock``), so confirming costs no extra Terraform command.

Each plan is made under the block's lock; a block whose lock another process holds (or a dead
one whose Terraform still runs) is not planned here: the run plans it once the lock is free. A
block not deployed yet is created with one ``apply`` (its dependencies' outputs
may not exist yet, so it cannot be planned ahead).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infrablocks.errors import InfrablocksError

if TYPE_CHECKING:
    from infrablocks.deploy.block_ops import BlockRun, PlannedBlock
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.runner import CancelToken, Dag


@dataclass
class PreviewEntry:
    block: str
    deployed: str | None
    target: str
    action: str                       # create | unchanged | apply | roll | refused | locked |
    #                                   re-apply | if inputs change
    counts: dict[str, int] = field(default_factory=dict)
    rolls: list[int] = field(default_factory=list)     # member indexes (Terraform's count)
    members: list[str] = field(default_factory=list)   # their names, for people
    why: list[str] = field(default_factory=list)
    stateful: bool = False

    @property
    def changes(self) -> bool:
        return self.action not in ("unchanged", "if inputs change")

    def to_json(self) -> dict[str, Any]:
        return {"block": self.block, "deployed": self.deployed, "target": self.target,
                "action": self.action, "counts": dict(self.counts), "rolls": list(self.rolls),
                "members": list(self.members), "why": list(self.why), "stateful": self.stateful}


@dataclass
class CreatePreview:
    environment: str
    entries: list[PreviewEntry] = field(default_factory=list)
    planned: dict[str, PlannedBlock] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        """Whether the run would change anything (nothing to confirm otherwise)."""
        return any(entry.changes for entry in self.entries)

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment,
                "blocks": [entry.to_json() for entry in self.entries]}


def preview_create(workspace: Workspace, environment: str, graph: Dag,
                   runs: dict[str, BlockRun], outside: set[str], *, jobs: int = 4,
                   lock_timeout: float = 300.0, token: CancelToken | None = None
                   ) -> CreatePreview:
    """Plan each deployed block of the run (see the module docstring)."""
    from infrablocks.runner import CancelToken
    from infrablocks.runner.dag import lexicographic_order

    token = token or CancelToken()
    preview = CreatePreview(environment)
    order = [n for n in lexicographic_order(graph) if n in runs]
    to_plan: list[PreviewEntry] = []
    for name in order:
        entry = _entry(workspace, environment, runs[name], name in outside)
        preview.entries.append(entry)
        if entry.action == "plan":
            to_plan.append(entry)
    if to_plan:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(to_plan)))) as pool:
            results = list(pool.map(
                lambda e: _plan(workspace, environment, runs[e.block], e, lock_timeout, token),
                to_plan))
        for entry, planned in zip(to_plan, results, strict=True):
            if planned is not None:
                preview.planned[entry.block] = planned
    return preview


def _entry(workspace: Workspace, environment: str, run: BlockRun,
           outside: bool) -> PreviewEntry:
    from infrablocks.deploy import converge
    from infrablocks.release.digest import input_digests

    backend = workspace.backend
    block, target = run.block, str(run.version.version)
    record = backend.get_record(environment, block)
    state = backend.read_state(environment, block)
    has_state = bool((state or {}).get("resources"))
    declared = workspace.registry.blocks.get(block)
    stateful = bool(declared and declared.stateful)
    entry = PreviewEntry(block, record.version if record else None, target, "plan",
                         stateful=stateful)
    step = converge.first_step(record, has_state, target, stateful)
    if step == converge.FRESH:
        entry.action = "create"
        entry.why = ["not deployed yet"]
        return entry
    if step == converge.REFUSE:
        entry.action = "refused"
        entry.why = [f"a stateful block at {record.version}: that is `doit upgrade "  # type: ignore[union-attr]
                     f"{block} --env {environment} --to {target}`"]
        return entry
    if outside:
        try:
            digests = input_digests(run.inputs())
        except InfrablocksError as exc:
            entry.action, entry.why = "re-apply", [exc.message.splitlines()[0]]
            return entry
        if converge.stale_inputs(record, digests, set(), set(run.version.requires)):
            return entry   # planned: it is stale already
        entry.action = "if inputs change"
        entry.why = ["a deployed dependent: re-applied if its dependencies' outputs change"]
    return entry


def _plan(workspace: Workspace, environment: str, run: BlockRun, entry: PreviewEntry,
          lock_timeout: float, token: CancelToken) -> PlannedBlock | None:
    """One plan under the block's lock, the entry filled in; not when the lock is held (by a
    live process, or a dead one whose Terraform still runs): the run waits for it then."""
    from infrablocks.state import LockHeldError
    from infrablocks.state.locks import lock_workers

    try:
        lock = workspace.backend.acquire_lock(environment, run.block, "plan")
    except LockHeldError as exc:
        entry.action = "locked"
        who = exc.holder.describe() if exc.holder else "another process"
        entry.why = [f"locked by {who}: planned once the lock is free"]
        return None
    if lock.previous is not None and lock_workers(lock.previous.token):
        lock.hand_back()
        entry.action = "locked"
        entry.why = [f"the `{lock.previous.operation}` of {lock.previous.holder} (pid "
                     f"{lock.previous.pid}) died; the Terraform it started still runs: "
                     "planned once it finished"]
        return None
    with lock:
        planned = _plan_locked(workspace, environment, run, entry, lock_timeout, token)
    if lock.note:
        entry.why.append(lock.note)
    return planned


def _plan_locked(workspace: Workspace, environment: str, run: BlockRun, entry: PreviewEntry,
                 lock_timeout: float, token: CancelToken) -> PlannedBlock | None:
    """One plan (images built if missing, working directory, init); the entry filled in."""
    from infrablocks.deploy import converge
    from infrablocks.deploy.block_ops import (
        DRIFT,
        PlannedBlock,
        _init,
        _lock_timeout_args,
        _rolling_units,
        _stopped_members,
        ensure_images,
        member_names,
    )
    from infrablocks.release.digest import input_digests, module_digest

    backend = workspace.backend
    record = backend.get_record(environment, run.block)
    state = backend.read_state(environment, run.block)
    try:
        inputs = run.inputs()
        digests = input_digests(inputs)
        code = module_digest(run.version)
        entry.why = converge.reasons(record, True, entry.target, code, digests)
        ensure_images(run, token)
        workdir = run.prepare(inputs)
        terraform = workspace.terraform(environment, run.block)
        _lock_timeout_args(terraform, lock_timeout)
        _init(run, terraform, workdir)
        plan = terraform.plan(workdir)
    except InfrablocksError as exc:
        entry.action = "error"
        entry.why = [exc.message.splitlines()[0]]
        return None
    units = _rolling_units(run, plan, record, state)
    stopped = [] if units else _stopped_members(run, record, state)
    entry.counts = converge.plan_counts(plan)
    decision = converge.after_plan(plan, units or stopped)
    entry.action = {converge.UNCHANGED: "unchanged", converge.ROLL: "roll",
                    converge.APPLY: "apply"}[decision]
    entry.rolls = sorted(set(units) | set(stopped))
    entry.members = member_names(run, state, entry.rolls)
    if decision == converge.UNCHANGED:
        entry.why = converge.unchanged_reasons(record, entry.why)
    elif not entry.why:
        entry.why = [DRIFT]
    return PlannedBlock(plan, digests, code.digest, units)
