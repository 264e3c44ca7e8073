"""`doit apply FILE`: apply a reviewed cross-block plan, exactly, dependencies first.

Before anything runs, the whole file is checked, and refused when:

- the environment moved since it was written (any block's state lineage/serial or deployment
  record differs: :func:`~infrablocks.planning.planfile.fingerprint_changes`), a block's code
  or image list changed, the subnet or the Terraform version is not the one planned with;
- it would replace instances of a stateful block in one apply, or move a stateful block to
  another version (those go through `doit upgrade` / the rolling procedure);
- it would apply a released or deployed version whose code was edited since, to a persistent
  environment (:func:`~infrablocks.release.frozen.refuse_edited`, as `create` refuses it).

Then the DAG runner applies the blocks in dependency order, each under its lock (waited for up
to ``lock_timeout`` seconds, a dead holder's taken over once the Terraform it left running
exited: ``state.locks.acquire_waiting``, as `create` does), with the same
deployment-record protocol as `create` (``creating`` → ``deployed``, ``failed`` on error), and
like `create` each block must be ready after its apply (its instances running and ready, its
health check passing: ``deploy.readiness``) before it is recorded ``deployed`` and its
dependents start:

- **saved** (planned with known inputs): its input values now must equal the reviewed ones
  (per-variable digests); then ``terraform apply PLANFILE`` — Terraform itself refuses a saved
  plan whose state changed ("Saved plan is stale"), reported as such;
- **replan** (planned with inputs known only after apply): its images are built if needed, it
  is planned again now that its dependencies exist, and applied only when the resource actions
  equal the reviewed ones; otherwise it stops and shows the difference;
- **unchanged**: nothing to do; **not planned** (left out of the plan, see
  :func:`~infrablocks.planning.crossplan.plan_environment`): not applied, since nothing was
  reviewed for it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import InfrablocksError
from infrablocks.planning.crossplan import (
    NOT_PLANNED,
    REPLAN,
    SAVED,
    UNCHANGED,
    code_digest,
    digest_inputs,
)
from infrablocks.planning.planfile import (
    StalePlan,
    block_fingerprint,
    describe_difference,
    environment_fingerprint,
    fingerprint_changes,
    read_plan_file,
)
from infrablocks.planning.scratch import private_scratch
from infrablocks.runner import Cancelled, CancelToken, Result, RunEvent, RunReport, run_dag
from infrablocks.state.locks import DEFAULT_LOCK_TIMEOUT

if TYPE_CHECKING:
    import networkx as nx

    from infrablocks.deploy.block_ops import BlockRun
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.terraform.driver import Terraform

REPLAN_HINT = "review it again: doit plan {targets} --env {environment} --out FILE"


class PlanDiverged(InfrablocksError):
    """A block's plan at apply time is not the reviewed one."""


class PlanRefused(InfrablocksError):
    """The reviewed plan does something `doit apply` leaves to another command."""


@dataclass
class ReviewedPlan:
    """A saved plan file, read: the manifest and the extracted saved plans (block → path)."""

    path: Path
    manifest: dict[str, Any]
    plans: dict[str, Path]

    @property
    def environment(self) -> str:
        return str(self.manifest["environment"])

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return list(self.manifest["blocks"])

    def replan_hint(self) -> str:
        return REPLAN_HINT.format(targets=" ".join(self.manifest.get("targets") or ["TARGET"]),
                                  environment=self.environment)

    def graph(self) -> nx.DiGraph[str]:
        import networkx as nx

        graph: nx.DiGraph[str] = nx.DiGraph()
        names = {b["block"] for b in self.blocks}
        for entry in self.blocks:
            graph.add_node(entry["block"])
            for dependency in entry.get("requires") or ():
                if dependency in names:
                    graph.add_edge(dependency, entry["block"])
        return graph


