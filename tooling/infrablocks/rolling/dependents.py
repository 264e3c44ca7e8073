"""After an upgrade changed a block's outputs: re-apply the deployed blocks that read them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from infrablocks.errors import InfrablocksError

if TYPE_CHECKING:
    from infrablocks.deploy.workspace import Workspace


def reapply_dependents(workspace: Workspace, environment: str, block: str,
                       say: Callable[[str], None]) -> list[str]:
    """Apply each deployed direct dependent of ``block`` at its deployed version, in order.

    A dependent whose plan would replace instances of a stateful block is not applied (that is
    its own rolling upgrade): the error names it.
    """
    import networkx as nx

    from infrablocks.deploy.block_ops import BlockRun, ensure_init
    from infrablocks.deploy.orchestrate import deployed_graph
    from infrablocks.state import new_record

    graph = deployed_graph(workspace, environment)
    if block not in graph:
        return []
    direct = set(graph.successors(block))
    order = [n for n in nx.lexicographical_topological_sort(graph, key=str) if n in direct]
    done = []
    backend = workspace.backend
    for name in order:
        record = backend.get_record(environment, name)
        if record is None:
            continue
        version = workspace.registry.block_version(name, record.version)
        with backend.acquire_lock(environment, name, "re-apply"):
            run = BlockRun(workspace, environment, version, workspace.subnet(environment))
            workdir = run.prepare()
            terraform = workspace.terraform(environment, name)
            ensure_init(workspace, terraform, workdir)
            plan = terraform.plan(workdir)
            if not plan.has_changes:
                continue
            if workspace.registry.blocks[name].stateful and plan.addresses("replace"):
                raise InfrablocksError(
                    f"{name} reads {block}'s changed outputs, and applying them would replace "
                    f"{', '.join(plan.addresses('replace'))}",
                    hint=f"apply it with a rolling upgrade: doit upgrade {name} --env "
                         f"{environment}")
            say(f"re-apply {version.label} ({plan.summary()})")
            terraform.apply(workdir, plan)
            backend.put_record(new_record(
                environment, name, record.version,
                outputs=backend.read_outputs(environment, name),
                terraform_version=workspace.terraform_binary().version))
            done.append(name)
    return done
