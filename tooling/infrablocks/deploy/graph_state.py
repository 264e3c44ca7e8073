"""`doit graph --env E`: the registry graph annotated with what is deployed in E."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx

    from infrablocks.state import StateBackend


def annotate_deployments(graph: nx.DiGraph[str], backend: StateBackend, environment: str) -> None:
    """Give every node a ``deployed`` attribute: ``{"version", "status", "applied_at"}`` from its
    deployment record in ``environment``, or None when the block is not deployed there.

    Reads the records only (no Terraform). The renderers show it next to the chosen version.
    """
    records = {r.block: r for r in backend.list_records(environment)}
    graph.graph["deployments_of"] = environment
    for name in graph.nodes:
        record = records.get(name)
        graph.nodes[name]["deployed"] = None if record is None else {
            "version": record.version, "status": record.status,
            "applied_at": record.applied_at}
