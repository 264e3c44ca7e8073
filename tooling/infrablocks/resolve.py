"""Version resolution: one version per block for the targets' minimal closure.

Only the targets and their transitive requirements are resolved (never a dependent, never an
unrelated block). Candidates are tried newest first, except that a version already deployed in
the environment (``prefer``) is tried first when it satisfies everything. Environment pins are
hard filters on the pinned blocks, but never pull a block into the closure.

Two searches, one result. The newest-first pass (``resolve_greedy``) decides every block in one
sweep, dependents before dependencies, and is linear in the closure: it is the whole resolution
when it meets no conflict, and then its result is exactly resolvelib's. When some block has no
version left that meets every requirement on it, resolvelib (``resolve_provider``) searches the
same problem with backtracking, and explains the conflict when there is no way out. Both are
bounded by one time limit; resolvelib also by the size of its bookkeeping and its rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infrablocks.errors import InfrablocksError, UsageError
from infrablocks.registry import BlockVersion, Registry, gc_paused, suggest
from infrablocks.resolve_candidates import Candidates, Requirement
from infrablocks.versions import (
    Constraint,
    Version,
    VersionSyntaxError,
    format_versions,
    parse_version,
)

if TYPE_CHECKING:
    from infrablocks.resolve_provider import Budget, Provider

__all__ = ["Resolution", "ResolutionError", "Requirement", "parse_target", "resolve"]


class ResolutionError(InfrablocksError):
    """No choice of versions satisfies the targets, requirements and pins (exit 1), or the
    search hit one of its bounds (the message names it)."""


@dataclass
class Resolution:
    """The chosen version of each block in the targets' minimal closure.

    ``search``: which search produced it, ``newest-first`` (no conflict met) or ``resolvelib``.
    """

    selected: dict[str, BlockVersion]  # by block name, sorted
    reasons: dict[str, list[str]]  # why each version was chosen
    targets: list[str]  # block names, in the order given
    environment: str = ""
    stateful: dict[str, bool] = field(default_factory=dict)  # by block name
    search: str = "newest-first"

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

# Bounds on the search (see resolve_provider). The time limit covers both searches.
TIME_LIMIT_SECONDS = 60.0
SEARCHES = ("auto", "resolvelib")


def parse_target(registry: Registry, text: str) -> tuple[str, Version | None]:
    """``name`` or ``name@version`` → (block name, version or None). ``UsageError`` otherwise."""
    name, at, version_text = text.partition("@")
    if at and not version_text:
        raise UsageError(f"target `{text}`: the version after `@` is empty",
                         hint=f"write {name} or {name}@VERSION")
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
            time_limit: float | None = TIME_LIMIT_SECONDS, search: str = "auto") -> Resolution:
    """Choose one version per block for ``targets`` (``"name"`` or ``"name@version"``).

    ``pins``: exact versions required by the environment (applied only to blocks in the
    closure). ``prefer``: versions already deployed, chosen first when they satisfy everything.
    ``environment`` only names the pins in messages. ``reporter``: an optional resolvelib
    ``BaseReporter`` (diagnostics, benchmarks); it hears resolvelib's events, so nothing when
    the newest-first pass settles the resolution. ``time_limit`` (seconds, None for none)
    bounds the whole search. ``search``: ``auto`` (the newest-first pass, resolvelib when it
    meets a conflict) or ``resolvelib`` (resolvelib alone: the reference the pass is tested
    against, and the benchmarks' baseline). A bare target allows any released version (as an
    absent Terraform constraint does); ``name@X-rc.1`` chooses a pre-release.

    Raises ``ResolutionError`` with a chain a person can act on, or naming the bound that
    stopped the search; ``UsageError`` for unknown targets or an unknown ``search``.
    """
    if search not in SEARCHES:
        raise UsageError(f"unknown search `{search}`: expected one of {', '.join(SEARCHES)}")
    if not targets:
        raise UsageError("nothing to resolve: name at least one block",
                         hint=f"blocks: {', '.join(sorted(registry.blocks))}")
    from infrablocks.resolve_greedy import Chosen, newest_first
    from infrablocks.resolve_provider import Budget, Provider, SearchBoundHit

    pins = dict(pins or {})
    prefer = dict(prefer or {})
    candidates = Candidates(registry, pins, prefer)
    roots: list[Requirement] = []
    target_names: dict[str, None] = {}  # in the order given, without repeats
    for text in targets:
        name, version = parse_target(registry, text)
        target_names[name] = None
        constraint = ANY if version is None else Constraint.exactly(version)
        roots.append(candidates.requirement(name, constraint, None))
    budget = Budget(reporter, time_limit)
    context = _Context(registry, list(target_names), pins, prefer, environment)
    with gc_paused():
        if search == "auto":
            try:
                found = newest_first(candidates, roots, budget.check_time)
            except SearchBoundHit as exc:
                raise context.bound_hit(exc.bound, budget, stage="newest-first") from None
            if isinstance(found, Chosen):
                return context.resolution(found.selected, found.requirements, "newest-first")
            context.first_conflict = found.block
        provider = Provider(candidates)
        return _resolvelib(context, provider, roots, budget)


def _resolvelib(context: _Context, provider: Provider, roots: list[Requirement],
                budget: Budget) -> Resolution:
    from resolvelib import BaseReporter, Resolver  # imported only when it is needed
    from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep

    from infrablocks.resolve_provider import SearchBoundHit

    if budget.inner is None:
        budget.inner = BaseReporter()
    max_rounds = max(1000, 20 * len(context.registry.blocks))
    try:
        result = Resolver(provider, budget).resolve(roots, max_rounds=max_rounds)
    except SearchBoundHit as exc:
        raise context.bound_hit(exc.bound, budget, stage="resolvelib") from None
    except ResolutionTooDeep:
        raise context.bound_hit(f"round limit of {max_rounds:,}", budget,
                                stage="resolvelib") from None
    except ResolutionImpossible as exc:
        raise ResolutionError(_explain(context.registry, exc.causes, context.targets,
                                       context.pins, context.environment,
                                       provider.look_ahead_conflicts),
                              hint=_HINT) from None
    requirements: dict[str, list[Requirement]] = {
        name: [info.requirement for info in criterion.information
               # only requirements of versions in the final choice
               if info.parent is None or result.mapping.get(info.parent.block) is info.parent]
        for name, criterion in result.criteria.items() if name in result.mapping}
    return context.resolution(dict(result.mapping), requirements, "resolvelib")


_HINT = ("change one of the requirements above in blocks.toml, the environment's pins, or the "
         "target version, or add a block version that satisfies them all")


@dataclass
class _Context:
    """What a resolution's result and messages need besides the choice itself."""

    registry: Registry
    targets: list[str]
    pins: dict[str, Version]
    prefer: dict[str, Version]
    environment: str
    first_conflict: str | None = None  # where the newest-first pass stopped, if it did

    def resolution(self, selected: Mapping[str, BlockVersion],
                   requirements: Mapping[str, Iterable[Requirement]], search: str) -> Resolution:
        ordered = {name: selected[name] for name in sorted(selected)}
        reasons = {name: self._reasons(name, chosen, requirements.get(name, ()))
                   for name, chosen in ordered.items()}
        return Resolution(selected=ordered, reasons=reasons, targets=self.targets,
                          environment=self.environment,
                          stateful={n: self.registry.blocks[n].stateful for n in ordered},
                          search=search)

    def _reasons(self, name: str, chosen: BlockVersion,
                 requirements: Iterable[Requirement]) -> list[str]:
        lines = sorted({requirement.describe() for requirement in requirements},
                       key=lambda line: (not line.startswith("target"), line))
        if name in self.pins:
            lines.append(f"pinned to {self.pins[name]}" + _by_env(self.environment))
        if self.prefer.get(name) == chosen.version:
            lines.append("already deployed" + (f" in {self.environment}"
                                               if self.environment else ""))
        elif name not in self.pins:
            newer = [v for v in self.registry.blocks[name].versions if v > chosen.version]
            lines.append("newest version" if not newer else
                         f"newest version compatible with the whole resolution (newer: "
                         f"{format_versions(newer)})")
        return lines

    def bound_hit(self, bound: str, budget: Budget, *, stage: str) -> ResolutionError:
        """The error for a search stopped by ``bound``: which bound, how far it got, and
        conflicts only if some were actually met."""
        where = f" in environment {self.environment}" if self.environment else ""
        busiest = sorted(budget.conflicts, key=lambda n: (-budget.conflicts[n], n))[:5]
        if stage == "newest-first":
            progress = "while choosing the newest versions, before any conflict was met"
        elif busiest:
            progress = (f"after {budget.rounds:,} rounds of backtracking over conflicting "
                        f"requirements on {', '.join(busiest)}")
        else:
            progress = (f"after {budget.rounds:,} rounds of resolvelib's search, which had "
                        f"not backtracked yet")
            if self.first_conflict:
                progress += (f" (it searched because the newest versions conflict on "
                             f"{self.first_conflict})")
        hint = ("resolve fewer targets at once, or pin the blocks in conflict in the "
                "environment (its `pins` in blocks.toml)" if busiest or self.first_conflict else
                "resolve fewer targets at once, or pin blocks in the environment (its `pins` "
                "in blocks.toml) to narrow the search")
        return ResolutionError(f"gave up resolving {', '.join(self.targets)}{where}: the "
                               f"search exceeded its bounds ({bound}) {progress}", hint=hint)


def _by_env(environment: str) -> str:
    return f" by environment {environment}" if environment else " by the environment"


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
