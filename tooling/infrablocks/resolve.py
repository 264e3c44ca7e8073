"""Version resolution with resolvelib: one version per block for the targets' minimal closure.

Only the targets and their transitive requirements are resolved (never a dependent, never an
unrelated block). Candidates are tried newest first, except that a version already deployed in
the environment (``prefer``) is tried first when it satisfies everything. Environment pins are
hard filters on the pinned blocks, but never pull a block into the closure.

Performance: candidates are the registry's ``BlockVersion`` objects (identity-hashed), and each
requirement carries the frozen set of versions its constraint allows, computed once per
(block, constraint text); ``is_satisfied_by`` is a set lookup. The preference resolves dependents
before their dependencies (greater "height" first), so most conflicts are seen before a
dependency is pinned, and a look-ahead (``_Provider._look_ahead``) turns the others into rejected
candidates rather than resolvelib backjumps. Every search is bounded in time and bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infrablocks.errors import InfrablocksError, UsageError
from infrablocks.registry import BlockVersion, Registry, gc_paused, suggest
from infrablocks.versions import (
    Constraint,
    Version,
    VersionSyntaxError,
    format_versions,
    parse_version,
)

__all__ = ["Resolution", "ResolutionError", "Requirement", "parse_target", "resolve"]


class ResolutionError(InfrablocksError):
    """No choice of versions satisfies the targets, requirements and pins (exit 1)."""


@dataclass(frozen=True, eq=False)
class Requirement:
    """``parent`` (None for a target) needs ``name`` at versions allowed by ``constraint``."""

    name: str
    constraint: Constraint
    parent: BlockVersion | None
    allowed: frozenset[BlockVersion]

    def describe(self) -> str:
        if self.parent is None:
            return f"target {self.name}" + ("" if self.constraint.text == "*"
                                            else f" {self.constraint}")
        return f"{self.parent.label} requires {self.name} {self.constraint}"


@dataclass
class Resolution:
    """The chosen version of each block in the targets' minimal closure."""

    selected: dict[str, BlockVersion]  # by block name, sorted
    reasons: dict[str, list[str]]  # why each version was chosen
    targets: list[str]  # block names, in the order given
    environment: str = ""
    stateful: dict[str, bool] = field(default_factory=dict)  # by block name

    def dependencies(self, name: str) -> list[str]:
        """The blocks ``name``'s selected version requires (all inside the resolution)."""
        return sorted(self.selected[name].requires)

    def to_json(self) -> dict[str, Any]:
        return {
            "targets": list(self.targets),
            "environment": self.environment or None,
            "selected": {
                name: {"version": str(bv.version), "path": str(bv.path),
                       "requires": {d: str(c) for d, c in sorted(bv.requires.items())},
                       "images": list(bv.images), "reasons": self.reasons[name]}
                for name, bv in self.selected.items()
            },
        }


ANY = Constraint("*", ())

# Bounds on resolvelib's work (see find_matches and _Budget).
INCOMPATIBILITY_LIMIT = 100_000
TIME_LIMIT_SECONDS = 60.0


def parse_target(registry: Registry, text: str) -> tuple[str, Version | None]:
    """``name`` or ``name@version`` → (block name, version or None). ``UsageError`` otherwise."""
    name, _, version_text = text.partition("@")
    block = registry.block(name)
    if not version_text:
        return name, None
    try:
        version = parse_version(version_text)
    except VersionSyntaxError as exc:
        raise UsageError(f"target `{text}`: {exc}") from None
    if version not in block.versions:
        raise UsageError(f"target `{text}`: block `{name}` has no version {version}"
                         f"{suggest(str(version), [str(v) for v in block.versions])}",
                         hint=f"versions of {name}: {format_versions(block.versions)}")
    return name, version


