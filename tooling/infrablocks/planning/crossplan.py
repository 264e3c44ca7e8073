"""`doit plan`: one Terraform plan for every block a target needs, deployed or not.

The blocks of the target's closure are composed into one temporary root module
(:mod:`infrablocks.planning.compose`), each deployed block's state is brought in under its
module address, Terraform plans it once, and the result is split per block
(:mod:`infrablocks.planning.split`). A value that depends on a resource not created yet is
"known after apply" in every block that reads it — never a mock or a guess. Everything happens
in a private temporary directory (0700) that is removed afterwards: no state, record, lock,
instance or working directory of the environment is touched.

With ``out``, the plan is saved for ``doit apply`` (:mod:`infrablocks.planning.planfile`):
a block whose inputs were all known is planned once more on its own, against its real
backend (read-only: ``-lock=false``) with the input values the composed plan computed, and
that saved Terraform plan is what `doit apply` applies; a block with unknown inputs keeps its
reviewed resource actions, to be compared with its plan at apply time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import InfrablocksError
from infrablocks.planning.compose import (
    ModuleSpec,
    declared_outputs,
    merge_states,
    module_provider_configs,
    write_composition,
    write_state,
)
from infrablocks.planning.scratch import private_scratch
from infrablocks.planning.split import BlockSlice, split_plan
from infrablocks.state import DEPLOYED, Outputs
from infrablocks.terraform.plan import Plan, ResourceChange

if TYPE_CHECKING:
    import networkx as nx

    from infrablocks.deploy.workspace import Workspace
    from infrablocks.registry import BlockVersion
    from infrablocks.resolve import Resolution
    from infrablocks.runner import CancelToken

SAVED = "saved"          # apply the saved Terraform plan
REPLAN = "replan"        # plan again at apply time; apply only if the actions match
UNCHANGED = "unchanged"  # nothing to apply
NOT_PLANNED = "not planned"  # left out of the plan (see _plan_deferring): not applied


class CrossPlanError(InfrablocksError):
    """The composed plan could not be made (Terraform's own error, with what to do).

    ``blocks``: the blocks Terraform's errors point at; ``unknown_repetition``: the error is a
    ``count`` / ``for_each`` that depends on a value known only after apply.
    """

    def __init__(self, message: str, *, hint: str | None = None,
                 blocks: tuple[str, ...] = (), unknown_repetition: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.blocks = blocks
        self.unknown_repetition = unknown_repetition


@dataclass
class BlockPlan:
    """The plan of one block of the closure.

    ``changes``: resource changes with block-relative addresses (no no-ops, no data reads).
    ``unknown_inputs``: ``dependency.attribute`` of the inputs known only after apply;
    ``pending_images``: images (``name@version``) not built yet (their ids are known after
    apply). ``inputs``: the input values when all are known (sensitive ones included: never
    printed). ``refusal``: why `doit apply` would refuse this block (None: it would not).
    """

    block: str
    target: str
    deployed: str | None
    requires: list[str]
    changes: list[ResourceChange] = field(default_factory=list)
    outputs_change: bool = False
    unknown_inputs: list[str] = field(default_factory=list)
    pending_images: list[str] = field(default_factory=list)
    needs_record: bool = False
    note: str = ""
    refusal: str | None = None
    inputs: dict[str, Any] | None = field(default=None, repr=False)
    stop_instances: list[str] = field(default_factory=list)
    unplanned: str | None = None

    @property
    def has_changes(self) -> bool:
        return bool(self.changes) or self.outputs_change

    @property
    def known(self) -> bool:
        """Every input (and every image id) was known at plan time."""
        return not self.unknown_inputs and not self.pending_images

    @property
    def mode(self) -> str:
        if self.unplanned:
            return NOT_PLANNED
        if not self.has_changes and not self.needs_record:
            return UNCHANGED
        return SAVED if self.known else REPLAN

    def actions(self) -> list[tuple[str, str]]:
        return sorted((c.address, c.action) for c in self.changes)

    def counts(self) -> dict[str, int]:
        return Plan(None, self.has_changes, self.changes).counts()

    def summary(self) -> str:
        return Plan(None, self.has_changes, self.changes).summary()

    def to_json(self) -> dict[str, Any]:
        """The block's entry of `doit plan --json` (no input values: they may be secret)."""
        return {"block": self.block, "deployed": self.deployed, "target": self.target,
                "note": self.note or None,
                "has_changes": None if self.unplanned else self.has_changes,
                "changes": [{"address": a, "action": b} for a, b in self.actions()],
                "counts": self.counts(), "outputs_change": self.outputs_change,
                "unknown_inputs": list(self.unknown_inputs),
                "pending_images": list(self.pending_images),
                "planned_with": "known inputs" if self.known else "unknown inputs",
                "apply": self.mode, "refusal": self.refusal}


@dataclass
class EnvironmentPlan:
    """The cross-block plan of ``targets`` in ``environment``; ``blocks`` in dependency order."""

    environment: str
    subnet: str
    targets: list[str]
    resolution: Resolution
    blocks: list[BlockPlan]
    fingerprint: dict[str, dict[str, Any]]
    terraform_version: str
    seconds: float = 0.0
    saved_to: Path | None = None

    def block(self, name: str) -> BlockPlan:
        return next(b for b in self.blocks if b.block == name)

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "targets": list(self.targets),
                "blocks": [b.to_json() for b in self.blocks],
                "saved_to": str(self.saved_to) if self.saved_to else None,
                "seconds": round(self.seconds, 2)}