def apply_plan_file(workspace: Workspace, path: Path, *, jobs: int = 4,
                    keep_going: bool = False, on_event: Callable[[RunEvent], None] | None = None,
                    on_open: Callable[[ReviewedPlan], None] | None = None,
                    token: CancelToken | None = None,
                    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
                    ) -> tuple[ReviewedPlan, RunReport]:
    """Check and apply the plan saved in ``path``; see the module docstring.

    ``on_open`` sees the plan once it passed every check, before anything is applied.
    Raises :class:`StalePlan` / :class:`PlanRefused` (nothing applied) and the plan file's own
    errors; per-block failures are in the returned report.
    """
    scratch = private_scratch(workspace.work_root, "apply")
    try:
        manifest, plans = read_plan_file(path, scratch)
        reviewed = ReviewedPlan(Path(path), manifest, plans)
        check_current(workspace, reviewed)
        check_refusals(reviewed)
        check_sensitivity(workspace, reviewed)
        check_frozen(workspace, reviewed)
        if on_open is not None:
            on_open(reviewed)
        entries = {b["block"]: b for b in reviewed.blocks}

        def work(node: Any, tok: CancelToken) -> Result:
            return apply_block_entry(workspace, reviewed, entries[str(node)], tok,
                                     lock_timeout=lock_timeout)

        report = run_dag(reviewed.graph(), work, jobs=jobs, keep_going=keep_going,
                         on_event=on_event, token=token)
        return reviewed, report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _applied_since(workspace: Workspace, reviewed: ReviewedPlan) -> list[str]:
    """``block at TIME by WHO`` for each block of the plan whose deployment record was written
    in or after the second the plan was saved (ISO 8601 UTC seconds compare as text): why a
    plan is stale."""
    saved = str(reviewed.manifest.get("created_at") or "")
    found = []
    for entry in reviewed.blocks:
        record = workspace.backend.get_record(reviewed.environment, entry["block"])
        if record is not None and saved and record.applied_at >= saved:
            found.append(f"{entry['block']} at {record.applied_at} by {record.applied_by}")
    return found


def check_current(workspace: Workspace, reviewed: ReviewedPlan) -> None:
    """Refuse (StalePlan) a plan whose environment, code, subnet or Terraform moved since."""
    manifest = reviewed.manifest
    environment = reviewed.environment
    workspace.check_known_environment(environment)
    problems = fingerprint_changes(
        manifest["fingerprint"],
        environment_fingerprint(workspace, environment, [b["block"] for b in reviewed.blocks]))
    registry = workspace.registry
    for entry in reviewed.blocks:
        try:
            version = registry.block_version(entry["block"], entry["target"])
        except InfrablocksError:
            problems.append(f"{entry['block']}: version {entry['target']} is no longer in "
                            "blocks.toml")
            continue
        if code_digest(workspace.block_module(environment, version)) != entry.get("code_digest"):
            problems.append(f"{entry['block']} {entry['target']}: its code changed "
                            f"({version.path})")
        if list(version.images) != list(entry.get("images") or []):
            problems.append(f"{entry['block']} {entry['target']}: its images changed in "
                            "blocks.toml")
    tf_version = workspace.terraform_binary().version
    if tf_version != manifest["terraform_version"]:
        problems.append(f"Terraform is {tf_version}, the plan was made with "
                        f"{manifest['terraform_version']}")
    if problems:
        applied = _applied_since(workspace, reviewed)
        raise StalePlan(
            f"the plan in {reviewed.path} is stale: {environment} changed since it was "
            "saved:\n" + "\n".join(f"  - {p}" for p in problems)
            + (f"\n  applied since the plan was saved: {', '.join(applied)} (a saved plan "
               "applies once)" if applied else ""),
            hint=reviewed.replan_hint())
    subnet = workspace.subnet(environment, claim=True)
    if subnet != manifest["subnet"]:
        raise StalePlan(f"the plan in {reviewed.path} was made for subnet {manifest['subnet']}; "
                        f"{environment} now has {subnet}", hint=reviewed.replan_hint())


def check_refusals(reviewed: ReviewedPlan) -> None:
    """Refuse (PlanRefused) a plan with stateful replacements or stateful version moves."""
    refusals = [entry["refusal"] for entry in reviewed.blocks
                if entry.get("refusal") and entry.get("apply") not in (UNCHANGED, NOT_PLANNED)]
    if refusals:
        raise PlanRefused(
            f"not applying {reviewed.path}: nothing was changed\n"
            + "\n".join(f"  - {r}" for r in refusals),
            hint="stateful blocks replace their instances one at a time with doit upgrade "
                 "(a new version) or doit create (a repair); plan the rest without them")


