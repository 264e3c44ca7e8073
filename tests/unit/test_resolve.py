"""Resolution: newest first, pins, preferred (deployed) versions, minimal closure, backtracking,
explanations of impossible cases, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
from resolvelib import AbstractProvider, BaseReporter

from infrablocks.errors import UsageError
from infrablocks.registry import Registry, load_registry
from infrablocks.resolve import ResolutionError, resolve
from infrablocks.versions import parse_version
from tests.support.registry_repo import copy_example, make_repo


def chosen(resolution) -> dict[str, str]:
    return {name: str(bv.version) for name, bv in resolution.selected.items()}


def registry_of(tmp_path: Path, toml: str) -> Registry:
    return load_registry(make_repo(tmp_path, toml))


@pytest.fixture
def example(tmp_path: Path) -> Registry:
    return load_registry(copy_example(tmp_path / "example"))


def test_example_minimal_environment_of_microservice01(example: Registry) -> None:
    resolution = resolve(example, ["microservice01"])
    assert chosen(resolution) == {"base": "1.1.0", "microservice01": "1.0.0",
                                  "nomad": "1.0.0", "stolon": "1.1.0"}
    assert "microservice02" not in resolution.selected
    assert resolution.targets == ["microservice01"]
    assert resolution.stateful == {"base": True, "microservice01": False, "nomad": False,
                                   "stolon": True}


def test_example_with_the_prod_pins(example: Registry) -> None:
    env = example.environment("prod")
    resolution = resolve(example, ["microservice01"], env.pins, environment=env.name)
    assert chosen(resolution)["base"] == "1.0.0"
    assert "pinned to 1.0.0 by environment prod" in resolution.reasons["base"]
    assert "microservice01 1.0.0 requires base ~> 1.0" in resolution.reasons["base"]
    assert resolution.reasons["microservice01"][0] == "target microservice01"


def test_newest_satisfying_version_is_chosen(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, """
        [blocks.lib.versions."1.0.0"]
        [blocks.lib.versions."1.4.0"]
        [blocks.lib.versions."1.10.0"]
        [blocks.lib.versions."2.0.0"]
        [blocks.app.versions."1.0.0"]
        requires = { lib = "~> 1.2" }
    """)
    resolution = resolve(registry, ["app"])
    assert chosen(resolution) == {"app": "1.0.0", "lib": "1.10.0"}
    assert resolution.reasons["lib"][-1].startswith(
        "newest version compatible with the whole resolution (newer: 2.0.0)")


def test_target_at_version(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, """
        [blocks.lib.versions."1.0.0"]
        [blocks.lib.versions."2.0.0"]
        [blocks.app.versions."1.0.0"]
        requires = { lib = "~> 1.0" }
        [blocks.app.versions."2.0.0"]
        requires = { lib = "~> 2.0" }
    """)
    assert chosen(resolve(registry, ["app@1.0.0"])) == {"app": "1.0.0", "lib": "1.0.0"}
    assert chosen(resolve(registry, ["app"])) == {"app": "2.0.0", "lib": "2.0.0"}
    assert chosen(resolve(registry, ["lib@1.0.0"])) == {"lib": "1.0.0"}


def test_several_targets_share_one_resolution(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, """
        [blocks.lib.versions."1.0.0"]
        [blocks.lib.versions."1.5.0"]
        [blocks.a.versions."1.0.0"]
        requires = { lib = ">= 1.0" }
        [blocks.b.versions."1.0.0"]
        requires = { lib = "< 1.5" }
        [blocks.unrelated.versions."1.0.0"]
    """)
    resolution = resolve(registry, ["a", "b"])
    assert chosen(resolution) == {"a": "1.0.0", "b": "1.0.0", "lib": "1.0.0"}
    assert chosen(resolve(registry, ["a"])) == {"a": "1.0.0", "lib": "1.5.0"}


def test_diamond(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, """
        [blocks.d.versions."1.0.0"]
        [blocks.d.versions."1.1.0"]
        [blocks.d.versions."1.2.0"]
        [blocks.d.versions."1.3.0"]
        [blocks.b.versions."1.0.0"]
        requires = { d = ">= 1.1" }
        [blocks.c.versions."1.0.0"]
        requires = { d = "< 1.3" }
        [blocks.top.versions."1.0.0"]
        requires = { b = "1.0.0", c = "1.0.0" }
    """)
    resolution = resolve(registry, ["top"])
    assert chosen(resolution)["d"] == "1.2.0"
    assert sorted(resolution.reasons["d"][:2]) == ["b 1.0.0 requires d >= 1.1",
                                                   "c 1.0.0 requires d < 1.3"]


def test_backtracking_to_an_older_version(tmp_path: Path) -> None:
    # top's newest version needs x 2.x, whose only versions need base 2.x, but y pins base 1.x:
    # the resolver must give up top 2.0.0 after trying it.
    registry = registry_of(tmp_path, """
        [blocks.base.versions."1.0.0"]
        [blocks.base.versions."2.0.0"]
        [blocks.x.versions."1.0.0"]
        requires = { base = "~> 1.0" }
        [blocks.x.versions."2.0.0"]
        requires = { base = "~> 2.0" }
        [blocks.y.versions."1.0.0"]
        requires = { base = "~> 1.0" }
        [blocks.top.versions."1.0.0"]
        requires = { x = "~> 1.0", y = "~> 1.0" }
        [blocks.top.versions."2.0.0"]
        requires = { x = "~> 2.0", y = "~> 1.0" }
    """)

    class Counting(BaseReporter):
        rejected = 0

        def rejecting_candidate(self, criterion, candidate):  # noqa: ANN001
            Counting.rejected += 1

    resolution = resolve(registry, ["top"], reporter=Counting())
    assert chosen(resolution) == {"base": "1.0.0", "top": "1.0.0", "x": "1.0.0", "y": "1.0.0"}
    assert Counting.rejected >= 1


def test_backjumping_across_blocks(tmp_path: Path) -> None:
    # a (resolved first: it is higher) takes lib 1.9.0 >= 1.5; b only works with lib < 1.5, so
    # a must go back to 1.8.0.
    registry = registry_of(tmp_path, """
        [blocks.lib.versions."1.0.0"]
        [blocks.lib.versions."1.9.0"]
        [blocks.mid.versions."1.0.0"]
        requires = { lib = "~> 1.0" }
        [blocks.a.versions."1.8.0"]
        requires = { lib = "~> 1.0", mid = "~> 1.0" }
        [blocks.a.versions."1.9.0"]
        requires = { lib = ">= 1.5", mid = "~> 1.0" }
        [blocks.b.versions."1.0.0"]
        requires = { lib = "< 1.5" }
        [blocks.top.versions."1.0.0"]
        requires = { a = "~> 1.0", b = "~> 1.0" }
    """)
    assert chosen(resolve(registry, ["top"])) == {
        "a": "1.8.0", "b": "1.0.0", "lib": "1.0.0", "mid": "1.0.0", "top": "1.0.0"}


def test_pins_apply_only_inside_the_closure(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, """
        [blocks.lib.versions."1.0.0"]
        [blocks.lib.versions."1.1.0"]
        [blocks.other.versions."1.0.0"]
        [blocks.other.versions."2.0.0"]
        [blocks.app.versions."1.0.0"]
        requires = { lib = "~> 1.0" }
    """)
    pins = {"lib": parse_version("1.0.0"), "other": parse_version("1.0.0")}
    resolution = resolve(registry, ["app"], pins)
    assert chosen(resolution) == {"app": "1.0.0", "lib": "1.0.0"}


def test_preferred_versions_are_kept_when_they_fit(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, """
        [blocks.lib.versions."1.0.0"]
        [blocks.lib.versions."1.1.0"]
        [blocks.lib.versions."2.0.0"]
        [blocks.app.versions."1.0.0"]
        requires = { lib = "~> 1.0" }
    """)
    kept = resolve(registry, ["app"], prefer={"lib": parse_version("1.0.0")},
                   environment="prod")
    assert chosen(kept)["lib"] == "1.0.0"
    assert "already deployed in prod" in kept.reasons["lib"]
    ignored = resolve(registry, ["app"], prefer={"lib": parse_version("2.0.0")})
    assert chosen(ignored)["lib"] == "1.1.0"


def test_pin_conflict_is_explained(example: Registry) -> None:
    env = example.environment("prod")
    with pytest.raises(ResolutionError) as caught:
        resolve(example, ["base@1.1.0"], env.pins, environment="prod")
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert "no versions satisfy base in environment prod" in message
    assert "target base = 1.1.0" in message
    assert "pinned to 1.0.0 by environment prod" in message
    assert "versions of base: 1.0.0, 1.1.0" in message
    assert "hint:" in message


def test_impossible_requirements_are_explained_as_a_chain(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, """
        [blocks.base.versions."1.0.0"]
        [blocks.base.versions."2.0.0"]
        [blocks.nomad.versions."1.0.0"]
        requires = { base = "~> 1.0" }
        [blocks.stolon.versions."1.0.0"]
        requires = { base = "~> 2.0" }
        [blocks.svc.versions."1.0.0"]
        requires = { nomad = "~> 1.0", stolon = "~> 1.0" }
    """)
    with pytest.raises(ResolutionError) as caught:
        resolve(registry, ["svc"])
    message = str(caught.value)
    assert "no versions satisfy svc:" in message
    assert "base: no version satisfies all of" in message
    assert "nomad 1.0.0 requires base ~> 1.0   (required via svc → nomad)" in message
    assert "stolon 1.0.0 requires base ~> 2.0   (required via svc → stolon)" in message
    assert "versions of base: 1.0.0, 2.0.0" in message


def test_unknown_targets_are_usage_errors(example: Registry) -> None:
    with pytest.raises(UsageError, match="did you mean `microservice01`"):
        resolve(example, ["microservice1"])
    with pytest.raises(UsageError, match="has no version 9.0.0") as caught:
        resolve(example, ["base@9.0.0"])
    assert "versions of base: 1.0.0, 1.1.0" in str(caught.value)
    with pytest.raises(UsageError, match="MAJOR.MINOR.PATCH"):
        resolve(example, ["base@latest"])
    with pytest.raises(UsageError, match="nothing to resolve"):
        resolve(example, [])


def test_resolution_is_deterministic(example: Registry) -> None:
    first = resolve(example, ["microservice02", "microservice01"])
    second = resolve(example, ["microservice02", "microservice01"])
    assert first.to_json() == second.to_json()
    assert list(first.selected) == sorted(first.selected)
    document = first.to_json()
    assert document["targets"] == ["microservice02", "microservice01"]
    assert document["selected"]["nomad"]["requires"] == {"base": "~> 1.0"}
    assert document["selected"]["base"]["path"].endswith("blocks/base/1.1.0")


def test_many_targets_with_many_conflicts_resolve_without_backjumping(tmp_path: Path) -> None:
    # The benchmark's synthetic registry: every 7th block of a layer conflicts with its
    # neighbour's newest version. Resolving every block at once used to send resolvelib into
    # backjumping whose bookkeeping doubled per step (minutes for 20 targets); the provider's
    # look-ahead turns each such conflict into a rejected candidate.
    from benchmarks.registry_gen import generate

    generate(tmp_path / "synthetic", blocks=300, depth=10)
    registry = load_registry(tmp_path / "synthetic")

    class Counting(BaseReporter):
        backjumps = 0
        rejected = 0

        def resolving_conflicts(self, causes):  # noqa: ANN001
            Counting.backjumps += 1

        def rejecting_candidate(self, criterion, candidate):  # noqa: ANN001
            Counting.rejected += 1

    resolution = resolve(registry, sorted(registry.blocks), reporter=Counting(), time_limit=60)
    assert len(resolution.selected) == 300
    assert Counting.rejected > 0  # the conflicts were there
    assert Counting.backjumps == 0
    for bv in resolution.selected.values():  # and the result is consistent
        for dep, constraint in bv.requires.items():
            assert constraint.allows(resolution.selected[dep].version)


def test_a_search_past_its_time_limit_is_abandoned_with_advice(example: Registry) -> None:
    with pytest.raises(ResolutionError, match=r"exceeded its bounds \(time limit of 0 s\)") \
            as caught:
        resolve(example, ["microservice01"], time_limit=0)
    assert "resolve fewer targets at once, or pin" in str(caught.value)


# --- the newest-first pass and resolvelib ------------------------------------------------------


def test_a_conflict_free_resolution_is_one_newest_first_sweep(example: Registry) -> None:
    class Counting(BaseReporter):
        rounds = 0

        def starting_round(self, index):  # noqa: ANN001
            Counting.rounds += 1

    resolution = resolve(example, ["microservice01"], reporter=Counting())
    assert resolution.search == "newest-first"
    assert Counting.rounds == 0  # resolvelib never ran
    reference = resolve(example, ["microservice01"], search="resolvelib")
    assert reference.search == "resolvelib"
    assert resolution.to_json() == reference.to_json()


def test_a_conflict_hands_the_resolution_to_resolvelib(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, """
        [blocks.lib.versions."1.0.0"]
        [blocks.lib.versions."1.9.0"]
        [blocks.a.versions."1.8.0"]
        requires = { lib = "~> 1.0" }
        [blocks.a.versions."1.9.0"]
        requires = { lib = ">= 1.5" }
        [blocks.b.versions."1.0.0"]
        requires = { lib = "< 1.5" }
        [blocks.top.versions."1.0.0"]
        requires = { a = "~> 1.0", b = "~> 1.0" }
    """)
    resolution = resolve(registry, ["top"])
    assert resolution.search == "resolvelib"
    assert chosen(resolution) == {"a": "1.8.0", "b": "1.0.0", "lib": "1.0.0", "top": "1.0.0"}
    assert resolution.reasons["lib"][:2] == ["a 1.8.0 requires lib ~> 1.0",
                                             "b 1.0.0 requires lib < 1.5"]


def test_one_number_pessimistic_requirement_stays_on_its_major(tmp_path: Path) -> None:
    # issue 10: `lib = "~> 1"` resolved to lib 2.0.0
    registry = registry_of(tmp_path, """
        [blocks.lib.versions."1.0.0"]
        [blocks.lib.versions."1.4.0"]
        [blocks.lib.versions."2.0.0"]
        [blocks.app.versions."1.0.0"]
        requires = { lib = "~> 1" }
    """)
    assert chosen(resolve(registry, ["app"]))["lib"] == "1.4.0"


def test_a_bare_target_takes_the_newest_release(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, """
        [blocks.lib.versions."1.0.0"]
        [blocks.lib.versions."2.0.0-rc.1"]
    """)
    assert chosen(resolve(registry, ["lib"])) == {"lib": "1.0.0"}
    assert chosen(resolve(registry, ["lib@2.0.0-rc.1"])) == {"lib": "2.0.0-rc.1"}


def test_time_limit_in_the_newest_first_pass_claims_no_conflict(example: Registry) -> None:
    with pytest.raises(ResolutionError) as caught:
        resolve(example, ["microservice01"], time_limit=0)
    message = str(caught.value)
    assert "exceeded its bounds (time limit of 0 s)" in message
    assert "before any conflict was met" in message
    assert "conflicting requirements" not in message


CONFLICTING = """
    [blocks.base.versions."1.0.0"]
    [blocks.base.versions."2.0.0"]
    [blocks.x.versions."1.0.0"]
    requires = { base = "~> 1.0" }
    [blocks.x.versions."2.0.0"]
    requires = { base = "~> 2.0" }
    [blocks.y.versions."1.0.0"]
    requires = { base = "~> 1.0" }
    [blocks.top.versions."1.0.0"]
    requires = { x = "~> 1.0", y = "~> 1.0" }
    [blocks.top.versions."2.0.0"]
    requires = { x = "~> 2.0", y = "~> 1.0" }
