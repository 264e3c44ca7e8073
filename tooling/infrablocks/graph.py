"""The dependency DAG (networkx): run order, levels, and renderings.

Edges point from a dependency to its dependent (``base → nomad``): the direction things are
created in. Node attributes: ``version`` (str, or None in a block-level registry graph),
``versions`` (all versions, registry graph), ``stateful``, ``description``, ``highlighted``.
Edge attributes: ``constraint`` (the dependent's requirement as written) and ``version`` (the
dependency version selected for it, None in a registry graph).

Every output is deterministic: nodes and edges are emitted in sorted order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import networkx as nx

from infrablocks.errors import InfrablocksError

if TYPE_CHECKING:
    from rich.tree import Tree

    from infrablocks.registry import Registry
    from infrablocks.resolve import Resolution

__all__ = [
    "FORMATS",
    "dependency_graph",
    "find_cycles",
    "highlight",
    "levels",
    "node_label",
    "registry_graph",
    "render",
    "render_dot",
    "render_image",
    "render_json",
    "render_mermaid",
    "render_tree",
    "topological_order",
]

FORMATS = ("tree", "dot", "mermaid", "json", "svg", "png")


def dependency_graph(resolution: Resolution) -> nx.DiGraph[str]:
    """The DAG of one resolution: a node per selected block version."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    for name in sorted(resolution.selected):
        bv = resolution.selected[name]
        graph.add_node(name, version=str(bv.version), versions=[str(bv.version)],
                       stateful=resolution.stateful.get(name, False), highlighted=False)
    for name in sorted(resolution.selected):
        bv = resolution.selected[name]
        for dep in sorted(bv.requires):
            graph.add_edge(dep, name, constraint=str(bv.requires[dep]),
                           version=str(resolution.selected[dep].version))
    return graph


def registry_graph(registry: Registry) -> nx.DiGraph[str]:
    """The block-level graph of the whole registry, over all versions.

    An edge exists when any version of the dependent requires the dependency; its
    ``constraint`` is the newest such version's, ``constraints`` maps each of those dependent
    versions to its constraint.
    """
    graph: nx.DiGraph[str] = nx.DiGraph()
    for name in sorted(registry.blocks):
        block = registry.blocks[name]
        graph.add_node(name, version=None, versions=[str(v) for v in sorted(block.versions)],
                       stateful=block.stateful, highlighted=False)
    for name in sorted(registry.blocks):
        for bv in registry.blocks[name].newest_first():
            for dep in sorted(bv.requires):
                if not graph.has_edge(dep, name):
                    graph.add_edge(dep, name, constraint=str(bv.requires[dep]), version=None,
                                   constraints={})
                graph.edges[dep, name]["constraints"][str(bv.version)] = str(bv.requires[dep])
    return graph


def highlight(graph: nx.DiGraph[str], names: Iterable[str]) -> nx.DiGraph[str]:
    """Mark ``names`` (and the edges between them) as highlighted, in place."""
    chosen = set(names)
    for name in graph.nodes:
        graph.nodes[name]["highlighted"] = name in chosen
    for source, target in graph.edges:
        graph.edges[source, target]["highlighted"] = source in chosen and target in chosen
    graph.graph["highlighting"] = True
    return graph


def find_cycles(graph: nx.DiGraph[str], limit: int = 20) -> list[list[str]]:
    """Up to ``limit`` elementary cycles, each rotated to start at its smallest node."""
    cycles = []
    for cycle in nx.simple_cycles(graph):
        start = cycle.index(min(cycle))
        cycles.append(cycle[start:] + cycle[:start])
        if len(cycles) >= limit:
            break
    return sorted(cycles)


def _require_acyclic(graph: nx.DiGraph[str]) -> None:
    if not nx.is_directed_acyclic_graph(graph):
        cycle = find_cycles(graph, limit=1)[0]
        raise InfrablocksError("dependency cycle: " + " → ".join([*cycle, cycle[0]]))


def topological_order(graph: nx.DiGraph[str]) -> list[str]:
    """Dependencies first; ties broken by name (deterministic)."""
    _require_acyclic(graph)
    return list(nx.lexicographical_topological_sort(graph))