def check_sensitivity(workspace: Workspace, reviewed: ReviewedPlan) -> None:
    """Refuse (``contracts.SensitiveInputError``, nothing applied) a plan in which a variable
    would receive a sensitive output without being sensitive (each block's inputs are checked
    again against the dependencies' state before its apply)."""
    from infrablocks.contracts import refuse_sensitive_leaks
    from infrablocks.paths import work_dir

    registry = workspace.registry
    versions = {b["block"]: registry.block_version(b["block"], b["target"])
                for b in reviewed.blocks}
    pairs = [(versions[b["block"]], versions[dependency]) for b in reviewed.blocks
             if b.get("apply") not in (UNCHANGED, NOT_PLANNED)
             for dependency in sorted(versions[b["block"]].requires) if dependency in versions]
    refuse_sensitive_leaks(pairs, work_dir(workspace.repo_root) / "cache" / "modules")


def check_frozen(workspace: Workspace, reviewed: ReviewedPlan) -> None:
    """Refuse (``EditedVersionError``) a plan that would apply a released or deployed version
    whose code was edited since, to a persistent environment."""
    from infrablocks.release.frozen import refuse_edited

    registry = workspace.registry
    refuse_edited(registry, workspace.backend, reviewed.environment,
                  [registry.block_version(b["block"], b["target"]) for b in reviewed.blocks
                   if b.get("apply") not in (UNCHANGED, NOT_PLANNED)])


