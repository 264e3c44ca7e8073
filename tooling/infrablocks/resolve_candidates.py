"""What both of the resolver's searches ask of the registry, computed once per resolution.

``Requirement``: a parent block version (or a target) needs a block at the versions a
constraint allows. ``Candidates``: per block, its versions in the order they are tried (the
environment's pin as a filter, the deployed version first, then newest first); per (block,
constraint), the versions allowed; per block, its height (the longest chain of requirements
below it, over every version), which orders both searches: dependents before dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping

from infrablocks.registry import BlockVersion, Registry
from infrablocks.versions import Constraint, Version

__all__ = ["Candidates", "Requirement"]


class Requirement:
    """``parent`` (None for a target) needs ``name`` at versions allowed by ``constraint``.

    ``allowed``: the frozen set of ``name``'s block versions the constraint allows, built on
    first use and shared by every requirement with the same (block, constraint).
    """

    __slots__ = ("name", "constraint", "parent", "_candidates", "_allowed")

    def __init__(self, name: str, constraint: Constraint, parent: BlockVersion | None,
                 candidates: Candidates) -> None:
        self.name = name
        self.constraint = constraint
        self.parent = parent
        self._candidates = candidates
        self._allowed: frozenset[BlockVersion] | None = None

    @property
    def allowed(self) -> frozenset[BlockVersion]:
        if self._allowed is None:
            self._allowed = self._candidates.allowed(self.name, self.constraint)
        return self._allowed

    def admits(self, candidate: BlockVersion) -> bool:
        """Whether ``candidate`` (a version of ``name``) meets the constraint."""
        return self._candidates.admits(self.constraint, candidate)

    def describe(self) -> str:
        if self.parent is None:
            return f"target {self.name}" + ("" if self.constraint.text == "*"
                                            else f" {self.constraint}")
        return f"{self.parent.label} requires {self.name} {self.constraint}"

    def __repr__(self) -> str:
        return f"Requirement({self.describe()})"


class Candidates:
    """Caches over one registry, the environment's pins and the deployed versions (``prefer``).

    Nothing here decides: both the newest-first pass and the resolvelib provider read from it.
    """

    def __init__(self, registry: Registry, pins: Mapping[str, Version],
                 prefer: Mapping[str, Version]) -> None:
        self.registry = registry
        self.pins = pins
        self.prefer = prefer
        self._allowed: dict[tuple[str, str], frozenset[BlockVersion]] = {}
        self._admits: dict[tuple[str, int], bool] = {}
        self._newest_first: dict[str, list[BlockVersion]] = {}
        self._ordered: dict[str, list[BlockVersion]] = {}
        self._dependencies: dict[int, list[Requirement]] = {}
        self._heights: dict[str, int] = {}

    def requirement(self, name: str, constraint: Constraint,
                    parent: BlockVersion | None) -> Requirement:
        return Requirement(name, constraint, parent, self)

    def dependencies(self, candidate: BlockVersion) -> list[Requirement]:
        """``candidate``'s requirements, by required block name (built once per version)."""
        deps = self._dependencies.get(id(candidate))
        if deps is None:
            requires = candidate.requires
            deps = [Requirement(name, requires[name], candidate, self)
                    for name in sorted(requires)]
            self._dependencies[id(candidate)] = deps
        return deps

    def allowed(self, name: str, constraint: Constraint) -> frozenset[BlockVersion]:
        key = (name, constraint.text)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = frozenset(bv for bv in self.registry.blocks[name].versions.values()
                                if self.admits(constraint, bv))
            self._allowed[key] = allowed
        return allowed

    def admits(self, constraint: Constraint, candidate: BlockVersion) -> bool:
        # Keyed by text and identity: both hash in C (a registry shares a few texts and one
        # version object per distinct version string across its blocks).
        key = (constraint.text, id(candidate.version))
        admitted = self._admits.get(key)
        if admitted is None:
            admitted = self._admits[key] = constraint.allows(candidate.version)
        return admitted

    def newest_first(self, name: str) -> list[BlockVersion]:
        """Every version of ``name`` within its pin (if any), newest first."""
        versions = self._newest_first.get(name)
        if versions is None:
            versions = self.registry.blocks[name].newest_first()
            pin = self.pins.get(name)
            if pin is not None:
                versions = [bv for bv in versions if bv.version == pin]
            self._newest_first[name] = versions
        return versions

    def in_order(self, name: str) -> list[BlockVersion]:
        """``newest_first(name)`` with the deployed version (``prefer``) moved to the front:
        the order in which candidates are tried."""
        preferred = self.prefer.get(name)
        if preferred is None:
            return self.newest_first(name)
        ordered = self._ordered.get(name)
        if ordered is None:
            ordered = sorted(self.newest_first(name),
                             key=lambda bv: bv.version != preferred)  # stable: newest first
            self._ordered[name] = ordered
        return ordered

    def height(self, name: str) -> int:
        """Longest chain of requirements below ``name`` in the registry (any version): a block
        is always higher than every block any of its versions requires."""
        heights = self._heights
        if name in heights:
            return heights[name]
        blocks = self.registry.blocks
        deps_of: dict[str, set[str]] = {}
        stack = [name]
        while stack:  # depth first, a block after every block below it
            node = stack[-1]
            if node in heights:
                stack.pop()
                continue
            deps = deps_of.get(node)
            if deps is None:
                deps = deps_of[node] = blocks[node].required_blocks()
                below = [d for d in deps if d not in heights]
                if below:
                    stack.extend(below)
                    continue
            stack.pop()
            heights[node] = 1 + max((heights[d] for d in deps), default=-1)
        return heights[name]