def plan_environment(workspace: Workspace, targets: list[str], environment: str, *,
                     out: Path | None = None, jobs: int = 4,
                     token: CancelToken | None = None) -> EnvironmentPlan:
    """Plan every block ``targets`` need in ``environment`` at once; see the module docstring.

    Raises ConfigError / UsageError for resolution problems (as `create` does),
    :class:`CrossPlanError` when Terraform cannot plan the composition.
    """
    from infrablocks.deploy.orchestrate import (
        check_auto_create,
        refuse_sensitive_leaks,
        resolve_for_environment,
    )
    from infrablocks.graph import dependency_graph, topological_order
    from infrablocks.interface_cache import dependency_attributes
    from infrablocks.planning.planfile import environment_fingerprint

    started = time.monotonic()
    if out is not None:
        from infrablocks.planning.planfile import check_plan_path

        check_plan_path(out)
    resolution = resolve_for_environment(workspace, targets, environment)
    check_auto_create(workspace, resolution, environment)
    refuse_sensitive_leaks(workspace, resolution)   # its logs would print them
    # images an apply would not make (AWS: AMIs) are named now, as create names them, instead
    # of the blocks' own image look-ups failing the plan
    workspace.platform(environment).check_images(sorted(
        {image for version in resolution.selected.values() for image in version.images}))
    order = topological_order(dependency_graph(resolution))
    backend = workspace.backend
    fingerprint = environment_fingerprint(workspace, environment, order)
    # a saved plan (--out) is applied on the subnet it was made for: claimed like apply's,
    # and held while the plan file exists (nothing is deployed yet to hold it otherwise)
    subnet = workspace.subnet(environment, claim=out is not None,
                              saved_plan=Path(out) if out is not None else None)
    records = {name: backend.get_record(environment, name) for name in order}
    states = {name: backend.read_state(environment, name) for name in order}
    pending = {name: _pending_images(workspace, environment, resolution.selected[name])
               for name in order}
    specs = [ModuleSpec(name, workspace.block_module(environment, resolution.selected[name]),
                        dependency_attributes(workspace.repo_root, resolution.selected[name]),
                        tuple(sorted({ref.split("@")[0] for ref in pending[name]})))
             for name in order]
    tf_version = workspace.terraform_binary().version
    scratch = private_scratch(workspace.work_root, "plan")
    try:
        composed, deferred = _plan_deferring(
            workspace, environment, subnet, scratch, specs, states, tf_version,
            dependency_graph(resolution), token)
        slices = split_plan(composed, [n for n in order if n not in deferred])
        by_name = {spec.block: spec for spec in specs}
        blocks = [_block_plan(workspace, environment, subnet, resolution.selected[name],
                              slices, records[name], states[name], by_name, pending[name])
                  if name not in deferred else
                  _deferred_plan(resolution.selected[name], records[name], deferred[name])
                  for name in order]
        result = EnvironmentPlan(environment, subnet, list(resolution.targets), resolution,
                                 blocks, fingerprint, tf_version)
        if out is not None:
            from infrablocks.planning.planfile import write_plan_file

            saved = _save_block_plans(workspace, result, scratch / "blocks", jobs, token)
            write_plan_file(out, manifest(workspace, result), saved)
            result.saved_to = out
        result.seconds = time.monotonic() - started
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _pending_images(workspace: Workspace, environment: str,
                    version: BlockVersion) -> list[str]:
    """The images the version lists that the environment's platform does not have yet."""
    return workspace.platform(environment).missing_images(version.images)


