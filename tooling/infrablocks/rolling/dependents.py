"""After an upgrade changed a block's outputs: re-apply the deployed blocks that read them.

The re-apply walks the upgraded block's deployed descendants in dependency order. A block is
planned when one of its dependencies' outputs changed (the upgraded block's, or those of a
dependent re-applied before it), so a change travels as far as it reaches and no further.

Replacing an instance that has a volume attached means detaching the volume, which a running
instance refuses (as a mounted EBS volume does): the instances a re-apply replaces together
with their attachments are stopped first, the pre-operation the rolling engine does per unit.
A stateful dependent whose re-apply would replace instances is refused instead (it needs its
own rolling upgrade); the other dependents are still re-applied, and the refusal is raised at
the end, naming every refused block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from infrablocks.deploy.replacements import instances_to_stop, stop_for_replacement
from infrablocks.errors import InfrablocksError

if TYPE_CHECKING:
    from infrablocks.cloud.ops import CloudOps
    from infrablocks.deploy.workspace import Workspace

class DependentsRefused(InfrablocksError):
    """Stateful dependents were not re-applied: their instances would all be replaced."""




def reapply_dependents(workspace: Workspace, environment: str, block: str,
                       say: Callable[[str], None], ops: CloudOps | None = None) -> list[str]:
    """Apply each deployed dependent of ``block`` whose inputs changed, at its deployed version.

    Returns the blocks re-applied, in order. Raises ``DependentsRefused`` after the others when
    a stateful dependent would have instances replaced (see the module docstring).
    """
    import networkx as nx

    from infrablocks.deploy.block_ops import BlockRun
    from infrablocks.deploy.orchestrate import deployed_graph
    from infrablocks.state import new_record
    from infrablocks.terraform.init import ensure_init

    if ops is None:
        ops = workspace.platform(environment).ops
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
        version = workspace.registry.block_version(name, record.version)
        with backend.acquire_lock(environment, name, "re-apply"):
            run = BlockRun(workspace, environment, version, workspace.subnet(environment))
            workdir = run.prepare()
            terraform = workspace.terraform(environment, name)
            ensure_init(workspace.repo_root, terraform, workdir)
            plan = terraform.plan(workdir)
            if not plan.has_changes:
                continue
            replaced = plan.addresses("replace")
            if workspace.registry.blocks[name].stateful and replaced:
                refused.append((name, f"applying them to {version.label} would replace "
                                      f"{', '.join(replaced)}"))
                continue
            say(f"re-apply {version.label} ({plan.summary()})")
            for instance_id in instances_to_stop(plan):
                say(f"re-apply {version.label}: stop {instance_id} (its volume must detach)")
                stop_for_replacement(ops, instance_id)
            terraform.apply(workdir, plan)
            outputs = backend.read_outputs(environment, name)
            backend.put_record(new_record(
                environment, name, record.version, outputs=outputs,
                terraform_version=workspace.terraform_binary().version))
            if outputs.digest() != record.outputs_digest:
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
                 "previous outputs until their instances are replaced one at a time: a new "
                 "version of each, rolled with `doit upgrade NAME --env "
                 f"{environment} --to VERSION`, applies the new inputs member by member")
    return done
