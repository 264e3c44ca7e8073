"""What is deployed where: records, drift (``plan -detailed-exitcode``) and allowed upgrades."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from infrablocks.errors import InfrablocksError
from infrablocks.runner import CancelToken

if TYPE_CHECKING:
    from infrablocks.deploy.workspace import Workspace

DRIFT_JOBS = 4  # drift checks (terraform plan) at once


@dataclass
class BlockStatus:
    block: str
    version: str
    status: str
    applied_at: str
    applied_by: str
    terraform_version: str
    drift: str = "not checked"          # "none", "drifted: …", "error: …", "not checked"
    newer_allowed: list[str] = field(default_factory=list)


@dataclass
class EnvironmentStatus:
    environment: str
    declared: bool
    blocks: list[BlockStatus] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "declared": self.declared,
                "blocks": [asdict(b) for b in self.blocks]}


def environment_status(workspace: Workspace, environment: str, *,
                       drift: bool = True) -> EnvironmentStatus:
    from infrablocks.deploy.block_ops import BlockRun, plan_block

    records = sorted(workspace.backend.list_records(environment), key=lambda r: r.block)
    status = EnvironmentStatus(environment, environment in workspace.registry.environments)
    deployed = {r.block: r.version for r in records}
    for record in records:
        status.blocks.append(BlockStatus(
            record.block, record.version, record.status, record.applied_at, record.applied_by,
            record.terraform_version,
            newer_allowed=newer_allowed(workspace, environment, record.block, deployed)))

    def check_drift(entry: BlockStatus) -> None:
        try:
            version = workspace.registry.block_version(entry.block, entry.version)
            run = BlockRun(workspace, environment, version, workspace.subnet(environment))
            plan = plan_block(run, CancelToken())
            entry.drift = f"drifted: {plan.summary()}" if plan.has_changes else "none"
        except InfrablocksError as exc:
            entry.drift = f"error: {exc.message.splitlines()[0]}"

    checked = [b for b in status.blocks if drift and b.status == "deployed"]
    if checked:  # one `terraform plan` per block, side by side (each reads only its own state)
        with ThreadPoolExecutor(max_workers=min(DRIFT_JOBS, len(checked))) as pool:
            list(pool.map(check_drift, checked))
    return status


def newer_allowed(workspace: Workspace, environment: str, block: str,
                  deployed: dict[str, str]) -> list[str]:
    """Newer versions of ``block`` that every deployed dependent's requirement still accepts,
    whose own requirements the deployed dependencies meet, and that no pin excludes."""
    from infrablocks.versions import parse_version

    registry = workspace.registry
    if block not in registry.blocks:
        return []
    current = parse_version(deployed[block])
    pins = workspace.pins(environment)
    constraints = []
    for other, version_text in deployed.items():
        if other == block or other not in registry.blocks:
            continue
        try:
            other_version = registry.block_version(other, version_text)
        except InfrablocksError:
            continue
        if block in other_version.requires:
            constraints.append(other_version.requires[block])
    allowed = []
    for version, candidate in registry.blocks[block].versions.items():
        if version <= current or (block in pins and pins[block] != version):
            continue
        if not all(c.allows(version) for c in constraints):
            continue
        own_ok = all(dep not in deployed or constraint.allows(parse_version(deployed[dep]))
                     for dep, constraint in candidate.requires.items())
        if own_ok:
            allowed.append(str(version))
    return allowed
