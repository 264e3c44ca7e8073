"""resolvelib's side of resolution: the provider over a registry, and the bounds on its search.

resolvelib searches with backtracking, used when the newest-first pass (``resolve_greedy``)
meets a conflict. Its cost grows with the square of the closure (every round scans every
requirement), so it is kept for that case.

Performance: candidates are the registry's ``BlockVersion`` objects (identity-hashed) and each
requirement's allowed versions are a frozen set computed once per (block, constraint), so
``is_satisfied_by`` is a set lookup. The preference decides dependents before their dependencies
(greater height first), so most conflicts are seen before a dependency is pinned, and a
look-ahead (``Provider._look_ahead``) turns the others into rejected candidates rather than
resolvelib backjumps. Every search is bounded (``Budget``, ``INCOMPATIBILITY_LIMIT``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from infrablocks.registry import BlockVersion
from infrablocks.resolve_candidates import Candidates, Requirement
from infrablocks.waiting import Deadline

if TYPE_CHECKING:   # resolvelib is imported only when a resolution needs it (start-up time)
    from resolvelib import AbstractProvider, BaseReporter

    _ProviderBase = AbstractProvider[Requirement, BlockVersion, str]
    _ReporterBase = BaseReporter[Requirement, BlockVersion, str]
else:
    _ProviderBase = _ReporterBase = object

__all__ = ["INCOMPATIBILITY_LIMIT", "Budget", "Provider", "SearchBoundHit"]

# Past this many known-incompatible candidates for one block, the search is abandoned.
INCOMPATIBILITY_LIMIT = 100_000


class SearchBoundHit(Exception):
    """A bound stopped the search. ``bound`` says which, as a phrase (``time limit of 60 s``);
    ``resolve.resolve`` turns it into a ``ResolutionError``."""

    def __init__(self, bound: str) -> None:
        super().__init__(bound)
        self.bound = bound


class Budget(_ReporterBase):
    """A resolvelib reporter that bounds the whole resolution in time and records what it saw.

    Forwards every event to ``inner`` (the caller's reporter; set before resolvelib runs when
    the caller gave none). Remembers which blocks caused
    backtracking (``conflicts``: block → times) and how many rounds resolvelib ran, for the
    message when a bound is hit. ``limit`` in seconds (None: no limit), counted from creation:
    the newest-first pass calls ``check_time`` too.
    """

    def __init__(self, inner: Any, limit: float | None) -> None:
        self.inner = inner
        self.limit = limit
        self.deadline = None if limit is None else Deadline(limit)
        self.conflicts: dict[str, int] = {}
        self.rounds = 0

    def check_time(self, _progress: int = 0) -> None:
        if self.deadline is not None and self.deadline.expired():
            raise SearchBoundHit(f"time limit of {self.limit:g} s")

    def starting_round(self, index: int) -> None:
        self.rounds = index + 1
        self.check_time()
        self.inner.starting_round(index)

    def resolving_conflicts(self, causes: Any) -> None:
        for cause in causes:
            name = cause.requirement.name
            self.conflicts[name] = self.conflicts.get(name, 0) + 1
        self.inner.resolving_conflicts(causes)

    def __getattr__(self, name: str) -> Any:  # starting, ending, pinning, ... unchanged
        return getattr(self.inner, name)


class Provider(_ProviderBase):
    """resolvelib provider over ``Candidates`` (an ``AbstractProvider`` for the type checker;
    at run time a plain class, so that importing it does not import resolvelib)."""

    def __init__(self, candidates: Candidates) -> None:
        self.candidates = candidates
        self._always: dict[str, frozenset[str]] = {}
        self._always_dependents: dict[str, list[str]] = {}
        self._registered: set[str] = set()
        # block → the requirements of a required, not yet pinned block that emptied its list
        self.look_ahead_conflicts: dict[str, list[Requirement]] = {}

    # resolvelib interface ------------------------------------------------------------------

    def identify(self, requirement_or_candidate: Requirement | BlockVersion) -> str:
        if isinstance(requirement_or_candidate, Requirement):
            return requirement_or_candidate.name
        return requirement_or_candidate.block

    def get_preference(self, identifier: str, resolutions: Mapping[str, BlockVersion],
                       candidates: Mapping[str, Any], information: Mapping[str, Any],
                       backtrack_causes: Sequence[Any]) -> tuple[bool, int, str]:
        in_causes = any(cause.requirement.name == identifier for cause in backtrack_causes)
        return (not in_causes, -self.candidates.height(identifier), identifier)

    def narrow_requirement_selection(self, identifiers: Iterable[str], resolutions: Any,
                                     candidates: Any, information: Any,
                                     backtrack_causes: Sequence[Any]) -> Iterable[str]:
        return identifiers

    def find_matches(self, identifier: str, requirements: Mapping[str, Iterable[Requirement]],
                     incompatibilities: Mapping[str, Iterable[BlockVersion]]
                     ) -> list[BlockVersion]:
        reqs = list(requirements[identifier])
        bad: set[BlockVersion] = set()
        # resolvelib 1.2 re-appends known incompatibilities on every backjump step, so these
        # lists can double per step (2**25 entries seen with 10 conflicting targets). Only a
        # handful are distinct; past the limit the resolution is abandoned with an explanation.
        for count, incompatible in enumerate(incompatibilities[identifier]):
            bad.add(incompatible)
            if count >= INCOMPATIBILITY_LIMIT:
                raise SearchBoundHit(
                    f"size limit: more than {INCOMPATIBILITY_LIMIT:,} incompatible candidates "
                    f"recorded for {identifier}")
        self._register_always_required(identifier)
        matches = [bv for bv in self.candidates.in_order(identifier)
                   if bv not in bad and all(bv in r.allowed for r in reqs)]
        if matches:
            matches = self._look_ahead(identifier, matches, requirements)
        return matches

    def is_satisfied_by(self, requirement: Requirement, candidate: BlockVersion) -> bool:
        return candidate in requirement.allowed

    def get_dependencies(self, candidate: BlockVersion) -> list[Requirement]:
        return self.candidates.dependencies(candidate)

    # look-ahead --------------------------------------------------------------------------
    #
    # A block Y that is required but not pinned yet, and whose every version requires D,
    # already narrows D: D's version must suit at least one of Y's remaining versions. Applying
    # that when listing D's candidates makes a conflicting pin (say C 1.9.0 requiring
    # D >= 1.5 while every version of a required B needs D < 1.5) fail at once, as a rejected
    # candidate, instead of after B is reached, as a backjump: resolvelib's backjumping is
    # costly (see find_matches) and, in 1.2, not always sound. Sound: it only removes versions
    # of D that no completion of the current state could use.

    def _always_required(self, name: str) -> frozenset[str]:
        always = self._always.get(name)
        if always is None:
            versions = self.candidates.registry.blocks[name].versions.values()
            sets = [set(bv.required_blocks()) for bv in versions]
            always = self._always[name] = frozenset(set.intersection(*sets) if sets else ())
        return always

    def _register_always_required(self, name: str) -> None:
        if name in self._registered:
            return
        self._registered.add(name)
        for dep in self._always_required(name):
            self._always_dependents.setdefault(dep, []).append(name)

    def _look_ahead(self, identifier: str, matches: list[BlockVersion],
                    requirements: Mapping[str, Iterable[Requirement]]) -> list[BlockVersion]:
        candidates = self.candidates
        for dependent in self._always_dependents.get(identifier, ()):
            if dependent not in requirements:
                continue  # not required in this state
            reqs = list(requirements[dependent])
            suitable: set[BlockVersion] = set()
            remaining: list[BlockVersion] = []
            for version in candidates.newest_first(dependent):
                if all(version in r.allowed for r in reqs):
                    remaining.append(version)
                    suitable.update(candidates.allowed(identifier, version.requires[identifier]))
            matches = [bv for bv in matches if bv in suitable]
            if not matches:  # remembered for the explanation, should this conflict be final
                self.look_ahead_conflicts[identifier] = [
                    candidates.requirement(identifier, v.requires[identifier], v)
                    for v in remaining]
                break
        return matches
