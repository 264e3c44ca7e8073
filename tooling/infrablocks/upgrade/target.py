"""Which version an upgrade goes to, and whether the environment accepts it.

The target is ``--to`` when given (an older one is a downgrade, said in the notes; an upgrade to
another version than the environment's pin moves the pin in blocks.toml once it has succeeded),
else the environment's pin, else the newest
version above the deployed one that (a) every deployed dependent's constraint allows and (b)
whose own requirements the deployed dependencies satisfy. A refusal lists the blocks in the way,
their constraints, and the versions of those blocks that would accept the target. Newer
versions a pin keeps out, and a downgrade, are said in :attr:`UpgradeTarget.notes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infrablocks.errors import UsageError
from infrablocks.rolling.outcome import UpgradeRefused
from infrablocks.state import DEPLOYED

if TYPE_CHECKING:
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.registry import BlockVersion


@dataclass
class UpgradeTarget:
    current: BlockVersion
    target: BlockVersion
    pin: str | None = None   # the environment's pin of the block, when it has one
    notes: list[str] = field(default_factory=list)   # what the user should know of the choice

    @property
    def changes_version(self) -> bool:
        return self.current.version != self.target.version

    @property
    def downgrade(self) -> bool:
        return self.target.version < self.current.version


def deployed_version(workspace: Workspace, environment: str, block: str) -> BlockVersion:
    record = workspace.backend.get_record(environment, block)
    if record is None or record.status != DEPLOYED:
        state = "not deployed" if record is None else f"in status {record.status}"
        raise UsageError(f"{block} is {state} in environment {environment}: nothing to upgrade",
                         hint=f"create it: doit create {block} --env {environment}")
    return workspace.registry.block_version(block, record.version)


def blockers(workspace: Workspace, environment: str, candidate: BlockVersion) -> list[str]:
    """Why ``candidate`` cannot be deployed in the environment (empty when it can)."""
    registry = workspace.registry
    block = candidate.block
    deployed = workspace.deployed_versions(environment)
    problems = []
    for name, version in sorted(deployed.items()):
        if name == block:
            continue
        try:
            dependent = registry.block_version(name, version)
        except UsageError:
            continue
        constraint = dependent.requires.get(block)
        if constraint is None or constraint.allows(candidate.version):
            continue
        accepting = [str(v.version) for v in registry.blocks[name].versions.values()
                     if block in v.requires and v.requires[block].allows(candidate.version)]
        problems.append(
            f"{name} {version} (deployed) requires {block} {constraint}; versions of {name} "
            f"that accept {block} {candidate.version}: {', '.join(accepting) or 'none'}")
    for dependency, constraint in sorted(candidate.requires.items()):
        have = deployed.get(dependency)
        if have is None:
            problems.append(f"{candidate.label} requires {dependency} {constraint}, which is "
                            f"not deployed in {environment}")
        elif not constraint.allows(have):
            problems.append(f"{candidate.label} requires {dependency} {constraint}, but "
                            f"{dependency} {have} is deployed")
    return problems


def choose_target(workspace: Workspace, environment: str, block: str,
                  to: str | None = None) -> UpgradeTarget:
    registry = workspace.registry
    registry.block(block)
    current = deployed_version(workspace, environment, block)
    pin = workspace.pins(environment).get(block)
    if to is not None:
        target = registry.block_version(block, to)
    elif pin is not None:
        target = registry.block_version(block, pin)
    else:
        newer = [v for v in registry.blocks[block].versions.values()
                 if v.version > current.version]
        allowed = [v for v in newer if not blockers(workspace, environment, v)]
        if allowed:
            target = allowed[-1]
        elif newer:
            problems = blockers(workspace, environment, newer[-1])
            raise UpgradeRefused(
                f"{block} cannot be upgraded in {environment}: no version above "
                f"{current.version} fits the deployed blocks\n  "
                + "\n  ".join(problems),
                hint="upgrade the blocks named above first, or pass --to a version they accept")
        else:
            target = current
    if target.version != current.version:
        problems = blockers(workspace, environment, target)
        if problems:
            raise UpgradeRefused(
                f"upgrading {block} to {target.version} in {environment} is refused: "
                + "\n  " + "\n  ".join(problems),
                hint="upgrade those blocks first to versions that accept it")
    choice = UpgradeTarget(current, target, None if pin is None else str(pin))
    if choice.downgrade:
        choice.notes.append(f"{block} {current.version} → {target.version} is a DOWNGRADE (to "
                            f"an older version than the deployed one)")
    if to is None and pin is not None:
        excluded = [str(v.version) for v in registry.blocks[block].versions.values()
                    if v.version > target.version and not blockers(workspace, environment, v)]
        if excluded:
            choice.notes.append(
                f"{', '.join(excluded)} exist{'s' if len(excluded) == 1 else ''} but "
                f"environments.{environment}.pins.{block} = \"{pin}\" (blocks.toml) excludes "
                f"{'it' if len(excluded) == 1 else 'them'}: `doit upgrade {block} --env "
                f"{environment} --to {excluded[-1]}` upgrades and moves the pin")
    return choice
