"""After a block's outputs changed: re-apply the deployed blocks that read them.

The mechanism `doit create` and `doit upgrade` share: the deployed descendants of the block
(from the deployment records, ``orchestrate.deployed_graph``) are walked in dependency order,
and each goes through ``block_ops.apply_block`` with ``only_if_stale``: it is planned only when
its inputs now differ from those its record says it was applied with (a record older than input
digests: when a dependency's outputs changed in this walk), so a change travels as far as it
reaches and no further. `create` runs the same thing inside its DAG
(``orchestrate.create_graph``); `upgrade` calls :func:`reapply_dependents` after its record.

Replacing an instance that has a volume attached means detaching the volume, which a running
instance refuses (as a mounted EBS volume does): the instances a re-apply replaces together
with their attachments are stopped first. After `upgrade`, a stateful dependent whose re-apply
would replace members is refused instead (``roll_stateful=False``: an upgrade does not start a
second rolling procedure on another block); the other dependents are still re-applied, and the
refusal is raised at the end, naming every refused block. `doit create` of that dependent rolls
its members one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from infrablocks.rolling.outcome import DependentsRefused

if TYPE_CHECKING:
    from infrablocks.cloud.ops import CloudOps
    from infrablocks.deploy.workspace import Workspace


def reapply_dependents(workspace: Workspace, environment: str, block: str,
                       say: Callable[[str], None], ops: CloudOps | None = None, *,
                       roll_stateful: bool = False) -> list[str]:
    """Apply each deployed dependent of ``block`` whose inputs changed, at its deployed version.

    Returns the blocks re-applied, in order. With ``roll_stateful`` False, raises
    ``DependentsRefused`` after the others when a stateful dependent would have members
    replaced (see the module docstring). ``ops`` is accepted for the callers' sake; the
    platform's own is used.
    """
    import networkx as nx

    from infrablocks.deploy.block_ops import BlockRun, RollRequired, apply_block
    from infrablocks.deploy.orchestrate import deployed_graph
    from infrablocks.deploy.sources import version_for_record
    from infrablocks.runner import CancelToken

    graph = deployed_graph(workspace, environment)
    if block not in graph:
        return []
    descendants = nx.descendants(graph, block)
    order = [n for n in nx.lexicographical_topological_sort(graph, key=str) if n in descendants]
    changed = {block}      # blocks whose outputs moved: their dependents' inputs did
    done: list[str] = []
    refused: list[tuple[str, str]] = []   # (block, why)
    backend = workspace.backend
    for name in order:
        if not changed & set(graph.predecessors(name)):
            continue
        record = backend.get_record(environment, name)
        if record is None:
            continue
        version, _ = version_for_record(workspace, environment, record)
        run = BlockRun(workspace, environment, version,
                       workspace.subnet(environment, claim=True))
        try:
            result = apply_block(run, CancelToken(), only_if_stale=True,
                                 changed_upstream=frozenset(changed),
                                 roll_stateful=roll_stateful)
        except RollRequired as exc:
            refused.append((name, f"applying them to {version.label} would replace "
                                  f"{', '.join(exc.replaced)}"))
            continue
        if result.detail.get("action") in ("untouched", "unchanged"):
            continue
        say(f"re-apply {version.label} ({result.detail.get('plan', 'applied')})")
        if result.detail.get("outputs_changed"):
            changed.add(name)
        done.append(name)
    if refused:
        names = ", ".join(name for name, _ in refused)
        raise DependentsRefused(
            f"{block} is upgraded in {environment}, but stateful dependents were refused a "
            "re-apply (it would replace their instances all at once):\n  " + "\n  ".join(
                f"{name} reads {block}'s changed outputs; {why}" for name, why in refused)
            + (f"\nre-applied: {', '.join(done)}" if done else ""),
            hint=f"{names} keep{'s' if len(refused) == 1 else ''} running with {block}'s "
                 "previous outputs until their instances are replaced one at a time: "
                 f"`doit create NAME --env {environment} --yes` rolls them member by member, "
                 "as does a new version of each, rolled with `doit upgrade NAME --env "
                 f"{environment} --to VERSION`")
    return done