def _plan_deferring(workspace: Workspace, environment: str, subnet: str, scratch: Path,
                    specs: list[ModuleSpec], states: Mapping[str, Mapping[str, Any] | None],
                    tf_version: str, graph: nx.DiGraph[str], token: CancelToken | None
                    ) -> tuple[Plan, dict[str, str]]:
    """Plan the composition; leave out what Terraform cannot plan before an apply.

    A ``count`` or ``for_each`` that depends on a value known only after apply makes Terraform
    refuse the whole plan ("Invalid count argument"). The blocks it names, and their dependents,
    are then left out and the rest is planned again; the answer says why each was left out.
    Returns the plan and ``{block: why it was left out}``.
    """
    import networkx as nx

    deferred: dict[str, str] = {}
    attempt = 0
    while True:
        kept = [spec for spec in specs if spec.block not in deferred]
        composition = scratch / f"composed-{attempt}"
        composition.mkdir(mode=0o700)
        write_composition(composition, kept, environment=environment, subnet=subnet)
        deployed: dict[str, Mapping[str, Any]] = {}
        for spec in kept:
            state = states.get(spec.block)
            if state and state.get("resources"):
                deployed[spec.block] = state
        if deployed:
            write_state(composition, merge_states(
                deployed,
                {n: module_provider_configs(composition / "modules" / n) for n in deployed},
                tf_version))
        try:
            return _plan_composition(workspace, environment, composition, token), deferred
        except CrossPlanError as exc:
            planned = {spec.block for spec in kept}
            stuck = [b for b in exc.blocks if b in planned] if exc.unknown_repetition else []
            if not stuck or len(stuck) + len(deferred) >= len(specs):
                raise
            for block in stuck:
                deferred[block] = (f"not planned: a count or for_each in {block} depends on a "
                                   "value known only after apply; plan it once its "
                                   "dependencies exist")
                for dependent in sorted(nx.descendants(graph, block)):
                    deferred.setdefault(dependent, f"not planned: it depends on {block}, "
                                                   "which cannot be planned yet")
        attempt += 1


def _deferred_plan(version: BlockVersion, record: Any, why: str) -> BlockPlan:
    deployed = record.version if record is not None and record.status == DEPLOYED else None
    return BlockPlan(block=version.block, target=str(version.version), deployed=deployed,
                     requires=sorted(version.requires), note=why, unplanned=why)


def _plan_composition(workspace: Workspace, environment: str, composition: Path,
                      token: CancelToken | None) -> Plan:
    from infrablocks.terraform.driver import TerraformError
    from infrablocks.terraform.init import ensure_init

    terraform = workspace.terraform(environment, "cross-block-plan")
    cancel = token.on_cancel(terraform.stop) if token is not None else contextlib.nullcontext()
    try:
        with cancel:
            ensure_init(workspace.repo_root, terraform, composition)
            return terraform.plan(composition, lock=False)
    except TerraformError as exc:
        raise _explained(exc, environment) from None


def _explained(exc: Exception, environment: str) -> CrossPlanError:
    """Terraform's error, with the blocks it names and what to do about the usual limit."""
    import re

    text = str(exc)
    # Terraform names the file of each error relative to the composition: "on modules/B/…".
    blocks = sorted(set(re.findall(r"(?:^|\s)modules/([A-Za-z_][A-Za-z0-9_-]*)/", text,
                                   re.MULTILINE)))
    where = f" (in block {', '.join(blocks)})" if blocks else ""
    hint = None
    if re.search(r"Invalid (count|for_each) argument", text):
        hint = ("a count or for_each depends on a value known only after apply: create the "
                f"dependencies it reads first (doit create DEPENDENCY --env {environment}), "
                "then plan again (docs/planning.md, limits)")
    message = text.replace("terraform plan for block 'cross-block-plan'", "the cross-block plan")
    return CrossPlanError(f"cannot plan the blocks together{where}:\n{message}", hint=hint,
                          blocks=tuple(blocks), unknown_repetition=hint is not None)


