"""The newest-first pass: resolution in one sweep when nothing conflicts.

Blocks are decided one at a time, highest first (a block is always higher than every block its
versions require, so every requirement on a block is known before it is decided), each taking
the first of its candidates in order (``Candidates.in_order``: within its pin, the deployed
version first, then newest first) that meets every requirement on it. The requirements of each
chosen version are then added, discovering the closure as it goes. Time and memory are linear
in the closure and its requirements.

resolvelib, given the same order (``resolve_provider``), makes the same choices whenever this
pass meets no conflict: it pins the highest block first, takes the first candidate whose own
requirements leave each dependency a candidate, and never backtracks. This pass only returns a
result in that case, after checking it against every requirement; when some block has no
candidate left it returns the conflict, and resolvelib searches instead (``resolve.resolve``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from infrablocks.registry import BlockVersion
from infrablocks.resolve_candidates import Candidates, Requirement

__all__ = ["Chosen", "Conflict", "newest_first"]


@dataclass
class Chosen:
    """A complete, checked choice: one version per block of the closure, and the requirements
    on each (from the targets and the chosen versions)."""

    selected: dict[str, BlockVersion]
    requirements: dict[str, list[Requirement]]


@dataclass
class Conflict:
    """No candidate of ``block`` meets ``requirements`` given the choices made so far
    (``decided`` blocks): this pass stops; resolvelib decides whether older versions help."""

    block: str
    requirements: list[Requirement]
    decided: int


def newest_first(candidates: Candidates, roots: list[Requirement],
                 check_time: Callable[[int], None]) -> Chosen | Conflict:
    """Decide every block reachable from ``roots`` in one sweep (see the module docstring).

    ``check_time(decided)`` is called before each decision; it raises to stop the pass (the
    resolution's time limit).
    """
    requirements: dict[str, list[Requirement]] = {}
    queue: list[tuple[int, str]] = []
    height, admits = candidates.height, candidates.admits  # the hot loop's lookups, once
    push, pop = heapq.heappush, heapq.heappop
    for root in roots:
        _add(requirements, queue, height, root)
    selected: dict[str, BlockVersion] = {}
    while queue:
        check_time(len(selected))
        _, name = pop(queue)
        on_block = requirements[name]
        for candidate in candidates.in_order(name):
            if all(admits(requirement.constraint, candidate) for requirement in on_block):
                break
        else:
            return Conflict(name, on_block, len(selected))
        selected[name] = candidate
        for requirement in candidates.dependencies(candidate):
            dep = requirement.name
            known = requirements.get(dep)
            if known is None:
                requirements[dep] = [requirement]
                push(queue, (-height(dep), dep))
            else:
                known.append(requirement)
    conflict = _check(selected, requirements)
    if conflict is not None:
        return Conflict(conflict, requirements[conflict], len(selected))
    return Chosen(selected, requirements)


def _add(requirements: dict[str, list[Requirement]], queue: list[tuple[int, str]],
         height: Callable[[str], int], requirement: Requirement) -> None:
    on_block = requirements.get(requirement.name)
    if on_block is None:
        requirements[requirement.name] = [requirement]
        heapq.heappush(queue, (-height(requirement.name), requirement.name))
    else:
        on_block.append(requirement)


def _check(selected: dict[str, BlockVersion],
           requirements: dict[str, list[Requirement]]) -> str | None:
    """The first block whose chosen version misses a requirement on it, or None. By the order
    of the sweep there is none; the check keeps a wrong order from ever passing as a result."""
    for name, on_block in requirements.items():
        chosen = selected.get(name)
        if chosen is None or not all(r.admits(chosen) for r in on_block):
            return name
    for name, chosen in selected.items():
        if any(dep not in selected for dep in chosen.requires):
            return name
    return None
