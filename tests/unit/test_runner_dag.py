"""The runner's own graph algorithms (it no longer imports networkx) agree with networkx's on
random graphs, and a run over a ``Dag`` is the same run as over a ``networkx.DiGraph``."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from infrablocks.errors import InfrablocksError
from infrablocks.runner import Dag, Result, run_dag
from infrablocks.runner.dag import downstream, find_cycle, lexicographic_order


def _random_dag(seed: int) -> tuple[nx.DiGraph, Dag]:
    rng = random.Random(seed)
    names = [f"n{rng.randrange(1000):03d}-{i}" for i in range(rng.randrange(1, 30))]
    dependencies: dict[str, list[str]] = {name: [] for name in names}
    for i, name in enumerate(names):  # edges only from earlier to later names: acyclic
        dependencies[name] = rng.sample(names[:i], k=min(i, rng.randrange(4)))
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    graph.add_edges_from((dep, name) for name, deps in dependencies.items() for dep in deps)
    return graph, Dag(dependencies)


@pytest.mark.parametrize("seed", range(40))
def test_order_and_downstream_match_networkx(seed: int) -> None:
    graph, dag = _random_dag(seed)
    assert lexicographic_order(dag) == list(nx.lexicographical_topological_sort(graph, key=str))
    assert lexicographic_order(dag, reverse=True) == list(
        nx.lexicographical_topological_sort(graph.reverse(copy=False), key=str))
    assert lexicographic_order(graph) == lexicographic_order(dag)  # works on networkx graphs too
    for node in graph:
        assert downstream(dag, node) == nx.descendants(graph, node)
        assert downstream(dag, node, reverse=True) == nx.ancestors(graph, node)
    assert find_cycle(dag) is None


def test_a_cycle_is_found_in_edge_order() -> None:
    dag = Dag({"a": ["c"], "b": ["a"], "c": ["b"], "d": []})  # a → b → c → a
    cycle = find_cycle(dag)
    assert cycle is not None and sorted(cycle) == ["a", "b", "c"]
    for first, second in zip(cycle, cycle[1:] + cycle[:1], strict=True):
        assert first in set(dag.predecessors(second))  # each a dependency of the next
    with pytest.raises(InfrablocksError, match="cannot run a dependency cycle: "):
        run_dag(dag, lambda node, token: None)


def test_a_dependency_must_be_a_node() -> None:
    with pytest.raises(ValueError, match="b depends on ghost"):
        Dag({"a": [], "b": ["ghost"]})


@pytest.mark.parametrize("reverse", [False, True])
def test_a_run_over_a_dag_is_the_run_over_the_same_digraph(reverse: bool) -> None:
    graph, dag = _random_dag(7)
    failing = sorted(graph)[len(graph) // 2]

    def work(node, token):
        return Result.failure("broken") if node == failing else Result.success()

    reports = [run_dag(g, work, jobs=3, keep_going=True, reverse=reverse,
                       handle_signals=False) for g in (graph, dag)]
    for_networkx, for_dag = ([(str(n), r.status, r.reason, r.blocked_by)
                              for n, r in report.nodes.items()] for report in reports)
    assert for_networkx == for_dag