def resolve(registry: Registry, targets: list[str], pins: Mapping[str, Version] | None = None,
            prefer: Mapping[str, Version] | None = None, *,
            environment: str = "", reporter: Any = None,
            time_limit: float | None = TIME_LIMIT_SECONDS) -> Resolution:
    """Choose one version per block for ``targets`` (``"name"`` or ``"name@version"``).

    ``pins``: exact versions required by the environment (applied only to blocks in the
    closure). ``prefer``: versions already deployed, chosen first when they satisfy everything.
    ``environment`` only names the pins in messages; ``reporter`` is an optional resolvelib
    ``BaseReporter`` (diagnostics, benchmarks). ``time_limit`` bounds the search
    (resolvelib's backjumping can blow up on many targets with many conflicts). Raises
    ``ResolutionError`` with a chain a person can act on, ``UsageError`` for unknown targets.
    """
    from resolvelib import BaseReporter, Resolver
    from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep

    if not targets:
        raise UsageError("nothing to resolve: name at least one block",
                         hint=f"blocks: {', '.join(sorted(registry.blocks))}")
    pins = dict(pins or {})
    prefer = dict(prefer or {})
    provider = _Provider(registry, pins, prefer)
    roots: list[Requirement] = []
    target_names: list[str] = []
    for text in targets:
        name, version = parse_target(registry, text)
        if name not in target_names:
            target_names.append(name)
        constraint = ANY if version is None else Constraint.exactly(version)
        roots.append(provider.requirement(name, constraint, None))
    budget = _Budget(reporter or BaseReporter(), time_limit)
    resolver = Resolver(provider, budget)
    try:
        with gc_paused():
            result = resolver.resolve(roots, max_rounds=max(1000, 20 * len(registry.blocks)))
    except _ResolverOverload as exc:
        busiest = sorted(budget.conflicts, key=lambda n: (-budget.conflicts[n], n))[:5]
        raise ResolutionError(
            f"gave up resolving {', '.join(target_names)}"
            + (f" in environment {environment}" if environment else "")
            + f": the search exceeded its bounds ({exc.reason}) while backtracking over "
            f"conflicting requirements"
            + (f" on {', '.join(busiest)}" if busiest else ""),
            hint="resolve fewer targets at once, or pin the blocks in conflict in the "
                 "environment (blocks.toml [environments.NAME] pins)") from None
    except ResolutionImpossible as exc:
        raise ResolutionError(_explain(registry, exc.causes, target_names, pins, environment,
                                       provider.look_ahead_conflicts),
                              hint=_HINT) from None
    except ResolutionTooDeep as exc:
        raise ResolutionError(f"resolution of {', '.join(targets)} gave up after "
                              f"{exc.round_count} rounds") from None

    selected = {name: result.mapping[name] for name in sorted(result.mapping)}
    reasons: dict[str, list[str]] = {}
    for name, chosen in selected.items():
        lines = sorted({info.requirement.describe() for info in
                        result.criteria[name].information
                        # only requirements of versions in the final choice
                        if info.parent is None or selected.get(info.parent.block)
                        is info.parent},
                       key=lambda line: (not line.startswith("target"), line))
        if name in pins:
            lines.append(f"pinned to {pins[name]}" + _by_env(environment))
        if prefer.get(name) == chosen.version:
            lines.append("already deployed" + (f" in {environment}" if environment else ""))
        elif name not in pins:
            newer = [v for v in registry.blocks[name].versions if v > chosen.version]
            lines.append("newest version" if not newer else
                         f"newest version compatible with the whole resolution (newer: "
                         f"{format_versions(newer)})")
        reasons[name] = lines
    return Resolution(selected=selected, reasons=reasons, targets=target_names,
                      environment=environment,
                      stateful={n: registry.blocks[n].stateful for n in selected})


_HINT = ("change one of the requirements above in blocks.toml, the environment's pins, or the "
         "target version, or add a block version that satisfies them all")


def _by_env(environment: str) -> str:
    return f" by environment {environment}" if environment else " by the environment"


