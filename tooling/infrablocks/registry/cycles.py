"""Dependency cycles among blocks: found on every load, described for the error message."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infrablocks.registry.model import Block
    from infrablocks.versions import Constraint

__all__ = ["describe_cycle", "find_block_cycles"]


def find_block_cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with a cycle (iterative Tarjan).

    ``edges`` maps a block to the blocks it requires. Each cycle starts at its smallest name.
    Kept free of networkx: it runs on every load.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(edges.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    cycles = []
    for component in components:
        members = set(component)
        cycles.append(_cycle_in(min(members), members, edges))
    return sorted(cycles)


def _cycle_in(start: str, members: set[str], edges: dict[str, list[str]]) -> list[str]:
    """A shortest cycle through ``start`` inside a strongly connected component (BFS)."""
    previous: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        following = []
        for node in frontier:
            for child in edges.get(node, ()):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return list(reversed(path))
                if child not in seen:
                    seen.add(child)
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start]


def describe_cycle(blocks: dict[str, Block], cycle: list[str]) -> str:
    """``a 1.0.0 → b 2.0.0 → a``: each block with a version that requires the next one,
    preferring versions the previous requirement allows."""
    parts = []
    allowed: Constraint | None = None
    for position, name in enumerate(cycle):
        following = cycle[(position + 1) % len(cycle)]
        candidates = [bv for bv in blocks[name].newest_first() if following in bv.requires]
        preferred = [bv for bv in candidates if allowed is None or allowed.allows(bv.version)]
        if not candidates:
            parts.append(name)
            allowed = None
            continue
        chosen = (preferred or candidates)[0]
        parts.append(f"{name} {chosen.version}")
        allowed = chosen.requires[following]
    return " → ".join([*parts, cycle[0]])