def _block_plan(workspace: Workspace, environment: str, subnet: str, version: BlockVersion,
                slices: Mapping[str, BlockSlice], record: Any, state: Mapping[str, Any] | None,
                specs: Mapping[str, ModuleSpec], pending_images: list[str]) -> BlockPlan:
    name = version.block
    piece = slices[name]
    deployed = record.version if record is not None and record.status == DEPLOYED else None
    entry = BlockPlan(block=name, target=str(version.version), deployed=deployed,
                      requires=sorted(version.requires), changes=list(piece.changes),
                      pending_images=list(pending_images))
    entry.needs_record = deployed != entry.target
    entry.outputs_change = _outputs_change(piece, state)
    inputs: dict[str, Any] = {"environment": environment, "subnet_cidr": subnet}
    for dependency, wanted in sorted(specs[name].wiring.items()):
        source = slices[dependency]
        provided = source.outputs.keys() | source.unknown_outputs
        if wanted is None:
            attributes = sorted(provided)
        else:
            present = declared_outputs(specs[dependency].source)
            attributes = [a for a in wanted if a in present]
        entry.unknown_inputs += [f"{dependency}.{a}" for a in attributes
                                 if a in source.unknown_outputs]
        inputs[dependency] = {a: source.outputs[a] for a in attributes if a in source.outputs}
    if entry.known:
        entry.inputs = inputs
    _judge(workspace, version, entry, environment)
    return entry


def _outputs_change(piece: BlockSlice, state: Mapping[str, Any] | None) -> bool:
    current = Outputs.from_state(state).unmasked() if state else None
    if piece.unknown_outputs:
        return True
    if current is None:
        return bool(piece.outputs)
    return _canonical(current) != _canonical(piece.outputs)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _judge(workspace: Workspace, version: BlockVersion, entry: BlockPlan,
           environment: str) -> None:
    """Notes, and the refusals `doit apply` will hold to: a stateful block is never replaced
    wholesale by one apply, nor moved to another version outside a rolling upgrade."""
    from infrablocks.deploy.replacements import instances_to_stop
    from infrablocks.rolling.declaration import declaration_for
    from infrablocks.rolling.plan import classify

    notes = []
    if entry.pending_images:
        notes.append(f"image {', '.join(entry.pending_images)} built at apply")
    stateful = workspace.registry.blocks[entry.block].stateful
    plan = Plan(None, entry.has_changes, entry.changes)
    if stateful and entry.deployed is not None and entry.deployed != entry.target:
        notes.append("version change of a stateful block: a rolling upgrade")
        entry.refusal = (f"{entry.block} is deployed at {entry.deployed}; moving a stateful "
                         f"block to {entry.target} is a rolling upgrade: doit upgrade "
                         f"{entry.block} --env {environment} --to {entry.target}")
    elif stateful and entry.changes:
        declaration = declaration_for(workspace.registry, version,
                                      workspace.platform(environment).name)
        replaced = ([a for unit in classify(plan, declaration).units for a in unit.actions]
                    if declaration is not None else plan.addresses("replace"))
        if replaced:
            notes.append(f"replaces instances of a stateful block: {', '.join(replaced)}")
            entry.refusal = (
                f"{entry.block} is stateful and this plan replaces {', '.join(replaced)} in "
                "one apply; its instances are replaced one at a time by the rolling procedure: "
                f"doit upgrade {entry.block} --env {environment} (a new version), or doit "
                f"create {entry.block} --env {environment} (repairs at the same version)")
    entry.stop_instances = instances_to_stop(plan)
    entry.note = "; ".join(notes)


# -- saving ---------------------------------------------------------------------------------------