"""  # top 2.0.0 needs x 2.x, which needs base 2.x, but y needs base 1.x: resolvelib backjumps


def test_time_limit_in_resolvelib_names_the_conflicts_it_met(tmp_path: Path) -> None:
    import time

    registry = registry_of(tmp_path, CONFLICTING)

    class Slow(BaseReporter):
        def resolving_conflicts(self, causes):  # noqa: ANN001
            time.sleep(0.3)

    with pytest.raises(ResolutionError) as caught:
        resolve(registry, ["top"], reporter=Slow(), time_limit=0.2)
    message = str(caught.value)
    assert "exceeded its bounds (time limit of 0.2 s) after" in message
    assert "rounds of backtracking over conflicting requirements on " in message
    assert "pin the blocks in conflict" in message


def test_time_limit_in_resolvelib_before_any_conflict(tmp_path: Path) -> None:
    import time

    registry = registry_of(tmp_path, CONFLICTING)

    class Slow(BaseReporter):
        def pinning(self, candidate):  # noqa: ANN001
            time.sleep(0.3)

    with pytest.raises(ResolutionError) as caught:
        resolve(registry, ["top"], reporter=Slow(), time_limit=0.2, search="resolvelib")
    message = str(caught.value)
    assert "(time limit of 0.2 s) after 2 rounds of resolvelib's search, which had not " \
           "backtracked yet" in message
    assert "conflict" not in message
    with pytest.raises(ResolutionError) as caught:  # the same after the newest-first pass
        resolve(registry, ["top"], reporter=Slow(), time_limit=0.2)
    assert "which had not backtracked yet (it searched because the newest versions conflict " \
           "on base)" in str(caught.value)


def test_size_limit_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import infrablocks.resolve_provider as provider

    monkeypatch.setattr(provider, "INCOMPATIBILITY_LIMIT", 0)
    registry = registry_of(tmp_path, CONFLICTING)
    with pytest.raises(ResolutionError) as caught:
        resolve(registry, ["top"])
    message = str(caught.value)
    assert "exceeded its bounds (size limit: more than 0 incompatible candidates recorded " \
           "for " in message
    assert "backtracking over conflicting requirements on" in message


def test_unknown_search(example: Registry) -> None:
    with pytest.raises(UsageError, match="unknown search `greedy`"):
        resolve(example, ["base"], search="greedy")


# Property: on generated registries, whenever the newest-first pass meets no conflict its result
# is exactly what resolvelib picks, with an independent, plain resolvelib provider (newest
# first, the deployed version first, pins as filters, dependents before dependencies; no
# look-ahead, none of infrablocks' caches); and whatever the search, the result meets every
# requirement and pin.


class PlainProvider(AbstractProvider):  # type: ignore[type-arg]
    """The smallest resolvelib provider with infrablocks' rules, for reference. Requirements
    are (block, constraint or None for a target)."""

    def __init__(self, registry: Registry, pins: dict, prefer: dict) -> None:  # type: ignore[type-arg]
        self.registry, self.pins, self.prefer = registry, pins, prefer
        self.heights: dict[str, int] = {}

    def height(self, name: str) -> int:
        if name not in self.heights:
            deps = {d for bv in self.registry.blocks[name].versions.values() for d in bv.requires}
            self.heights[name] = 1 + max((self.height(d) for d in deps), default=-1)
        return self.heights[name]

    def identify(self, requirement_or_candidate):  # noqa: ANN001, ANN201
        if isinstance(requirement_or_candidate, tuple):
            return requirement_or_candidate[0]
        return requirement_or_candidate.block

    def get_preference(self, identifier, resolutions, candidates, information,  # noqa: ANN001, ANN201
                       backtrack_causes):  # noqa: ANN001
        return (-self.height(identifier), identifier)

    def find_matches(self, identifier, requirements, incompatibilities):  # noqa: ANN001, ANN201
        bad = {id(bv) for bv in incompatibilities[identifier]}
        newest = sorted(self.registry.blocks[identifier].versions.values(),
                        key=lambda bv: bv.version, reverse=True)
        ordered = sorted(newest, key=lambda bv: bv.version != self.prefer.get(identifier))
        return [bv for bv in ordered
                if id(bv) not in bad
                and (identifier not in self.pins or bv.version == self.pins[identifier])
                and all(self.is_satisfied_by(r, bv) for r in requirements[identifier])]

    def is_satisfied_by(self, requirement, candidate):  # noqa: ANN001, ANN201
        constraint = requirement[1]
        return constraint is None or constraint.allows(candidate.version)

    def get_dependencies(self, candidate):  # noqa: ANN001, ANN201
        return [(dep, constraint) for dep, constraint in candidate.requires.items()]


def plain_resolvelib(registry: Registry, targets: list[str], pins: dict,  # type: ignore[type-arg]
                     prefer: dict) -> dict[str, str]:  # type: ignore[type-arg]
    from resolvelib import Resolver

    roots = [(t, None) for t in targets]
    result = Resolver(PlainProvider(registry, pins, prefer), BaseReporter()).resolve(
        roots, max_rounds=100_000)
    return {name: str(bv.version) for name, bv in sorted(result.mapping.items())}


@pytest.mark.parametrize("seed", range(12))
def test_newest_first_equals_resolvelib_on_generated_registries(tmp_path: Path,
                                                                seed: int) -> None:
    import random

    from benchmarks.registry_gen import deep_target, generate_wide

    rng = random.Random(seed)
    counts = {"newest-first": 0, "resolvelib": 0, "impossible": 0}
    for case in range(6):
        blocks, depth = rng.choice([(24, 3), (40, 5), (60, 6), (90, 8)])
        root = tmp_path / f"r{case}"
        generate_wide(root, blocks=blocks, versions=rng.choice([3, 5]), depth=depth,
                      fan_in=rng.choice([1, 2, 3]), seed=seed * 100 + case,
                      restrictive=rng.choice([0.0, 0.0, 0.1, 0.3]))
        registry = load_registry(root)
        names = sorted(registry.blocks)
        targets = rng.choice([[deep_target(blocks, depth)], rng.sample(names, 3), names])
        pins = {n: rng.choice(list(registry.blocks[n].versions))
                for n in rng.sample(names, rng.choice([0, 1, 3]))}
        prefer = {n: rng.choice(list(registry.blocks[n].versions))
                  for n in rng.sample(names, rng.choice([0, 2, 5]))}
        try:
            resolution = resolve(registry, targets, pins, prefer)
        except ResolutionError as exc:  # a conflict without a way out, or resolvelib's
            # search ran past a bound after meeting conflicts (never the newest-first pass)
            assert "no versions satisfy" in str(exc) or \
                "rounds of backtracking over conflicting requirements on" in str(exc)
            counts["impossible"] += 1
            continue
        counts[resolution.search] += 1
        if resolution.search == "newest-first":
            # (plain resolvelib is only asked here: where there are conflicts its search, with
            # no look-ahead, can take minutes)
            assert chosen(resolution) == plain_resolvelib(registry, targets, pins, prefer)
            assert resolution.to_json() == resolve(registry, targets, pins, prefer,
                                                   search="resolvelib").to_json()
        for name, bv in resolution.selected.items():
            assert name not in pins or bv.version == pins[name]
            for dep, constraint in bv.requires.items():
                assert constraint.allows(resolution.selected[dep].version)
        assert set(resolution.targets) <= set(resolution.selected)
    assert counts["newest-first"] >= 2, counts  # the property was exercised


def test_the_generated_registries_cover_both_searches(tmp_path: Path) -> None:
    # The generator's `restrictive` option does produce conflicts the pass hands over.
    from benchmarks.registry_gen import generate_wide

    searches = set()
    for seed in range(20):
        generate_wide(tmp_path / f"r{seed}", blocks=40, versions=5, depth=5, fan_in=3,
                      seed=seed, restrictive=0.1)
        registry = load_registry(tmp_path / f"r{seed}")
        try:
            searches.add(resolve(registry, sorted(registry.blocks)).search)
        except ResolutionError:
            searches.add("impossible")
    assert {"newest-first", "resolvelib"} <= searches
