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

from infrablocks.errors import InfrablocksError, UsageError
from infrablocks.runner import Cancelled, CancelToken, Result
from infrablocks.state import CREATING, DEPLOYED, DESTROYING, FAILED, Outputs, new_record
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


def apply_block(run: BlockRun, token: CancelToken) -> Result:
    """Create or update the block to ``run.version``; a no-op when already there."""
    workspace, env, block = run.workspace, run.environment, run.block
    backend = workspace.backend
    with backend.acquire_lock(env, block, "create"):
        record = backend.get_record(env, block)
        if record and record.status == DEPLOYED and record.version == str(run.version.version):
            return Result.success(action="unchanged", version=record.version)
        if (record and record.status == DEPLOYED and workspace.registry.blocks[block].stateful
                and record.version != str(run.version.version)):
            raise InfrablocksError(
                f"{block} is deployed at {record.version} in {env}; moving a stateful block to "
                f"{run.version.version} is a rolling upgrade",
                hint=f"run: doit upgrade {block} --env {env} --to {run.version.version}")
        started = time.monotonic()
        clock = PhaseTimer(token.phase)
        _record_platform(workspace, env, block)
        clock("terraform probe")
        tf_version = workspace.terraform_binary().version
        clock("images")
        ensure_images(run, token)
        clock("inputs")
        workdir = run.prepare()
        terraform = _terraform_for(run, token)
        # An update that fails must not lose what was deployed before it.
        previous = (record.version if record and record.status == DEPLOYED
                    else record.extra.get("previous_version") if record else None)
        history = {"previous_version": previous} if previous else {}
        backend.put_record(new_record(env, block, str(run.version.version), outputs=None,
                                      terraform_version=tf_version,
                                      status=CREATING, extra=history))
        try:
            with _interruptible(terraform, token):
                clock("init")
                _init(run, terraform, workdir)
                # One `apply -auto-approve` (plans and applies in one process): a separate
                # plan + `show -json` + apply of the saved plan cost ~0.8 s more per block, and
                # nobody reviews a create's plan (that is what `doit plan` is for).
                if record is None:
                    clock("apply")
                    applied = terraform.apply(workdir)
                else:
                    applied = _update(run, terraform, workdir, clock)
        except (InfrablocksError, Cancelled):
            backend.put_record(new_record(env, block, str(run.version.version), outputs=None,
                                          terraform_version=tf_version,
                                          status=FAILED, extra=history))
            raise
        clock("record")
        outputs = backend.read_outputs(env, block)
        backend.put_record(new_record(env, block, str(run.version.version), outputs=outputs,
                                      terraform_version=tf_version))
        from infrablocks.terraform.applylog import applied_changes

        return Result.success(action="created" if record is None else "updated",
                              version=str(run.version.version),
                              changes=applied_changes(applied.log_path) if applied else {},
                              seconds=round(time.monotonic() - started, 2),
                              phases=clock.done())


def _record_platform(workspace: Workspace, environment: str, block: str) -> None:
    """The deployment remembers its platform; one held by another platform is refused."""
    from infrablocks.platforms.choice import check_recorded_platform, record_platform

    profile = workspace.platform_profile(environment)
    check_recorded_platform(workspace.backend, environment, block, profile)
    record_platform(workspace.backend, environment, block, profile)


def _update(run: BlockRun, terraform: Terraform, workdir: Path, clock: PhaseTimer) -> Any:
    """An update: plan, stop the instances it replaces together with their volume attachment
    (a running instance refuses to let its volume go), then apply exactly that plan."""
    from infrablocks.deploy.replacements import instances_to_stop, stop_for_replacement

    clock("plan")
    plan = terraform.plan(workdir)
    if not plan.has_changes:
        return None
    stopping = instances_to_stop(plan)
    if stopping:
        clock("stop replaced instances")
        ops = run.workspace.platform(run.environment).ops
        for instance_id in stopping:
            stop_for_replacement(ops, instance_id)
    clock("apply")
    return terraform.apply(workdir, plan)


def plan_block(run: BlockRun, token: CancelToken) -> Plan:
    """What applying ``run.version`` would change (read-only: no lock, no record)."""
    workdir = run.prepare()
    terraform = _terraform_for(run, token)
    with _interruptible(terraform, token):
        _init(run, terraform, workdir)
        return terraform.plan(workdir)


def destroy_block(workspace: Workspace, environment: str, block: str,
                  token: CancelToken) -> Result:
    """Destroy the block's resources in the environment, its state and record."""
    backend = workspace.backend
    with backend.acquire_lock(environment, block, "destroy"):
        record = backend.get_record(environment, block)
        state = backend.read_state(environment, block)
        if record is None and not (state and state.get("resources")):
            backend.delete_record(environment, block)
            return Result.success(action="absent")
        run = _run_for_record(workspace, environment, block, record)
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
        tf_version = workspace.terraform_binary().version
        if record is not None:
            backend.put_record(new_record(environment, block, record.version, outputs=None,
                                          terraform_version=tf_version,
                                          status=DESTROYING))
        with _interruptible(terraform, token):
            clock("init")
            _init(run, terraform, workdir)
            clock("destroy")
            terraform.destroy(workdir)
        clock("record")
        backend.delete_record(environment, block)
        backend.purge(environment, block)
        forget_private_dir(workdir)   # its sensitive inputs and plans go with the state
        return Result.success(action="destroyed", stopped=stopped, phases=clock.done())


def _run_for_record(workspace: Workspace, environment: str, block: str,
                    record: Any) -> BlockRun:
    registry = workspace.registry
    if record is None:
        raise InfrablocksError(
            f"{block} has state in {environment} but no deployment record",
            hint=f"inspect {workspace.backend.describe(environment, block)}")
    version = registry.block_version(block, record.version)
    return BlockRun(workspace, environment, version, workspace.subnet(environment))


def read_block_outputs(workspace: Workspace, environment: str, block: str) -> Outputs:
    outputs = workspace.backend.read_outputs(environment, block)
    if not outputs and workspace.backend.get_record(environment, block) is None:
        raise UsageError(f"{block} is not deployed in environment {environment}",
                               hint=f"doit status --env {environment}")
    return outputs