def levels(graph: nx.DiGraph[str]) -> list[list[str]]:
    """Generations for display: level 0 needs nothing, level n needs only levels < n.

    The runner does not wait for whole levels: a block starts when its own dependencies are
    done (``graph.predecessors``).
    """
    _require_acyclic(graph)
    return [sorted(generation) for generation in nx.topological_generations(graph)]


def node_label(graph: nx.DiGraph[str], name: str) -> str:
    data = graph.nodes[name]
    if data.get("version"):
        label = f"{name} {data['version']}"
    else:
        versions = data.get("versions") or []
        label = f"{name} ({', '.join(versions)})" if versions else name
    if "deployments_of" in graph.graph:  # doit graph --env E (infrablocks.deploy.graph_state)
        label += f" [{deployment_note(data.get('deployed'))}]"
    return label


def deployment_note(deployed: dict[str, str] | None) -> str:
    """``deployed 1.0.0`` / ``failed 1.1.0`` / ``not deployed`` — for labels (a node's
    ``deployed`` attribute, set by ``infrablocks.deploy.graph_state.annotate_deployments``)."""
    if deployed is None:
        return "not deployed"
    return f"{deployed['status']} {deployed['version']}"


# renderers ------------------------------------------------------------------------------------


def render_tree(graph: nx.DiGraph[str], title: str = "dependency graph") -> Tree:
    """A rich tree: each dependent with its dependencies below it (edge constraint shown).

    Roots are the blocks nothing depends on. A subtree already shown is not repeated.
    """
    from rich.markup import escape
    from rich.tree import Tree

    highlighting = graph.graph.get("highlighting", False)

    def styled(name: str, text: str) -> str:
        data = graph.nodes[name]
        if highlighting:
            return f"[bold yellow]{text}[/]" if data.get("highlighted") else f"[dim]{text}[/]"
        return f"[bold]{text}[/]"

    tree = Tree(escape(title))
    shown: set[str] = set()

    def add(parent: Tree, name: str, constraint: str | None) -> None:
        label = styled(name, escape(node_label(graph, name)))
        if graph.nodes[name].get("stateful"):
            label += " [cyan](stateful)[/]"
        if constraint:
            label += f" [green]{escape(constraint)}[/]"
        deps = sorted(graph.predecessors(name))
        if name in shown and deps:
            parent.add(label + " [dim]… (dependencies shown above)[/]")
            return
        shown.add(name)
        branch = parent.add(label)
        for dep in deps:
            add(branch, dep, graph.edges[dep, name].get("constraint"))

    roots = sorted(n for n in graph.nodes if graph.out_degree(n) == 0)
    for root in roots or sorted(graph.nodes):
        add(tree, root, None)
    return tree


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(graph: nx.DiGraph[str], title: str = "infrablocks") -> str:
    highlighting = graph.graph.get("highlighting", False)
    lines = [f"digraph {_dot_quote(title)} {{",
             "  rankdir=BT;",
             '  node [shape=box, style="rounded", fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for name in sorted(graph.nodes):
        data = graph.nodes[name]
        label = name + "\\n" + (data["version"] if data.get("version")
                                else ", ".join(data.get("versions") or []))
        if "deployments_of" in graph.graph:
            label += "\\n" + deployment_note(data.get("deployed"))
        attrs = [f"label=\"{label}\""]
        if data.get("stateful"):
            attrs.append("shape=cylinder")
        if highlighting and data.get("highlighted"):
            attrs.append('style="filled,bold" fillcolor="#ffe08a" penwidth=2')
        elif highlighting:
            attrs.append("color=gray60 fontcolor=gray50")
        lines.append(f"  {_dot_quote(name)} [{' '.join(attrs)}];")
    for source, target in sorted(graph.edges):
        data = graph.edges[source, target]
        attrs = [f"label={_dot_quote(data.get('constraint') or '')}"]
        if highlighting and data.get("highlighted"):
            attrs.append("penwidth=2")
        elif highlighting:
            attrs.append("color=gray60 fontcolor=gray50")
        lines.append(f"  {_dot_quote(source)} -> {_dot_quote(target)} [{' '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    return "b_" + "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _mermaid_text(text: str) -> str:
    return (text.replace("&", "#amp;").replace('"', "#quot;")
            .replace("<", "#lt;").replace(">", "#gt;"))


def render_mermaid(graph: nx.DiGraph[str]) -> str:
    lines = ["flowchart BT"]
    for name in sorted(graph.nodes):
        text = _mermaid_text(node_label(graph, name))
        shape = '[("{}")]' if graph.nodes[name].get("stateful") else '["{}"]'
        lines.append(f"  {_mermaid_id(name)}{shape.format(text)}")
    for source, target in sorted(graph.edges):
        constraint = _mermaid_text(graph.edges[source, target].get("constraint") or "")
        lines.append(f'  {_mermaid_id(source)} -->|"{constraint}"| {_mermaid_id(target)}')
    if graph.graph.get("highlighting"):
        lit = [_mermaid_id(n) for n in sorted(graph.nodes) if graph.nodes[n].get("highlighted")]
        lines.append("  classDef highlighted fill:#ffe08a,stroke:#b58900,stroke-width:2px;")
        lines.append("  classDef dimmed fill:#f4f4f4,stroke:#aaaaaa,color:#888888;")
        dim = [_mermaid_id(n) for n in sorted(graph.nodes)
               if not graph.nodes[n].get("highlighted")]
        if lit:
            lines.append(f"  class {','.join(lit)} highlighted;")
        if dim:
            lines.append(f"  class {','.join(dim)} dimmed;")
    return "\n".join(lines) + "\n"


def graph_document(graph: nx.DiGraph[str]) -> dict[str, Any]:
    """The graph as plain data (what ``--format json`` prints)."""
    level_of = {name: index for index, level in enumerate(levels(graph)) for name in level}
    return {
        "nodes": [{"name": name,
                   "version": graph.nodes[name].get("version"),
                   "versions": list(graph.nodes[name].get("versions") or []),
                   "stateful": bool(graph.nodes[name].get("stateful")),
                   "highlighted": bool(graph.nodes[name].get("highlighted")),
                   "level": level_of[name],
                   **({"deployed": graph.nodes[name].get("deployed")}
                      if "deployments_of" in graph.graph else {}),
                   "dependencies": sorted(graph.predecessors(name))}
                  for name in sorted(graph.nodes)],
        "edges": [{"from": source, "to": target,
                   "constraint": graph.edges[source, target].get("constraint"),
                   "version": graph.edges[source, target].get("version")}
                  for source, target in sorted(graph.edges)],
        "order": topological_order(graph),
        "levels": levels(graph),
    }


def render_json(graph: nx.DiGraph[str]) -> str:
    return json.dumps(graph_document(graph), indent=2) + "\n"


def render_image(graph: nx.DiGraph[str], fmt: str, title: str = "infrablocks") -> bytes:
    """SVG or PNG through Graphviz ``dot``."""
    if fmt not in ("svg", "png"):
        raise ValueError(fmt)
    dot = shutil.which("dot")
    if dot is None:
        raise InfrablocksError(f"--format {fmt} needs Graphviz's `dot`, which is not on PATH",
                               hint="install it (Debian: apt-get install graphviz), or use "
                                    "--format dot and render it elsewhere")
    process = subprocess.run([dot, f"-T{fmt}"], input=render_dot(graph, title).encode(),
                             capture_output=True, timeout=60, check=False)
    if process.returncode != 0:
        raise InfrablocksError(f"dot -T{fmt} failed: {process.stderr.decode(errors='replace')}")
    return process.stdout


def render(graph: nx.DiGraph[str], fmt: str, title: str = "infrablocks") -> str | bytes | Tree:
    """Dispatch on ``fmt`` (one of ``FORMATS``)."""
    if fmt == "tree":
        return render_tree(graph, title)
    if fmt == "dot":
        return render_dot(graph, title)
    if fmt == "mermaid":
        return render_mermaid(graph)
    if fmt == "json":
        return render_json(graph)
    if fmt in ("svg", "png"):
        return render_image(graph, fmt, title)
    raise InfrablocksError(f"unknown graph format `{fmt}`: expected one of {', '.join(FORMATS)}")
