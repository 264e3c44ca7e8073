"""blocks.toml loading and validation: every problem found at once, located and explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrablocks.errors import ConfigError, UsageError
from infrablocks.registry import ALLOWED_KEYS, load_registry
from infrablocks.versions import parse_version
from tests.support.registry_repo import MAIN_REPO, copy_example, make_repo

GOOD = """
[defaults]
environment = "prod"

[blocks.base]
description = "quorum"
stateful = true
rolling = { max_unavailable = 1 }

[blocks.base.versions."1.0.0"]
images = ["etcd@1.0.0"]
[blocks.base.versions."1.1.0"]
images = ["etcd@1.1.0"]
rolling = { order = "leader-last" }

[blocks.app.versions."1.0.0"]
requires = { base = "~> 1.0" }

[environments.prod]
pins = { base = "1.0.0" }
subnet = "127.42.7.0/24"
[environments.staging]
auto_create = true

[terraform]
binary = "terraform"
"""


def problems_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_registry(root)
    assert caught.value.exit_code == 2
    return caught.value.problems


def one_problem(root: Path) -> str:
    problems = problems_of(root)
    assert len(problems) == 1, problems
    return problems[0]


def test_loads_a_valid_registry(tmp_path: Path) -> None:
    registry = load_registry(make_repo(tmp_path, GOOD))
    assert registry.root == tmp_path.resolve()
    assert registry.path == tmp_path.resolve() / "blocks.toml"
    assert registry.default_environment == "prod"
    assert list(registry.blocks) == ["base", "app"]
    base = registry.blocks["base"]
    assert base.stateful and base.description == "quorum"
    assert base.extra == {"rolling": {"max_unavailable": 1}}
    assert [str(v) for v in base.versions] == ["1.0.0", "1.1.0"]
    newest = base.newest_first()[0]
    assert str(newest.version) == "1.1.0"
    assert newest.path == tmp_path.resolve() / "blocks" / "base" / "1.1.0"
    assert newest.images == ["etcd@1.1.0"]
    assert newest.extra == {"rolling": {"order": "leader-last"}}
    app = registry.blocks["app"].versions[parse_version("1.0.0")]
    assert str(app.requires["base"]) == "~> 1.0"
    assert not registry.blocks["app"].stateful
    assert registry.environments["prod"].pins == {"base": parse_version("1.0.0")}
    assert registry.environments["prod"].extra == {"subnet": "127.42.7.0/24"}
    assert registry.environments["staging"].extra == {"auto_create": True}
    assert registry.settings == {"terraform": {"binary": "terraform"}}


def test_the_project_example_registry_is_valid(tmp_path: Path) -> None:
    registry = load_registry(copy_example(tmp_path))
    assert {"base", "nomad", "stolon", "microservice01", "microservice02"} <= set(
        registry.blocks)
    assert registry.blocks["base"].stateful and registry.blocks["stolon"].stateful
    assert registry.environment(None).name == "prod"
    # and the real one, with whatever the other blocks' code looks like today
    assert set(load_registry(MAIN_REPO).blocks) >= set(registry.blocks)


def test_lookup_helpers_suggest_near_names(tmp_path: Path) -> None:
    registry = load_registry(make_repo(tmp_path, GOOD))
    with pytest.raises(UsageError, match="did you mean `base`"):
        registry.block("bsae")
    with pytest.raises(UsageError, match="versions of base: 1.0.0, 1.1.0"):
        registry.block_version("base", "2.0.0")
    assert str(registry.block_version("base", "1.1.0").version) == "1.1.0"
    ephemeral = registry.environment("t-1234")
    assert ephemeral.name == "t-1234" and ephemeral.pins == {}
    with pytest.raises(UsageError, match="invalid environment name"):
        registry.environment("../etc")


def test_toml_syntax_error_is_located(tmp_path: Path) -> None:
    make_repo(tmp_path, '[blocks.base]\ndescription = "x\n')
    with pytest.raises(ConfigError) as caught:
        load_registry(tmp_path)
    assert f"{tmp_path.resolve()}/blocks.toml:2:" in str(caught.value)
    assert "TOML syntax error" in str(caught.value)
    assert caught.value.exit_code == 2


def test_missing_registry_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_registry(tmp_path)


@pytest.mark.parametrize(("toml", "key_path", "suggestion"), [
    ("[blocks.a]\ndescripton = 'x'\n[blocks.a.versions.\"1.0.0\"]\n",
     "blocks.a.descripton", "`description`"),
    ("[blocks.a.versions.\"1.0.0\"]\nrequire = {}\n",
     'blocks.a.versions."1.0.0".require', "`requires`"),
    ("[blocks.a.versions.\"1.0.0\"]\n[environments.prod]\npin = {}\n",
     "environments.prod.pin", "`pins`"),
    ("[blocks.a.versions.\"1.0.0\"]\n[enviroments.prod]\n", "enviroments", "`environments`"),
    ("[defaults]\nenvironmnt = 'prod'\n[blocks.a.versions.\"1.0.0\"]\n",
     "defaults.environmnt", "`environment`"),
])
def test_unknown_keys_suggest_the_near_name(tmp_path: Path, toml: str, key_path: str,
                                            suggestion: str) -> None:
    problem = one_problem(make_repo(tmp_path, toml))
    assert f": {key_path}: unknown key; did you mean {suggestion}?" in problem
    assert "allowed here:" in problem
    assert problem.startswith("blocks.toml:")


def test_allowed_keys_are_extensible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_repo(tmp_path, "[blocks.a]\nowner = 'team'\n[blocks.a.versions.\"1.0.0\"]\n")
    assert "owner" in one_problem(root)
    monkeypatch.setitem(ALLOWED_KEYS, "block", ALLOWED_KEYS["block"] | {"owner"})
    assert load_registry(root).blocks["a"].extra == {"owner": "team"}


def test_invalid_version_key(tmp_path: Path) -> None:
    problem = one_problem(make_repo(tmp_path, '[blocks.a.versions."1.0"]\n'))
    assert 'blocks.a.versions."1.0": invalid version' in problem
    assert "MAJOR.MINOR.PATCH" in problem


def test_invalid_constraint(tmp_path: Path) -> None:
    problem = one_problem(make_repo(tmp_path, """
        [blocks.a.versions."1.0.0"]
        [blocks.b.versions."1.0.0"]
        requires = { a = "=> 1.0" }
    """))
    assert 'blocks.b.versions."1.0.0".requires.a: invalid constraint' in problem
    assert "~> 1.2" in problem  # says what would be valid


def test_requirement_on_unknown_block(tmp_path: Path) -> None:
    problem = one_problem(make_repo(tmp_path, """
        [blocks.base.versions."1.0.0"]
        [blocks.b.versions."1.0.0"]
        requires = { bsae = "~> 1.0" }
    """))
    assert "requires.bsae: requires unknown block `bsae`; did you mean `base`?" in problem
    assert "known blocks: b, base" in problem


def test_requirement_no_version_satisfies(tmp_path: Path) -> None:
    problem = one_problem(make_repo(tmp_path, """
        [blocks.a.versions."1.0.0"]
        [blocks.a.versions."1.1.0"]
        [blocks.b.versions."1.0.0"]
        requires = { a = "~> 2.0" }
    """))
    assert "requires.a: no version of `a` satisfies `~> 2.0` (versions of a: 1.0.0, 1.1.0)" \
        in problem


def test_missing_block_directory(tmp_path: Path) -> None:
    root = make_repo(tmp_path, '[blocks.a.versions."1.0.0"]\n[blocks.a.versions."1.1.0"]\n',
                     missing=("a/1.1.0",))
    problem = one_problem(root)
    assert 'blocks.a.versions."1.1.0": directory blocks/a/1.1.0/ does not exist' in problem


def test_main_tf_is_not_required(tmp_path: Path) -> None:
    root = make_repo(tmp_path, '[blocks.a.versions."1.0.0"]\n')
    assert not any((root / "blocks" / "a" / "1.0.0").iterdir())
    load_registry(root)


def test_explicit_paths(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = make_repo(tmp_path / "repo", """
        [blocks.a.versions."1.0.0"]
        path = "modules/a-one"
        [blocks.a.versions."1.1.0"]
        path = "../outside"
        [blocks.a.versions."1.2.0"]
        path = "modules/nowhere"
    """, files={"modules/a-one/main.tf": ""})
    problems = problems_of(root)
    assert len(problems) == 2, problems
    assert "`../outside` lies outside the repository" in problems[0]
    assert "directory `modules/nowhere` does not exist" in problems[1]


def test_explicit_path_inside_the_repository(tmp_path: Path) -> None:
    root = make_repo(tmp_path, '[blocks.a.versions."1.0.0"]\npath = "modules/a"\n',
                     files={"modules/a/main.tf": ""})
    bv = load_registry(root).blocks["a"].newest_first()[0]
    assert bv.path == root.resolve() / "modules" / "a"


def test_pins(tmp_path: Path) -> None:
    problems = problems_of(make_repo(tmp_path, """
        [blocks.base.versions."1.0.0"]
        [blocks.base.versions."1.1.0"]
        [environments.prod]
        pins = { base = "1.2.0", bsae = "1.0.0", }
    """.replace(", }", " }")))
    assert len(problems) == 2, problems
    joined = "\n".join(problems)
    assert "environments.prod.pins.base: pin to version 1.2.0, which `base` does not have" \
        in joined
    assert "versions of base: 1.0.0, 1.1.0" in joined
    assert "pin of unknown block `bsae`; did you mean `base`?" in joined


def test_pin_must_be_an_exact_version(tmp_path: Path) -> None:
    problem = one_problem(make_repo(tmp_path, """
        [blocks.base.versions."1.0.0"]
        [environments.prod]
        pins = { base = "~> 1.0" }
    """))
    assert "a pin is an exact version" in problem


def test_block_requiring_itself(tmp_path: Path) -> None:
    problem = one_problem(make_repo(tmp_path, """
        [blocks.a.versions."1.0.0"]
        requires = { a = "~> 1.0" }
    """))
    assert "requires.a: block `a` requires itself" in problem


def test_dependency_cycle_is_printed(tmp_path: Path) -> None:
    problem = one_problem(make_repo(tmp_path, """
        [blocks.a.versions."1.0.0"]
        requires = { b = "~> 2.0" }
        [blocks.b.versions."2.0.0"]
        requires = { c = ">= 1.0" }
        [blocks.c.versions."1.0.0"]
        requires = { a = "1.0.0" }
        [blocks.d.versions."1.0.0"]
        requires = { a = "1.0.0" }
    """))
    assert "dependency cycle: a 1.0.0 → b 2.0.0 → c 1.0.0 → a" in problem


def test_types_are_checked(tmp_path: Path) -> None:
    problems = problems_of(make_repo(tmp_path, """
        [defaults]
        environment = 3
        [blocks.a]
        stateful = "yes"
        description = 1
        rolling = "leader-last"
        [blocks.a.versions."1.0.0"]
        requires = { }
        images = "etcd@1.0.0"
        [blocks.b.versions."1.0.0"]
        requires = { a = 1 }
        images = ["etcd", "etcd@1.0"]
        [blocks.c.versions."1.0.0"]
        requires = "a"
        [blocks.c.versions."1.1.0"]
        requires = []
        [blocks.d.versions."1.0.0"]
        requires = { a = ["~> 1.0"], b = true }
        [environments.prod]
        subnet = 24
        auto_create = "yes"
    """))
    joined = "\n".join(problems)
    for expected in ["defaults.environment: must be a string", "blocks.a.stateful: must be true",
                     "blocks.a.description: must be a string",
                     "blocks.a.rolling: must be a table",
                     'blocks.a.versions."1.0.0".images: must be an array',
                     'blocks.b.versions."1.0.0".requires.a: must be a constraint string',
                     'blocks.c.versions."1.0.0".requires: must be a table of block = "constraint"',
                     'blocks.c.versions."1.1.0".requires: must be a table of block = "constraint"',
                     'blocks.d.versions."1.0.0".requires.a: must be a constraint string',
                     'blocks.d.versions."1.0.0".requires.b: must be a constraint string',
                     "item 1 ('etcd') is not \"name@version\"", "item 2 ('etcd@1.0')",
                     "environments.prod.subnet: must be a string",
                     "environments.prod.auto_create: must be true or false"]:
        assert expected in joined, (expected, problems)


def test_names_are_checked(tmp_path: Path) -> None:
    problems = problems_of(make_repo(tmp_path, """
        [blocks."1bad".versions."1.0.0"]
        [blocks.ok.versions."1.0.0"]
        [environments."bad/env"]
    """))
    joined = "\n".join(problems)
    assert 'blocks.1bad: invalid block name: expected a Terraform identifier' in joined
    assert 'environments."bad/env": invalid environment name' in joined


def test_block_without_versions(tmp_path: Path) -> None:
    problem = one_problem(make_repo(tmp_path, '[blocks.a]\ndescription = "x"\n'))
    assert "blocks.a.versions: block has no versions" in problem


def test_default_environment_must_be_declared(tmp_path: Path) -> None:
    problem = one_problem(make_repo(tmp_path, """
        [defaults]
        environment = "prd"
        [blocks.a.versions."1.0.0"]
        [environments.prod]
    """))
    assert "defaults.environment: environment `prd` is not defined; did you mean `prod`?" \
        in problem


def test_every_problem_is_reported_at_once_with_lines(tmp_path: Path) -> None:
    root = make_repo(tmp_path, """
        [blocks.a]
        descripton = "x"
        [blocks.a.versions."1.0.0"]
        requires = { zz = "1.0.0" }
        [blocks.a.versions."1.1"]
        [environments.prod]
        pins = { a = "9.9.9" }
    """)
    with pytest.raises(ConfigError) as caught:
        load_registry(root)
    problems = caught.value.problems
    assert len(problems) == 4, problems
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == sorted(lines)
    assert lines == [3, 5, 6, 8]
    assert "4 problems in the block registry" in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_the_package_keeps_every_public_name() -> None:
    # registry.py became a package (model, loader, validate, locate, cycles); other parts
    # import these names from infrablocks.registry.
    import infrablocks.registry as registry

    for name in ("ALLOWED_KEYS", "Block", "BlockVersion", "Environment", "Registry",
                 "format_key_path", "load_registry", "suggest", "gc_paused", "parse_toml",
                 "find_block_cycles", "describe_cycle", "SETTINGS_TABLES", "BLOCK_NAME"):
        assert name in registry.__all__ and getattr(registry, name) is not None


def test_requirement_texts_and_dropping_one(tmp_path: Path) -> None:
    registry = load_registry(make_repo(tmp_path, GOOD))
    app = registry.block_version("app", "1.0.0")
    assert app.requirement_texts() == {"base": "~> 1.0"}
    assert str(app.requires["base"]) == "~> 1.0"
    app.drop_requirement("base")
    assert app.requirement_texts() == {} and app.requires == {} and app.required_blocks() == []


def test_environment_subnets_are_checked_where_they_are_written(tmp_path: Path) -> None:
    """Every command loads the registry first: a subnet create or plan would reject is a
    problem of blocks.toml with its line (and `doit check` reports it)."""
    problems = problems_of(make_repo(tmp_path, """
        [blocks.a.versions."1.0.0"]
        [environments.prod]
        subnet = "10.0.0.0/24"
        [environments.staging]
        subnet = "127.42.5.0/25"
        [environments.qa]
        subnet = "127.42.300.0/24"
        [environments.dev]
        subnet = "127.42.9.0/24"
        [environments.dev2]
        subnet = "127.42.9.0/24"
        [environments.cloudy]
        platform = "aws"
        subnet = "10.0.0.0/24"
        [platforms.aws]
        region = "eu-west-1"
    """))
    joined = "\n".join(problems)
    assert len(problems) == 4, problems
    assert ("blocks.toml:4: environments.prod.subnet: '10.0.0.0/24' is outside 127.42.0.0/16"
            in joined)
    assert "blocks.toml:6: environments.staging.subnet: '127.42.5.0/25' must be a /24" in joined
    assert "blocks.toml:8: environments.qa.subnet: '127.42.300.0/24' is not a network" in joined
    assert ("blocks.toml:12: environments.dev2.subnet: 127.42.9.0/24 is also the subnet of "
            "environment `dev`" in joined)
    assert "cloudy" not in joined   # an AWS environment's subnet lies in its VPC
