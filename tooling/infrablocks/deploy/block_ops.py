"""Applying, planning and destroying one block version in one environment.

These are the work functions the DAG runner calls for each node. Each holds the block's lock in
the state backend while it changes anything, keeps a deployment record beside the state, and
reads its dependencies' outputs straight from their state (no ``terraform output`` per block).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import InfrablocksError, UsageError
from infrablocks.runner import Cancelled, CancelToken, Result
from infrablocks.state import CREATING, DEPLOYED, DESTROYING, FAILED, Outputs, new_record

if TYPE_CHECKING:
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.registry import BlockVersion
    from infrablocks.terraform.driver import Terraform
    from infrablocks.terraform.plan import Plan

STOP_GRACE = 15.0  # seconds an instance gets to stop before SIGKILL (an etcd member without
#                    quorum takes ~7 s to give up)
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

    def inputs(self) -> dict[str, Any]:
        """Variables for the block: environment, subnet and one object per dependency.

        Each dependency object carries only the attributes the block's variable declares
        (Terraform refuses nothing extra today, but sending secrets a block did not ask for
        would widen where they end up).
        """
        values: dict[str, Any] = {"environment": self.environment, "subnet_cidr": self.subnet}
        if not self.version.requires:
            return values
        attributes = dependency_attributes(self.workspace, self.version)
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
        return values

    def prepare(self, inputs: dict[str, Any] | None = None) -> Path:
        """The block's working directory, ready for ``terraform init``.

        The working area is private (0700): the inputs file and saved plans hold dependency
        outputs, sensitive ones included.
        """
        from infrablocks.terraform.workdir import prepare_workdir

        work_root = self.workspace.work_root
        work_root.mkdir(parents=True, exist_ok=True)  # parents keep their modes: the local
        work_root.chmod(0o700)                        # cloud may live in .infrablocks/
        return prepare_workdir(
            self.workspace.work_root, self.environment, self.block, self.version.path,
            self.workspace.backend.terraform_backend(self.environment, self.block),
            self.inputs() if inputs is None else inputs)


class PhaseClock:
    """Seconds spent in each phase of one block's work (for the run report), and the phase
    shown by the progress display."""

    def __init__(self, token: CancelToken) -> None:
        self.token = token
        self.seconds: dict[str, float] = {}
        self._current: str | None = None
        self._since = 0.0

    def __call__(self, name: str, label: str | None = None) -> None:
        """Enter phase ``name`` (displayed as ``label``), closing the previous one."""
        self._close()
        self._current, self._since = name, time.monotonic()
        self.token.phase(label or name)

    def _close(self) -> None:
        if self._current is not None:
            spent = self.seconds.get(self._current, 0.0) + time.monotonic() - self._since
            self.seconds[self._current] = round(spent, 3)
            self._current = None

    def done(self) -> dict[str, float]:
        self._close()
        return dict(self.seconds)


def dependency_attributes(workspace: Workspace, version: BlockVersion
                          ) -> dict[str, list[str] | None]:
    """Per dependency, the attributes the block's variable of that name declares (its
    ``object({...})`` type), or None when it is not an object type (then all outputs go).

    Parsing a module's HCL with python-hcl2 costs 0.2-0.4 s per block, so the answer is cached
    in ``.infrablocks/cache/inputs/`` under a digest of the module's ``*.tf`` files.
    """
    import hashlib
    import json

    from infrablocks.paths import work_dir

    files = sorted(version.path.glob("*.tf"))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    cache = (work_dir(workspace.repo_root) / "cache" / "inputs"
             / f"{version.block}-{version.version}-{digest.hexdigest()[:32]}.json")
    try:
        cached = json.loads(cache.read_text())
        if isinstance(cached, dict) and set(cached) == set(version.requires):
            return cached
    except (OSError, ValueError):
        pass
    from infrablocks.contracts import object_attributes, read_interface

    interface = read_interface(version.path, block=version.block, version=version.version)
    answer: dict[str, list[str] | None] = {}
    for dependency in version.requires:
        declared = object_attributes(interface.variables.get(dependency))
        answer[dependency] = None if declared is None else sorted(declared)
    cache.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(answer, sort_keys=True))
    os.replace(temporary, cache)
    return answer


def _deployed(workspace: Workspace, environment: str, block: str) -> bool:
    record = workspace.backend.get_record(environment, block)
    return record is not None and record.status == DEPLOYED


def ensure_init(workspace: Workspace, terraform: Terraform, workdir: Path) -> bool:
    """``terraform init`` when needed, safely beside other blocks' Terraform runs.

    Terraform's plugin cache is not safe for concurrent use, and two races were seen with
    blocks running side by side: two first inits at once fail with "failed to create directory
    …/plugin-cache/…: file exists"; and every init re-creates the cache's entry for the mirrored
    local-cloud provider (a symlink into the mirror), so another block's running command,
    which reaches its provider through that entry, can fail with "there is no package … cached
    in .terraform/providers". So inits run one at a time per repository (a file lock, also
    across processes; an init is ~0.1-0.2 s), and after an init the working directory's
    provider links are pointed past the cache at their real, stable targets.
    """
    import fcntl

    from infrablocks.terraform.toolchain import cli_config_paths

    cache = cli_config_paths(workspace.repo_root).plugin_cache_dir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / "init.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ran = terraform.ensure_init(workdir)
        if ran:
            _bypass_plugin_cache(workdir / ".terraform" / "providers", cache)
        return ran


def _bypass_plugin_cache(providers: Path, cache: Path) -> None:
    """Re-point symlinks into ``cache`` at what they finally resolve to (same content)."""
    if not providers.is_dir():
        return
    for link in providers.glob("*/*/*/*/*"):   # HOST/NAMESPACE/TYPE/VERSION/PLATFORM
        if not link.is_symlink():
            continue
        target = Path(os.readlink(link))
        if not target.is_absolute():
            target = link.parent / target
        if not target.is_relative_to(cache):
            continue  # not through the cache
        final = target.resolve()
        if final.is_relative_to(cache):
            continue  # a real directory in the cache (a registry provider): stable
        temporary = link.with_name(f".{link.name}.tmp")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(final, target_is_directory=True)
        os.replace(temporary, link)


def _terraform_for(run: BlockRun, token: CancelToken) -> Terraform:
    return run.workspace.terraform(run.environment, run.block)


@contextlib.contextmanager
def _interruptible(terraform: Terraform, token: CancelToken) -> Iterator[None]:
    """Forward a cancel of the run to Terraform (one graceful SIGINT)."""
    with token.on_cancel(terraform.stop):
        yield
    token.raise_if_cancelled()


def ensure_images(run: BlockRun, token: CancelToken) -> list[str]:
    """Build and register the images the block version lists, when the cloud lacks them."""
    from infrablocks.images.build import ensure_image
    from infrablocks.images.refs import parse_image_ref

    ids = []
    for text in run.version.images:
        token.raise_if_cancelled()
        token.phase(f"image {text}")
        ids.append(ensure_image(run.workspace.repo_root, parse_image_ref(text),
                                run.workspace.cloud).id)
    return ids


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
        clock = PhaseClock(token)
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
                ensure_init(workspace, terraform, workdir)
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
        return Result.success(action="created" if record is None else "updated",
                              version=str(run.version.version),
                              changes=applied_changes(applied.log_path) if applied else {},
                              seconds=round(time.monotonic() - started, 2),
                              phases=clock.done())


def _update(run: BlockRun, terraform: Terraform, workdir: Path, clock: PhaseClock) -> Any:
    """An update: plan, stop the instances it replaces together with their volume attachment
    (a running instance refuses to let its volume go), then apply exactly that plan."""
    from infrablocks.cloud.local.ops import LocalCloudOps
    from infrablocks.deploy.replacements import instances_to_stop, stop_for_replacement

    clock("plan")
    plan = terraform.plan(workdir)
    if not plan.has_changes:
        return None
    stopping = instances_to_stop(plan)
    if stopping:
        clock("stop replaced instances")
        ops = LocalCloudOps(run.workspace.cloud)
        for instance_id in stopping:
            stop_for_replacement(ops, instance_id)
    clock("apply")
    return terraform.apply(workdir, plan)


_APPLY_SUMMARY = re.compile(r"(\d+) added, (\d+) changed, (\d+) destroyed")


def applied_changes(log_path: Path) -> dict[str, int]:
    """Resources created / updated / deleted, from the apply's closing line in its log
    (``Apply complete! Resources: 9 added, 0 changed, 0 destroyed.``)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {}
    found = _APPLY_SUMMARY.findall(text)
    if not found:
        return {}
    counts = dict(zip(("create", "update", "delete"), map(int, found[-1]), strict=True))
    return {action: n for action, n in counts.items() if n}