class _ResolverOverload(Exception):
    """resolvelib's bookkeeping grew out of bounds; ``resolve`` turns it into ResolutionError."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Budget:
    """A resolvelib reporter that stops a resolution past its time limit and remembers which
    blocks caused backtracking (for the message); forwards every event to ``inner``."""

    def __init__(self, inner: Any, limit: float | None) -> None:
        import time

        self.inner = inner
        self.deadline = None if limit is None else time.monotonic() + limit
        self.limit = limit
        self.conflicts: dict[str, int] = {}
        self._clock = time.monotonic

    def starting_round(self, index: int) -> None:
        if self.deadline is not None and self._clock() > self.deadline:
            raise _ResolverOverload(f"time limit of {self.limit:g} s")
        self.inner.starting_round(index)

    def resolving_conflicts(self, causes: Any) -> None:
        for cause in causes:
            name = cause.requirement.name
            self.conflicts[name] = self.conflicts.get(name, 0) + 1
        self.inner.resolving_conflicts(causes)

    def __getattr__(self, name: str) -> Any:  # starting, ending, pinning, ... unchanged
        return getattr(self.inner, name)


class _Provider:
    """resolvelib provider over a ``Registry`` (duck-typed ``AbstractProvider``)."""

    def __init__(self, registry: Registry, pins: dict[str, Version],
                 prefer: dict[str, Version]) -> None:
        self.registry = registry
        self.pins = pins
        self.prefer = prefer
        self._allowed: dict[tuple[str, str], frozenset[BlockVersion]] = {}
        self._newest_first: dict[str, list[BlockVersion]] = {}
        self._dependencies: dict[int, list[Requirement]] = {}
        self._heights: dict[str, int] = {}
        self._always: dict[str, frozenset[str]] = {}
        self._always_dependents: dict[str, list[str]] = {}
        self._registered: set[str] = set()
        # block → the requirements of a required, not yet pinned block that emptied its list
        self.look_ahead_conflicts: dict[str, list[Requirement]] = {}

    # helpers ----------------------------------------------------------------------------

    def requirement(self, name: str, constraint: Constraint,
                    parent: BlockVersion | None) -> Requirement:
        key = (name, constraint.text)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = frozenset(bv for bv in self.registry.blocks[name].versions.values()
                                if constraint.allows(bv.version))
            self._allowed[key] = allowed
        return Requirement(name, constraint, parent, allowed)

    def _versions(self, name: str) -> list[BlockVersion]:
        versions = self._newest_first.get(name)
        if versions is None:
            versions = self._newest_first[name] = self.registry.blocks[name].newest_first()
        return versions

    def height(self, name: str) -> int:
        """Longest chain of requirements below ``name`` in the registry (any version)."""
        if name in self._heights:
            return self._heights[name]
        blocks = self.registry.blocks
        stack = [(name, False)]
        while stack:
            node, expanded = stack.pop()
            if node in self._heights:
                continue
            deps = {d for bv in blocks[node].versions.values() for d in bv.required_blocks()}
            if expanded:
                self._heights[node] = 1 + max((self._heights.get(d, 0) for d in deps),
                                              default=-1)
                continue
            stack.append((node, True))
            stack.extend((d, False) for d in deps if d not in self._heights)
        return self._heights[name]

    # resolvelib interface ------------------------------------------------------------------

    def identify(self, requirement_or_candidate: Requirement | BlockVersion) -> str:
        if isinstance(requirement_or_candidate, Requirement):
            return requirement_or_candidate.name
        return requirement_or_candidate.block

    def get_preference(self, identifier: str, resolutions: Mapping[str, BlockVersion],
                       candidates: Mapping[str, Any], information: Mapping[str, Any],
                       backtrack_causes: Sequence[Any]) -> tuple[bool, int, str]:
        in_causes = any(cause.requirement.name == identifier for cause in backtrack_causes)
        return (not in_causes, -self.height(identifier), identifier)

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
                raise _ResolverOverload(identifier)
        self._register_always_required(identifier)
        pin = self.pins.get(identifier)
        matches = [bv for bv in self._versions(identifier)
                   if bv not in bad and (pin is None or bv.version == pin)
                   and all(bv in r.allowed for r in reqs)]
        if matches:
            matches = self._look_ahead(identifier, matches, requirements)
        preferred = self.prefer.get(identifier)
        if preferred is not None:
            matches.sort(key=lambda bv: bv.version != preferred)  # stable: rest newest first
        return matches

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
            versions = self.registry.blocks[name].versions.values()
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
        for dependent in self._always_dependents.get(identifier, ()):
            if dependent not in requirements:
                continue  # not required in this state
            reqs = list(requirements[dependent])
            pin = self.pins.get(dependent)
            suitable: set[BlockVersion] = set()
            remaining: list[BlockVersion] = []
            for version in self._versions(dependent):
                if (pin is None or version.version == pin) \
                        and all(version in r.allowed for r in reqs):
                    remaining.append(version)
                    suitable.update(self.requirement(
                        identifier, version.requires[identifier], version).allowed)
            matches = [bv for bv in matches if bv in suitable]
            if not matches:  # remembered for the explanation, should this conflict be final
                self.look_ahead_conflicts[identifier] = [
                    self.requirement(identifier, v.requires[identifier], v) for v in remaining]
                break
        return matches

    def is_satisfied_by(self, requirement: Requirement, candidate: BlockVersion) -> bool:
        return candidate in requirement.allowed

    def get_dependencies(self, candidate: BlockVersion) -> list[Requirement]:
        deps = self._dependencies.get(id(candidate))
        if deps is None:
            deps = [self.requirement(name, candidate.requires[name], candidate)
                    for name in sorted(candidate.requires)]
            self._dependencies[id(candidate)] = deps
        return deps


def _explain(registry: Registry, causes: Iterable[Any], targets: list[str],
             pins: dict[str, Version], environment: str,
             look_ahead: dict[str, list[Requirement]] | None = None) -> str:
    """The failure as a chain: per conflicting block, who required what, and what exists."""
    by_block: dict[str, list[Requirement]] = {}
    for info in causes:
        by_block.setdefault(info.requirement.name, [])
        if info.requirement not in by_block[info.requirement.name]:
            by_block[info.requirement.name].append(info.requirement)
    for name in list(by_block):  # requirements of blocks not pinned yet that ruled out the rest
        for requirement in (look_ahead or {}).get(name, ()):
            if requirement not in by_block[name]:
                by_block[name].append(requirement)
    lines = [f"no versions satisfy {', '.join(targets)}"
             + (f" in environment {environment}" if environment else "") + ":"]
    for name in sorted(by_block):
        lines.append(f"  {name}: no version satisfies all of")
        seen = set()
        for req in by_block[name]:
            line = req.describe()
            if req.parent is not None:
                via = _path_from_targets(registry, targets, req.parent.block)
                if len(via) > 1:
                    line += f"   (required via {' → '.join(via)})"
            if line not in seen:
                seen.add(line)
                lines.append(f"    - {line}")
        if name in pins:
            lines.append(f"    - pinned to {pins[name]}{_by_env(environment)}")
        lines.append(f"    versions of {name}: {format_versions(registry.blocks[name].versions)}")
    return "\n".join(lines)


def _path_from_targets(registry: Registry, targets: list[str], goal: str) -> list[str]:
    """Shortest chain of block names from a target down to ``goal`` (breadth first)."""
    previous: dict[str, str | None] = {t: None for t in targets}
    frontier = list(targets)
    while frontier and goal not in previous:
        following = []
        for node in frontier:
            deps = sorted({d for bv in registry.blocks[node].versions.values()
                           for d in bv.requires})
            for dep in deps:
                if dep not in previous:
                    previous[dep] = node
                    following.append(dep)
        frontier = following
    if goal not in previous:
        return [goal]
    chain = [goal]
    while previous[chain[-1]] is not None:
        chain.append(previous[chain[-1]])  # type: ignore[arg-type]
    return list(reversed(chain))