def apply_block_entry(workspace: Workspace, reviewed: ReviewedPlan, entry: Mapping[str, Any],
                      token: CancelToken, *,
                      lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Result:
    """Apply one block of the reviewed plan (the runner's work function), under the block's
    lock, waited for up to ``lock_timeout`` seconds."""
    from infrablocks.deploy.block_ops import BlockRun
    from infrablocks.state.locks import acquire_waiting

    block, target, mode = entry["block"], entry["target"], entry["apply"]
    if mode == UNCHANGED:
        return Result.success(action="unchanged", version=target)
    if mode == NOT_PLANNED:   # nothing was reviewed for it: never applied from this file
        return Result.success(action="not planned", version=target)
    environment = reviewed.environment
    version = workspace.registry.block_version(block, target)
    run = BlockRun(workspace, environment, version, reviewed.manifest["subnet"])
    backend = workspace.backend
    with acquire_waiting(backend, environment, block, "apply", timeout=lock_timeout,
                         say=token.phase, cancelled=lambda: token.cancelled) as lock:
        if lock.note:
            token.phase(lock.note)
        now = block_fingerprint(workspace, environment, block)
        moved = fingerprint_changes({block: reviewed.manifest["fingerprint"].get(block) or {}},
                                    {block: now})
        if moved:
            raise StalePlan(f"{block} changed since the plan was saved: {'; '.join(moved)}",
                            hint=reviewed.replan_hint())
        if mode == SAVED:
            return _apply_saved(run, reviewed, entry, token, lock_timeout)
        if mode == REPLAN:
            return _apply_replanned(run, reviewed, entry, token, lock_timeout)
        raise InfrablocksError(f"{reviewed.path}: unknown apply mode {mode!r} for {block}")


def _apply_saved(run: BlockRun, reviewed: ReviewedPlan, entry: Mapping[str, Any],
                 token: CancelToken, lock_timeout: float) -> Result:
    from infrablocks.deploy.block_ops import _lock_timeout_args, ensure_images
    from infrablocks.terraform.init import ensure_init
    from infrablocks.timing import PhaseTimer

    clock = PhaseTimer(token.phase)
    started = time.monotonic()
    clock("images")
    ensure_images(run, token)
    clock("inputs")
    inputs = run.inputs()
    reviewed_digests = entry.get("inputs_digests") or {}
    differing = sorted(name for name, digest in digest_inputs(inputs).items()
                       if reviewed_digests.get(name) != digest)
    differing += sorted(set(reviewed_digests) - set(inputs))
    if differing:
        raise PlanDiverged(
            f"{run.block}: its inputs differ from the reviewed ones ({', '.join(differing)}); "
            "its saved plan no longer fits", hint=reviewed.replan_hint())
    workdir = run.prepare(inputs)
    terraform = run.workspace.terraform(run.environment, run.block)
    _lock_timeout_args(terraform, lock_timeout)
    plan_file = reviewed.plans.get(run.block)
    if plan_file is None:
        raise InfrablocksError(f"{reviewed.path} has no saved plan for {run.block}")
    with _interruptible(terraform, token):
        clock("init")
        ensure_init(run.workspace.repo_root, terraform, workdir)
        return _recorded_apply(run, terraform, clock, started, entry.get("stop_instances") or [],
                               token, lambda: _apply_file(terraform, workdir, plan_file, reviewed))


def _apply_file(terraform: Terraform, workdir: Path, plan_file: Path,
                reviewed: ReviewedPlan) -> Any:
    from infrablocks.terraform.driver import TerraformError

    try:
        return terraform.apply(workdir, plan_file)
    except TerraformError as exc:
        if "Saved plan is stale" in exc.errors or "Saved plan is stale" in str(exc):
            raise StalePlan(
                f"Terraform refused the saved plan of {terraform.block}: its state changed "
                f"since the plan was saved (\"Saved plan is stale\"); nothing was applied to "
                f"it\n  log: {exc.log_path}", hint=reviewed.replan_hint()) from None
        raise


def _apply_replanned(run: BlockRun, reviewed: ReviewedPlan, entry: Mapping[str, Any],
                     token: CancelToken, lock_timeout: float) -> Result:
    from infrablocks.deploy.block_ops import _lock_timeout_args, ensure_images
    from infrablocks.deploy.replacements import instances_to_stop
    from infrablocks.terraform.init import ensure_init
    from infrablocks.timing import PhaseTimer

    clock = PhaseTimer(token.phase)
    started = time.monotonic()
    clock("images")
    ensure_images(run, token)
    clock("inputs")
    workdir = run.prepare()
    terraform = run.workspace.terraform(run.environment, run.block)
    _lock_timeout_args(terraform, lock_timeout)
    with _interruptible(terraform, token):
        clock("init")
        ensure_init(run.workspace.repo_root, terraform, workdir)
        clock("plan")
        plan = terraform.plan(workdir)
        now = sorted((c.address, c.action) for c in plan.changes)
        was = sorted((c["address"], c["action"]) for c in entry.get("changes") or ())
        if now != was:
            raise PlanDiverged(
                f"{run.block}: its plan now differs from the reviewed one; not applied:\n"
                + "\n".join(f"  {line}" for line in describe_difference(was, now).splitlines()),
                hint=reviewed.replan_hint())
        return _recorded_apply(run, terraform, clock, started, instances_to_stop(plan), token,
                               lambda: terraform.apply(workdir, plan))


def _recorded_apply(run: BlockRun, terraform: Terraform, clock: Any, started: float,
                    stopping: list[str], token: CancelToken,
                    apply: Callable[[], Any]) -> Result:
    """Stop the instances the plan replaces with their volume, apply, wait until the block is
    ready (its instances running and ready, its health check passing: as `create` waits,
    ``deploy.readiness.wait_ready``), keep the record (``failed`` when any step fails)."""
    from infrablocks.deploy.readiness import wait_ready
    from infrablocks.deploy.replacements import stop_for_replacement
    from infrablocks.state import CREATING, DEPLOYED, FAILED, new_record
    from infrablocks.terraform.applylog import applied_changes

    workspace, environment, block = run.workspace, run.environment, run.block
    backend = workspace.backend
    target = str(run.version.version)
    record = backend.get_record(environment, block)
    previous = (record.version if record and record.status == DEPLOYED
                else record.extra.get("previous_version") if record else None)
    history = {"previous_version": previous} if previous else {}
    tf_version = workspace.terraform_binary().version
    backend.put_record(new_record(environment, block, target, outputs=None,
                                  terraform_version=tf_version, status=CREATING, extra=history))
    try:
        if stopping:
            clock("stop replaced instances")
            ops = workspace.platform(environment).ops
            for instance_id in stopping:
                stop_for_replacement(ops, instance_id)
        clock("apply")
        applied = apply()
        clock("ready")
        readiness = wait_ready(workspace, environment, run.version, token, applied=True)
    except (InfrablocksError, Cancelled):
        backend.put_record(new_record(environment, block, target, outputs=None,
                                      terraform_version=tf_version, status=FAILED,
                                      extra=history))
        raise
    clock("record")  # as `create` writes it: code and input digests, a copy of the code
    from infrablocks.deploy.block_ops import write_deployed_record

    write_deployed_record(workspace, environment, run.version, terraform_version=tf_version)
    return Result.success(action="created" if record is None else "updated", version=target,
                          changes=applied_changes(applied.log_path) if applied else {},
                          ready=readiness.instances, health=readiness.health,
                          seconds=round(time.monotonic() - started, 2), phases=clock.done())


@contextlib.contextmanager
def _interruptible(terraform: Terraform, token: CancelToken) -> Iterator[None]:
    """Forward a cancel of the run to Terraform (one graceful SIGINT), then raise Cancelled."""
    with token.on_cancel(terraform.stop):
        yield
    token.raise_if_cancelled()
