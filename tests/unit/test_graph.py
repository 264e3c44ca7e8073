"""The dependency DAG: order, levels, cycles and every rendering."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import networkx as nx
import pytest
from rich.console import Console

from infrablocks.errors import InfrablocksError
from infrablocks.graph import (
    dependency_graph,
    find_cycles,
    graph_document,
    highlight,
    levels,
    registry_graph,
    render,
    render_dot,
    render_image,
    render_json,
    render_mermaid,
    render_tree,
    topological_order,
)
from infrablocks.registry import Registry, load_registry
from infrablocks.resolve import resolve
from tests.support.registry_repo import copy_example


@pytest.fixture
def example(tmp_path: Path) -> Registry:
    return load_registry(copy_example(tmp_path / "example"))


@pytest.fixture
def graph(example: Registry) -> nx.DiGraph:
    env = example.environment("prod")
    return dependency_graph(resolve(example, ["microservice01"], env.pins))


def tree_text(graph: nx.DiGraph) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=100, color_system=None).print(render_tree(graph, "title"))
    return buffer.getvalue()


def test_dependency_graph_nodes_and_edges(graph: nx.DiGraph) -> None:
    assert sorted(graph.nodes) == ["base", "microservice01", "nomad", "stolon"]
    assert graph.nodes["base"]["version"] == "1.0.0" and graph.nodes["base"]["stateful"]
    assert sorted(graph.edges) == [("base", "microservice01"), ("base", "nomad"),
                                   ("base", "stolon"), ("nomad", "microservice01"),
                                   ("stolon", "microservice01")]
    edge = graph.edges["stolon", "microservice01"]
    assert edge == {"constraint": ">= 1.0, < 2.0", "version": "1.1.0"}


def test_order_and_levels(graph: nx.DiGraph) -> None:
    assert topological_order(graph) == ["base", "nomad", "stolon", "microservice01"]
    assert levels(graph) == [["base"], ["nomad", "stolon"], ["microservice01"]]


def test_cycles() -> None:
    cyclic = nx.DiGraph([("b", "c"), ("c", "a"), ("a", "b"), ("c", "d")])
    assert find_cycles(cyclic) == [["a", "b", "c"]]
    assert find_cycles(nx.DiGraph([("a", "b")])) == []
    with pytest.raises(InfrablocksError, match="dependency cycle: a → b → c → a"):
        topological_order(cyclic)


def test_registry_graph_covers_every_version(example: Registry) -> None:
    graph = registry_graph(example)
    assert set(graph.nodes) == set(example.blocks)
    assert graph.nodes["base"]["versions"] == ["1.0.0", "1.1.0"]
    assert graph.nodes["base"]["version"] is None
    assert graph.edges["base", "stolon"]["constraints"] == {"1.1.0": ">= 1.0, < 2.0",
                                                            "1.0.0": "~> 1.0"}
    assert graph.edges["base", "stolon"]["constraint"] == ">= 1.0, < 2.0"  # the newest's
    assert "base (1.0.0, 1.1.0)" in render_mermaid(graph)


def test_dot(graph: nx.DiGraph) -> None:
    dot = render_dot(graph, "prod")
    assert dot.startswith('digraph "prod" {')
    assert '"base" [label="base\\n1.0.0" shape=cylinder];' in dot
    assert '"nomad" [label="nomad\\n1.0.0"];' in dot
    assert '"stolon" -> "microservice01" [label=">= 1.0, < 2.0"];' in dot
    assert dot.count("->") == 5


def test_mermaid(graph: nx.DiGraph) -> None:
    text = render_mermaid(graph)
    lines = text.splitlines()
    assert lines[0] == "flowchart BT"
    assert '  b_base[("base 1.0.0")]' in lines
    assert '  b_nomad["nomad 1.0.0"]' in lines
    assert '  b_nomad -->|"~#gt; 1.0"| b_microservice01' in lines
    assert '  b_stolon -->|"#gt;= 1.0, #lt; 2.0"| b_microservice01' in lines


def test_json(graph: nx.DiGraph) -> None:
    document = json.loads(render_json(graph))
    assert document["order"] == ["base", "nomad", "stolon", "microservice01"]
    assert document["levels"] == [["base"], ["nomad", "stolon"], ["microservice01"]]
    nodes = {node["name"]: node for node in document["nodes"]}
    assert nodes["microservice01"] == {
        "name": "microservice01", "version": "1.0.0", "versions": ["1.0.0"],
        "stateful": False, "highlighted": False, "level": 2,
        "dependencies": ["base", "nomad", "stolon"]}
    assert {"from": "base", "to": "nomad", "constraint": "~> 1.0", "version": "1.0.0"} \
        in document["edges"]


def test_tree(graph: nx.DiGraph) -> None:
    text = tree_text(graph)
    assert text.splitlines()[0] == "title"
    assert "microservice01 1.0.0" in text
    assert "stolon 1.1.0 (stateful) >= 1.0, < 2.0" in text
    assert "base 1.0.0 (stateful) ~> 1.0" in text


def test_tree_does_not_repeat_shared_subtrees(example: Registry) -> None:
    graph = dependency_graph(resolve(example, ["microservice01", "microservice02"]))
    text = tree_text(graph)
    assert text.count("nomad 1.0.0") == 2
    assert "(dependencies shown above)" in text


def test_highlight(example: Registry) -> None:
    whole = dependency_graph(resolve(example, sorted(example.blocks)))
    highlight(whole, dependency_graph(resolve(example, ["microservice02"])).nodes)
    assert {n for n, lit in whole.nodes(data="highlighted") if lit} == {
        "base", "nomad", "microservice02"}
    dot = render_dot(whole)
    assert '"microservice02" [label="microservice02\\n1.0.0" style="filled,bold"' in dot
    assert '"stolon" [label="stolon\\n1.1.0" shape=cylinder color=gray60' in dot
    mermaid = render_mermaid(whole)
    assert "  class b_base,b_microservice02,b_nomad highlighted;" in mermaid
    assert "  class b_microservice01,b_stolon dimmed;" in mermaid
    assert graph_document(whole)["nodes"][0]["highlighted"] is True  # base


def test_renderings_are_deterministic(example: Registry) -> None:
    first = dependency_graph(resolve(example, sorted(example.blocks)))
    shuffled = nx.DiGraph()
    shuffled.add_nodes_from(sorted(first.nodes(data=True), reverse=True))
    shuffled.add_edges_from(sorted(first.edges(data=True), reverse=True))
    for fmt in ("dot", "mermaid", "json"):
        assert render(first, fmt) == render(shuffled, fmt)
    assert tree_text(first) == tree_text(shuffled)


def test_unknown_format(graph: nx.DiGraph) -> None:
    with pytest.raises(InfrablocksError, match="expected one of tree, dot"):
        render(graph, "gif")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_svg_and_png(graph: nx.DiGraph) -> None:
    svg = render_image(graph, "svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "microservice01" in svg and "&gt;= 1.0, &lt; 2.0" in svg
    png = render_image(graph, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_image_without_graphviz(graph: nx.DiGraph, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InfrablocksError, match="needs Graphviz's `dot`") as caught:
        render_image(graph, "svg")
    assert "apt-get install graphviz" in str(caught.value)
