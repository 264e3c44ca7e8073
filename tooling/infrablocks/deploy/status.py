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
    cause: list[str] = field(default_factory=list)  # where a drift comes from: "edited code:
    #                          main.tf (changed)", "changed inputs: base", "the infrastructure"
    code_edited: list[str] = field(default_factory=list)   # files differing from those applied
    declared: bool = True               # blocks.toml still declares the version
    # newer versions the deployed blocks would accept but the environment's pin keeps out
    excluded_by_pin: list[str] = field(default_factory=list)
    pin: str | None = None
    # an upgrade that did not finish (``rolling.journal.unfinished_upgrade``), else None
    unfinished_upgrade: dict[str, Any] | None = None


@dataclass
class EnvironmentStatus:
    environment: str
    declared: bool
    blocks: list[BlockStatus] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "declared": self.declared,
                "blocks": [asdict(b) for b in self.blocks], "warnings": list(self.warnings)}


def environment_status(workspace: Workspace, environment: str, *,
                       drift: bool = True) -> EnvironmentStatus:
    """Each deployment's record, its drift (one ``terraform plan`` per deployed block, side by
    side) and where the drift comes from: code edited since it was applied (the record's code
    digest), inputs that changed (the record's input digests: a dependency's outputs moved),
    else the infrastructure itself. A deployment of a version blocks.toml no longer declares is
    planned from the code kept with its record, and warned about."""
    from infrablocks.deploy.block_ops import BlockRun, plan_block
    from infrablocks.deploy.sources import version_for_record
    from infrablocks.release.digest import changed_inputs, input_digests
    from infrablocks.release.frozen import code_changes, undeclared_deployments
    from infrablocks.rolling.journal import unfinished_upgrade

    records = sorted(workspace.backend.list_records(environment), key=lambda r: r.block)
    status = EnvironmentStatus(environment, environment in workspace.registry.environments)
    deployed = {r.block: r.version for r in records}
    by_block = {r.block: r for r in records}
    undeclared = undeclared_deployments(workspace.registry, records)
    for text in undeclared:
        status.warnings.append(f"{text}: blocks.toml no longer declares this version; it can "
                               "still be destroyed (from the code kept with its record)")
    pins = workspace.pins(environment)
    for record in records:
        allowed, pinned_out = newer_versions(workspace, environment, record.block, deployed)
        pin = pins.get(record.block)
        failed_action = record.extra.get("failed_action")   # "destroy": partly destroyed
        status.blocks.append(BlockStatus(
            record.block, record.version,
            f"{record.status} ({failed_action})" if failed_action else record.status,
            record.applied_at, record.applied_by,
            record.terraform_version, newer_allowed=allowed, excluded_by_pin=pinned_out,
            pin=None if pin is None else str(pin),
            unfinished_upgrade=unfinished_upgrade(workspace.backend, environment, record.block),
            declared=f"{record.block} {record.version} in {environment}" not in undeclared))

    def check_drift(entry: BlockStatus) -> None:
        try:
            record = by_block[entry.block]
            version, _ = version_for_record(workspace, environment, record)
            edited = code_changes(version, record) or []
            entry.code_edited = edited
            run = BlockRun(workspace, environment, version, workspace.subnet(environment))
            recorded_inputs = record.input_digests
            inputs = (changed_inputs(input_digests(run.inputs()), recorded_inputs)
                      if recorded_inputs is not None else [])
            plan = plan_block(run, CancelToken())
            entry.drift = f"drifted: {plan.summary()}" if plan.has_changes else "none"
            if plan.has_changes:
                entry.cause = ([f"edited code: {', '.join(edited)}"] if edited else []) + \
                    ([f"changed inputs: {', '.join(inputs)}"] if inputs else [])
                if not entry.cause:
                    entry.cause = ["the infrastructure (the code and inputs are those applied)"]
        except InfrablocksError as exc:
            entry.drift = f"error: {exc.message.splitlines()[0]}"

    checked = [b for b in status.blocks if drift and b.status == "deployed"]
    if checked:  # one `terraform plan` per block, side by side (each reads only its own state)
        with ThreadPoolExecutor(max_workers=min(DRIFT_JOBS, len(checked))) as pool:
            list(pool.map(check_drift, checked))
    if not drift:
        from infrablocks.deploy.sources import version_for_record as version_of

        for entry in status.blocks:
            try:
                version, _ = version_of(workspace, environment, by_block[entry.block])
                entry.code_edited = code_changes(version, by_block[entry.block]) or []
            except InfrablocksError:
                continue
    return status


def newer_allowed(workspace: Workspace, environment: str, block: str,
                  deployed: dict[str, str]) -> list[str]:
    """Newer versions of ``block`` that every deployed dependent's requirement still accepts,
    whose own requirements the deployed dependencies meet, and that no pin excludes."""
    return newer_versions(workspace, environment, block, deployed)[0]


def newer_versions(workspace: Workspace, environment: str, block: str,
                   deployed: dict[str, str]) -> tuple[list[str], list[str]]:
    """(newer versions allowed, newer versions only the environment's pin of ``block``
    excludes): versions above the deployed one that every deployed dependent's requirement
    accepts and whose own requirements the deployed dependencies meet."""
    from infrablocks.versions import parse_version

    registry = workspace.registry
    if block not in registry.blocks:
        return [], []
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
    allowed, pinned_out = [], []
    for version, candidate in registry.blocks[block].versions.items():
        if version <= current:
            continue
        if not all(c.allows(version) for c in constraints):
            continue
        own_ok = all(dep not in deployed or constraint.allows(parse_version(deployed[dep]))
                     for dep, constraint in candidate.requires.items())
        if not own_ok:
            continue
        if block in pins and pins[block] != version:
            pinned_out.append(str(version))
        else:
            allowed.append(str(version))
    return allowed, pinned_out