def plan_block(run: BlockRun, token: CancelToken) -> Plan:
    """What applying ``run.version`` would change (read-only: no lock, no record)."""
    workdir = run.prepare()
    terraform = _terraform_for(run, token)
    with _interruptible(terraform, token):
        ensure_init(run.workspace, terraform, workdir)
        return terraform.plan(workdir)


def stop_block_instances(workspace: Workspace, environment: str, block: str, *,
                         grace: float = STOP_GRACE) -> list[str]:
    """Stop the block's running instances (in parallel), so their volumes may detach.

    This is the pre-destroy operation: like a mounted EBS volume, a local-cloud volume refuses
    to detach from a running instance.
    """
    cloud = workspace.cloud
    running = [i for i in cloud.describe_instances(
        filters={"tag:environment": environment, "tag:block": block})
        if i.state not in ("stopped", "terminated")]
    if not running:
        return []
    with ThreadPoolExecutor(max_workers=len(running)) as pool:
        list(pool.map(lambda i: cloud.stop_instance(i.id, grace=grace), running))
    return [i.name for i in running]


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
        clock = PhaseClock(token)
        clock("stop instances")
        stopped = stop_block_instances(workspace, environment, block, grace=DESTROY_STOP_GRACE)
        workdir = run.workspace.work_root / environment / block
        inputs_file = workdir / "_infrablocks_inputs.auto.tfvars.json"
        if inputs_file.is_file():
            import json

            inputs = json.loads(inputs_file.read_text())
        else:
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
            ensure_init(workspace, terraform, workdir)
            clock("destroy")
            terraform.destroy(workdir)
        clock("record")
        backend.delete_record(environment, block)
        backend.purge(environment, block)
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