def _save_block_plans(workspace: Workspace, result: EnvironmentPlan, work_root: Path,
                      jobs: int, token: CancelToken | None) -> dict[str, Path]:
    """Terraform's own saved plan for each block whose inputs were all known."""
    from infrablocks.runner import CancelToken

    wanted = [b for b in result.blocks if b.mode == SAVED]
    if not wanted:
        return {}
    work_root.mkdir(mode=0o700)
    token = token or CancelToken()
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(wanted))))
    try:
        futures = [pool.submit(_save_one, workspace, result, b, work_root, token)
                   for b in wanted]
        return {b.block: f.result() for b, f in zip(wanted, futures, strict=True)}
    except BaseException:
        token.cancel("planning stopped")  # a Ctrl-C or a failed block stops the other plans
        raise
    finally:
        pool.shutdown(wait=True)


def _save_one(workspace: Workspace, result: EnvironmentPlan, entry: BlockPlan,
              work_root: Path, token: CancelToken | None) -> Path:
    from infrablocks.contracts import sensitive_dependencies
    from infrablocks.paths import work_dir
    from infrablocks.terraform.driver import TerraformError
    from infrablocks.terraform.init import ensure_init
    from infrablocks.terraform.workdir import Inputs, prepare_workdir

    environment = result.environment
    version = result.resolution.selected[entry.block]
    backend = workspace.backend.terraform_backend(environment, entry.block, create=False)
    assert entry.inputs is not None
    inputs = Inputs(entry.inputs, sensitive=sensitive_dependencies(   # TF_VAR_, masked in logs
        version, entry.inputs, result.resolution.selected,
        work_dir(workspace.repo_root) / "cache" / "modules"))
    workdir = prepare_workdir(work_root, environment, entry.block,
                              workspace.block_module(environment, version), backend, inputs)
    terraform = workspace.terraform(environment, entry.block)
    cancel = token.on_cancel(terraform.stop) if token is not None else contextlib.nullcontext()
    try:
        with cancel:
            ensure_init(workspace.repo_root, terraform, workdir)
            plan = terraform.plan(workdir, lock=False, out=Path(f"{entry.block}.tfplan"))
    except TerraformError as exc:
        raise CrossPlanError(f"cannot save the plan of {entry.block}: {exc}") from None
    mine = sorted((c.address, c.action) for c in plan.changes)
    if mine != entry.actions():
        raise CrossPlanError(
            f"the plan of {entry.block} on its own differs from the cross-block plan "
            f"(something changed while planning?): {_difference(entry.actions(), mine)}",
            hint="run the same doit plan again")
    assert plan.plan_file is not None
    return plan.plan_file


def _difference(reviewed: list[tuple[str, str]], now: list[tuple[str, str]]) -> str:
    from infrablocks.planning.planfile import describe_difference

    return describe_difference(reviewed, now)


def digest_inputs(inputs: Mapping[str, Any]) -> dict[str, str]:
    """Per input variable, the SHA-256 of its canonical JSON (compares without keeping values)."""
    return {name: hashlib.sha256(_canonical(value).encode()).hexdigest()
            for name, value in sorted(inputs.items())}


def code_digest(module: Path) -> str:
    """SHA-256 over the files a working directory gets from a block version's module (on the
    environment's platform: ``Workspace.block_module``)."""
    from infrablocks.terraform.workdir import source_files

    digest = hashlib.sha256()
    for rel, path in sorted(source_files(module)):
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def manifest(workspace: Workspace, result: EnvironmentPlan) -> dict[str, Any]:
    """What a saved plan file records besides Terraform's saved plans."""
    from infrablocks.state import current_identity
    from infrablocks.state.records import utc_now_iso

    blocks = []
    for entry in result.blocks:
        version = result.resolution.selected[entry.block]
        blocks.append({
            **entry.to_json(),
            "requires": list(entry.requires),
            "images": list(version.images),
            "code_digest": code_digest(workspace.block_module(result.environment, version)),
            "inputs_digests": digest_inputs(entry.inputs) if entry.inputs is not None else None,
            "stop_instances": list(entry.stop_instances),
        })
    return {"environment": result.environment, "subnet": result.subnet,
            "targets": list(result.targets), "terraform_version": result.terraform_version,
            "created_at": utc_now_iso(), "created_by": current_identity(),
            "fingerprint": result.fingerprint, "blocks": blocks}
